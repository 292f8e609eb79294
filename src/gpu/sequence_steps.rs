//! The steps a GPU trainer runs whole sequences on ([`super::sequence_trainer`]): one per
//! (B, T rounded up), built on first use, sharing the training step's parameters and gradients.

use crate::dropout::DropoutSpec;
use crate::error::Result;
use crate::gpu::context::Gpu;
use crate::gpu::kernels::Kernels;
use crate::gpu::model_step::{ModelStep, StepOptions};
use crate::model::{Batch, Inputs, Targets};
use std::sync::Arc;

/// The steps a trainer runs whole sequences on, built on first use.
pub(crate) struct SequenceSteps {
    kernels: Arc<Kernels>,
    dropout: Option<DropoutSpec>,
    /// T_max: the training step's T, the longest sequence of the run.
    longest: usize,
    /// The steps built so far: (B, T, with dropout) and the step.
    built: Vec<((usize, usize, bool), ModelStep)>,
}

impl SequenceSteps {
    pub(crate) fn new(kernels: Arc<Kernels>, dropout: Option<DropoutSpec>, longest: usize) -> Self {
        Self {
            kernels,
            dropout,
            longest,
            built: Vec::new(),
        }
    }

    /// Which step a batch of (B, T) runs on, training (with the run's dropout) or not: `None`
    /// for the trainer's own step `train` where the shapes agree, else one of the steps built
    /// here, built now if it is new (checked against the adapter's limits first).
    pub(super) fn choose(
        &mut self,
        gpu: &Gpu,
        train: &ModelStep,
        (nb, nt): (usize, usize),
        training: bool,
    ) -> Result<Option<usize>> {
        let key = (nb, self.rounded(nt), training && self.dropout.is_some());
        let dropout_matches = training || train.dropout_counter().is_none();
        if (key.0, key.1) == train.shape() && dropout_matches {
            return Ok(None);
        }
        if let Some(i) = self.built.iter().position(|(k, _)| *k == key) {
            return Ok(Some(i));
        }
        let options = StepOptions {
            grads: Some(train.grads().clone()),
            dropout: if key.2 { self.dropout } else { None },
            ..train.sibling_options()
        };
        let config = train.config();
        let step = gpu.scoped("allocating a step for whole sequences", || {
            ModelStep::new(gpu, &self.kernels, config, (key.0, key.1), options)
        })??;
        self.built.push((key, step));
        Ok(Some(self.built.len() - 1))
    }

    /// GPU memory held by the steps built so far (their own buffers), in bytes.
    pub(super) fn memory_bytes(&self) -> u64 {
        self.built.iter().map(|(_, s)| s.memory_bytes()).sum()
    }

    /// Step `i` of [`Self::choose`].
    pub(super) fn get(&self, i: usize) -> &ModelStep {
        &self.built[i].1
    }

    /// The step's T for a batch of `steps`: rounded up to a multiple of ⌈T_max / 8⌉ (at least
    /// 8), at most T_max.
    pub(super) fn rounded(&self, steps: usize) -> usize {
        let q = self.longest.div_ceil(8).max(8);
        steps.next_multiple_of(q).min(self.longest.max(steps))
    }
}

/// A time-major tensor of `from` steps extended with zeros to `steps` steps.
fn extended<T: Copy + Default>(v: &[T], from: usize, steps: usize) -> Vec<T> {
    let mut v = v.to_vec();
    v.resize(v.len() / from * steps, T::default());
    v
}

/// A batch as a step of `steps` timesteps runs it: its inputs (and per-step targets) padded with
/// zeros past its own T, every sequence's length kept.
pub(super) fn padded(batch: &Batch, steps: usize) -> Batch {
    if batch.steps == steps {
        return batch.clone();
    }
    let from = batch.steps;
    let inputs = match &batch.inputs {
        Inputs::Tokens(x) => Inputs::Tokens(extended(x, from, steps)),
        Inputs::Dense(x) => Inputs::Dense(extended(x, from, steps)),
    };
    let targets = match &batch.targets {
        Targets::Tokens(y) => Targets::Tokens(extended(y, from, steps)),
        Targets::Dense(y) => Targets::Dense(extended(y, from, steps)),
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
