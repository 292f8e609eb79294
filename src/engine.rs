//! The training engine: one trait, two implementations side by side, the GPU
//! ([`crate::gpu::GpuTrainer`]) and the CPU reference ([`CpuTrainer`]). The training loop in
//! [`crate::train`] drives either.

use crate::cpu;
use crate::error::Result;
use crate::gpu::{GpuTrainer, StepStats};
use crate::model::{Batch, Inputs, Params, Targets};
use crate::optim::{self, OptimizerConfig, OptimizerState};

/// What the training loop needs from a device.
pub trait Engine {
    /// One step on a chunk (forward, loss, backward, clipping, update), the hidden state carried
    /// from the previous chunk or zero when `reset`. Returns the loss and gradient norm when
    /// `report` (an engine may return them always).
    fn train_step(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
        reset: bool,
        report: bool,
    ) -> Result<Option<StepStats>>;
    /// The mean loss over chunks, from a zero hidden state carried through them.
    fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32>;
    /// The current parameters.
    fn params(&self) -> Result<Params<f32>>;
    /// The optimizer's state.
    fn optimizer_state(&self) -> Result<OptimizerState>;
    /// Replaces the optimizer's state.
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;
    /// The carried hidden state, (B, H).
    fn hidden(&self) -> Result<Vec<f32>>;
    /// Replaces the carried hidden state.
    fn set_hidden(&mut self, h: &[f32]) -> Result<()>;
    /// A short description of the device.
    fn device(&self) -> String;
}

impl Engine for GpuTrainer {
    fn train_step(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
        reset: bool,
        report: bool,
    ) -> Result<Option<StepStats>> {
        GpuTrainer::train_step(self, inputs, targets, reset, report)
    }
    fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        GpuTrainer::evaluate(self, chunks)
    }
    fn params(&self) -> Result<Params<f32>> {
        GpuTrainer::params(self)
    }
    fn optimizer_state(&self) -> Result<OptimizerState> {
        GpuTrainer::optimizer_state(self)
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        GpuTrainer::set_optimizer_state(self, state)
    }
    fn hidden(&self) -> Result<Vec<f32>> {
        GpuTrainer::hidden(self)
    }
    fn set_hidden(&mut self, h: &[f32]) -> Result<()> {
        GpuTrainer::set_hidden(self, h)
    }
    fn device(&self) -> String {
        format!("GPU: {}", crate::gpu::describe(&self.gpu().info))
    }
}

/// Training with the CPU reference: slow, simple, and bitwise repeatable.
pub struct CpuTrainer {
    params: Params<f32>,
    optim: OptimizerConfig,
    state: OptimizerState,
    /// The carried hidden state, (B, H).
    carry: Vec<f32>,
    batch: usize,
    steps: usize,
}

impl CpuTrainer {
    /// A trainer for batches of (B, T).
    pub fn new(
        params: Params<f32>,
        batch: usize,
        steps: usize,
        optim: OptimizerConfig,
    ) -> Result<Self> {
        optim.validate()?;
        params.config.validate()?;
        let n = params.config.num_params();
        let h = params.config.hidden;
        Ok(Self {
            params,
            optim,
            state: OptimizerState::new(n),
            carry: vec![0.0; batch * h],
            batch,
            steps,
        })
    }
}

impl Engine for CpuTrainer {
    fn train_step(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
        reset: bool,
        _report: bool,
    ) -> Result<Option<StepStats>> {
        if reset {
            self.carry.iter_mut().for_each(|h| *h = 0.0);
        }
        let batch = Batch {
            batch: self.batch,
            steps: self.steps,
            inputs: inputs.clone(),
            targets: targets.clone(),
            h0: self.carry.clone(),
        };
        batch.validate(&self.params.config)?;
        let out = cpu::step(&self.params, &batch);
        let grad_norm = optim::update(
            &self.optim,
            &mut self.params.data,
            &out.grads,
            &mut self.state,
        );
        let bh = self.batch * self.params.config.hidden;
        self.carry.copy_from_slice(&out.hs[self.steps * bh..]);
        Ok(Some(StepStats {
            loss: out.loss,
            grad_norm,
        }))
    }

    fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        let h = self.params.config.hidden;
        let mut total = 0.0f64;
        let mut h0: Option<Vec<f32>> = None;
        for (x, y) in chunks {
            let n = match x {
                Inputs::Tokens(t) => t.len(),
                Inputs::Dense(v) => v.len() / self.params.config.input,
            };
            let b = n / self.steps;
            let batch = Batch {
                batch: b,
                steps: self.steps,
                inputs: x.clone(),
                targets: y.clone(),
                h0: h0.take().unwrap_or_else(|| vec![0.0; b * h]),
            };
            batch.validate(&self.params.config)?;
            let fwd = cpu::forward(&self.params, &batch);
            let (loss, _) = cpu::loss(&self.params.config, &batch, &fwd);
            total += loss as f64;
            h0 = Some(fwd.hs[self.steps * b * h..].to_vec());
        }
        Ok((total / chunks.len().max(1) as f64) as f32)
    }

    fn params(&self) -> Result<Params<f32>> {
        Ok(self.params.clone())
    }

    fn optimizer_state(&self) -> Result<OptimizerState> {
        Ok(self.state.clone())
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        self.state = state.clone();
        Ok(())
    }

    fn hidden(&self) -> Result<Vec<f32>> {
        Ok(self.carry.clone())
    }

    fn set_hidden(&mut self, h: &[f32]) -> Result<()> {
        if h.len() != self.carry.len() {
            return Err(crate::Error::config(
                format!(
                    "a hidden state of {} values for B·H = {}",
                    h.len(),
                    self.carry.len()
                ),
                "resume with the batch size the checkpoint was trained with",
            ));
        }
        self.carry.copy_from_slice(h);
        Ok(())
    }

    fn device(&self) -> String {
        "CPU reference".into()
    }
}
