//! Training and prediction on whole sequences on the GPU ([`GpuTrainer::train_sequences`],
//! [`GpuTrainer::predict`]): batches of their own B and T (buckets of similar lengths), each run
//! on a step built for its shape on first use.
//!
//! A step's buffers are sized by (B, T), so a batch runs on the step for its B and its T rounded
//! up to a multiple of ⌈T_max / 8⌉ (at least 8): at most eight lengths of steps per B, the
//! batch padded to the step's T with its sequences' lengths kept, so the padding computes
//! nothing that counts (see `shaders/recurrence.wgsl`). Every step shares the training step's
//! parameters and gradients, so the one optimizer updates from whichever ran.

use crate::dropout::DropoutSpec;
use crate::error::Result;
use crate::gpu::kernels::Kernels;
use crate::gpu::model_step::{ModelStep, StepOptions};
use crate::gpu::submit::settle;
use crate::gpu::trainer::{GpuTrainer, StepStats};
use crate::model::{Batch, Inputs, Targets};

/// The steps a trainer runs whole sequences on, built on first use.
pub(crate) struct SequenceSteps {
    kernels: Kernels,
    dropout: Option<DropoutSpec>,
    /// T_max: the training step's T, the longest sequence of the run.
    longest: usize,
    /// The steps built so far: (B, T, with dropout) and the step.
    built: Vec<((usize, usize, bool), ModelStep)>,
}

impl SequenceSteps {
    pub(crate) fn new(kernels: Kernels, dropout: Option<DropoutSpec>, longest: usize) -> Self {
        Self {
            kernels,
            dropout,
            longest,
            built: Vec::new(),
        }
    }

    /// The step's T for a batch of `steps`: rounded up to a multiple of ⌈T_max / 8⌉ (at least
    /// 8), at most T_max.
    fn rounded(&self, steps: usize) -> usize {
        let q = self.longest.div_ceil(8).max(8);
        steps.next_multiple_of(q).min(self.longest.max(steps))
    }
}

/// A batch as a step of `steps` timesteps runs it: its inputs (and per-step targets) padded with
/// zeros past its own T, every sequence's length kept.
fn padded(batch: &Batch, steps: usize) -> Batch {
    if batch.steps == steps {
        return batch.clone();
    }
    let grow = |n: usize| n / batch.steps * steps;
    let inputs = match &batch.inputs {
        Inputs::Tokens(x) => Inputs::Tokens([&x[..], &vec![0; grow(x.len()) - x.len()]].concat()),
        Inputs::Dense(x) => Inputs::Dense([&x[..], &vec![0.0; grow(x.len()) - x.len()]].concat()),
    };
    let targets = match &batch.targets {
        Targets::Tokens(y) => Targets::Tokens([&y[..], &vec![0; grow(y.len()) - y.len()]].concat()),
        Targets::Dense(y) => Targets::Dense([&y[..], &vec![0.0; grow(y.len()) - y.len()]].concat()),
        Targets::Labels(y) => Targets::Labels(y.clone()),
    };
    Batch {
        steps,
        inputs,
        targets,
        lengths: Some((0..batch.batch).map(|b| batch.length(b)).collect()),
        ..batch.clone()
    }
}

impl GpuTrainer {
    /// Which step a batch of (B, T) runs on, training (with the run's dropout) or not: `None`
    /// for the training step where the shapes agree, else one of the steps built for whole
    /// sequences, built now if it is new (checked against the adapter's limits first).
    fn sequence_step(&mut self, (nb, nt): (usize, usize), training: bool) -> Result<Option<usize>> {
        let seq = &self.sequences;
        let key = (nb, seq.rounded(nt), training && seq.dropout.is_some());
        let dropout_matches = training || self.train.dropout_counter().is_none();
        if (key.0, key.1) == self.train.shape() && dropout_matches {
            return Ok(None);
        }
        if let Some(i) = seq.built.iter().position(|(k, _)| *k == key) {
            return Ok(Some(i));
        }
        let options = StepOptions {
            recurrence: Some(self.train.recurrence()),
            params: Some(self.train.params().clone()),
            grads: Some(self.train.grads().clone()),
            dropout: if key.2 { seq.dropout } else { None },
            tiles: None,
        };
        let (config, kernels) = (self.train.config(), &seq.kernels);
        let step = self
            .gpu
            .scoped("allocating a step for whole sequences", || {
                ModelStep::new(&self.gpu, kernels, config, (key.0, key.1), options)
            })??;
        self.sequences.built.push((key, step));
        Ok(Some(self.sequences.built.len() - 1))
    }

    /// The step [`Self::sequence_step`] named.
    fn step_named(&self, which: Option<usize>) -> &ModelStep {
        which.map_or(&self.train, |i| &self.sequences.built[i].1)
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
        if let Some(counter) = step.dropout_counter() {
            // The masks are keyed by the updates taken so far (the optimizer's t).
            encoder.copy_buffer_to_buffer(&self.opt.state, 0, counter, 0, 4);
        }
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            step.record(&mut pass);
        }
        let mut encoder = settle(gpu, step, encoder, false).await?;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &self.opt.dispatches {
                d.record(&mut pass);
            }
        }
        if report {
            // The step's loss, and the gradient norm the optimizer wrote beside the training
            // step's.
            encoder.copy_buffer_to_buffer(step.stats(), 0, &self.opt.staging, 0, 4);
            encoder.copy_buffer_to_buffer(self.train.stats(), 4, &self.opt.staging, 4, 4);
        }
        gpu.submit(encoder);
        self.steps += 1;
        if !report {
            let _ = self.gpu.device.poll(wgpu::PollType::Poll);
            return self
                .gpu
                .check("a training step on whole sequences")
                .map(|_| None);
        }
        let stats = self.read_staging(8, "reading the loss back").await?;
        Ok(Some(StepStats {
            loss: stats[0],
            grad_norm: stats[1],
        }))
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
