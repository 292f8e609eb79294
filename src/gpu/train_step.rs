//! One training step on the GPU ([`GpuTrainer::train_step`]) and the pieces every training step
//! shares, on chunks of streams or on whole sequences ([`super::sequence_trainer`]): the step
//! recorded with its dropout masks keyed, the grid's fallback, the update, the report.

use crate::error::Result;
use crate::gpu::model_step::ModelStep;
use crate::gpu::submit::{load_carry, settle, store_carry};
use crate::gpu::trainer::{GpuTrainer, StepStats};
use crate::model::{Inputs, Targets};

impl GpuTrainer {
    /// One training step on a chunk: forward, loss, backward, clipping and update, with the hidden
    /// state carried from the previous chunk (or zero when `reset`). Reads back and returns the
    /// loss and gradient norm only when `report`; otherwise it does not wait for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_step(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
        reset: bool,
        report: bool,
    ) -> Result<Option<StepStats>> {
        pollster::block_on(self.train_step_async(inputs, targets, reset, report))
    }

    /// [`GpuTrainer::train_step`] as a future (it waits only when `report`).
    pub async fn train_step_async(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
        reset: bool,
        report: bool,
    ) -> Result<Option<StepStats>> {
        self.train.write_data(&self.gpu, inputs, targets);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        if reset {
            encoder.clear_buffer(&self.carry, 0, None);
        }
        load_carry(&mut encoder, &self.carry, &self.train, (0, 1));
        self.record_step(&self.train, &mut encoder);
        let store = |e: &mut wgpu::CommandEncoder| store_carry(e, &self.train, &self.carry, (0, 1));
        self.update(&self.train, encoder, store, report).await?;
        self.steps += 1;
        self.reported(report, "a training step").await
    }

    /// Records `step`'s dispatches into `encoder`, its dropout masks keyed by the updates taken
    /// so far (the optimizer's t).
    pub(super) fn record_step(&self, step: &ModelStep, encoder: &mut wgpu::CommandEncoder) {
        if let Some(counter) = step.dropout_counter() {
            encoder.copy_buffer_to_buffer(&self.opt.state, 0, counter, 0, 4);
        }
        let mut pass = encoder.begin_compute_pass(&Default::default());
        step.record(&mut pass);
    }

    /// The rest of a training step once `step` is recorded in `encoder`: the grid's fallback,
    /// the update, `after` (the carried state's copy), and when `report` the step's loss and
    /// the gradient norm (which the optimizer writes beside the training step's loss) into the
    /// staging buffer; then submits.
    pub(super) async fn update(
        &self,
        step: &ModelStep,
        encoder: wgpu::CommandEncoder,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
        report: bool,
    ) -> Result<()> {
        let mut encoder = settle(&self.gpu, step, encoder, false).await?;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &self.opt.dispatches {
                d.record(&mut pass);
            }
        }
        after(&mut encoder);
        if report {
            encoder.copy_buffer_to_buffer(step.stats(), 0, &self.opt.staging, 0, 4);
            encoder.copy_buffer_to_buffer(self.train.stats(), 4, &self.opt.staging, 4, 4);
        }
        self.gpu.submit(encoder);
        Ok(())
    }

    /// What a submitted training step returns: nothing, without waiting for the GPU, or (when
    /// `report`) its loss and gradient norm, read back.
    pub(super) async fn reported(&self, report: bool, what: &str) -> Result<Option<StepStats>> {
        if !report {
            // Let wgpu reclaim finished submissions without waiting for the running one.
            let _ = self.gpu.device.poll(wgpu::PollType::Poll);
            return self.gpu.check(what).map(|_| None);
        }
        let stats = self.read_staging(8, "reading the loss back").await?;
        Ok(Some(StepStats {
            loss: stats[0],
            grad_norm: stats[1],
        }))
    }
}
