//! Training and prediction on whole sequences on the GPU ([`GpuTrainer::train_sequences`],
//! [`GpuTrainer::predict`]): batches of their own B and T (buckets of similar lengths), each run
//! on a step built for its shape on first use ([`super::sequence_steps`]).
//!
//! A step's buffers are sized by (B, T), so a batch runs on the step for its B and its T rounded
//! up to a multiple of ⌈T_max / 8⌉ (at least 8): at most eight lengths of steps per B, the
//! batch padded to the step's T with its sequences' lengths kept, so the padding computes
//! nothing that counts (see `shaders/recurrence.wgsl`). Every step shares the training step's
//! parameters and gradients, so the one optimizer updates from whichever ran.

use crate::error::Result;
use crate::gpu::model_step::ModelStep;
use crate::gpu::sequence_steps::padded;
use crate::gpu::submit::settle;
use crate::gpu::trainer::{GpuTrainer, StepStats};
use crate::model::Batch;

impl GpuTrainer {
    /// The step a batch of (B, T) runs on (see [`super::sequence_steps::SequenceSteps::choose`]).
    fn sequence_step(&mut self, shape: (usize, usize), training: bool) -> Result<Option<usize>> {
        (self.sequences).choose(&self.gpu, &self.train, shape, training)
    }

    /// The timesteps a batch of whole sequences of T = `steps` is computed at: the T of the
    /// step it runs on.
    pub fn sequence_steps_computed(&self, steps: usize) -> usize {
        self.sequences.rounded(steps)
    }

    /// The step [`Self::sequence_step`] named.
    fn step_named(&self, which: Option<usize>) -> &ModelStep {
        which.map_or(&self.train, |i| self.sequences.get(i))
    }

    /// One training step on whole sequences (each from a zero state): forward, loss, backward,
    /// clipping and update; the loss and gradient norm when `report`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_sequences(&mut self, batch: &Batch, report: bool) -> Result<Option<StepStats>> {
        pollster::block_on(self.train_sequences_async(batch, report))
    }

    /// [`GpuTrainer::train_sequences`] as a future (it waits only when `report`).
    pub async fn train_sequences_async(
        &mut self,
        batch: &Batch,
        report: bool,
    ) -> Result<Option<StepStats>> {
        batch.validate(&self.train.config())?;
        let which = self.sequence_step((batch.batch, batch.steps), true)?;
        let (gpu, step) = (&self.gpu, self.step_named(which));
        step.stack
            .write_batch(gpu, &padded(batch, step.shape().1))?;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        self.record_step(step, &mut encoder);
        self.update(step, encoder, |_| {}, report).await?;
        self.steps += 1;
        self.reported(report, "a training step on whole sequences")
            .await
    }

    /// The logits of whole sequences (B, O), each from a zero state, without dropout or update.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        pollster::block_on(self.predict_async(batch))
    }

    /// [`GpuTrainer::predict`] as a future.
    pub async fn predict_async(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        let config = self.train.config();
        batch.validate(&config)?;
        let which = self.sequence_step((batch.batch, batch.steps), false)?;
        let (gpu, step) = (&self.gpu, self.step_named(which));
        step.stack
            .write_batch(gpu, &padded(batch, step.shape().1))?;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            step.record_forward(&mut pass);
        }
        let encoder = settle(gpu, step, encoder, true).await?;
        gpu.submit(encoder);
        let logits = &step.stack.buffers.logits;
        gpu.read_f32_async(logits, 0, batch.batch * config.output)
            .await
    }
}
