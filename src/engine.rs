//! The training engine: one trait, two implementations side by side, the GPU
//! ([`crate::gpu::GpuTrainer`]) and the CPU reference ([`CpuTrainer`]). The training loop in
//! [`crate::train`] drives either.

use crate::cpu;
use crate::dropout::{Dropout, DropoutSpec};
use crate::error::Result;
use crate::gpu::StepStats;
use crate::model::{Batch, Inputs, Params, Targets};
use crate::optim::{self, OptimizerConfig, OptimizerState};
use crate::shares::Share;

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
    /// The carried state: every layer's h, then (LSTM) every layer's c, (L, B, H) each.
    fn hidden(&self) -> Result<Vec<f32>>;
    /// Replaces the carried hidden state.
    fn set_hidden(&mut self, h: &[f32]) -> Result<()>;
    /// A short description of the device.
    fn device(&self) -> String;
    /// The forward and backward pass of one micro-batch (its carried state in `share.slot` of
    /// the slots the engine carries) without an update: its gradients, read back into `grads`
    /// (resized to the parameters'), and its loss.
    fn gradients(
        &mut self,
        chunk: (&Inputs, &Targets),
        reset: bool,
        share: Share,
        grads: &mut Vec<f32>,
    ) -> Result<f32>;
    /// Clipping and the update with given gradients; the gradient's norm when `report`.
    fn apply(&mut self, grads: &[f32], report: bool) -> Result<Option<f32>>;
    /// Replaces the parameters.
    fn set_params(&mut self, params: &Params<f32>) -> Result<()>;
    /// One step on whole sequences (forward, loss, backward, clipping, update), each from a
    /// zero state; the carried state of [`Engine::train_step`] is untouched.
    fn train_sequences(&mut self, _batch: &Batch, _report: bool) -> Result<Option<StepStats>> {
        Err(not_yet(&self.device()))
    }
    /// The logits of whole sequences (B, O) from a zero state, no update.
    fn predict(&mut self, _batch: &Batch) -> Result<Vec<f32>> {
        Err(not_yet(&self.device()))
    }
    /// The timesteps computed for a batch of whole sequences of T = `steps` (a GPU step's T
    /// is rounded up, see [`crate::gpu::GpuTrainer::sequence_steps_computed`]).
    fn steps_computed(&self, steps: usize) -> usize {
        steps
    }
    /// Where the model lives on several ranks: makes every rank's parameters and optimizer
    /// state rank 0's, and says how many differed. Every rank calls it at the same step.
    fn synchronize(&mut self) -> Result<Option<crate::shares::Agreement>> {
        Ok(None)
    }
    /// Whether the run stops after the step just taken, given whether this process was signalled.
    /// Ranks of a data-parallel run answer what they agreed in the step's exchange, so that
    /// every rank stops after the same step whenever the signal reached each.
    fn stops_after_step(&self, signalled: bool) -> bool {
        signalled
    }
    /// What the progress line adds about the last step: the slowest rank's share of a
    /// data-parallel step (its forward, backward and read-back; the rest is waiting and the
    /// exchange).
    fn progress_note(&self) -> Option<String> {
        None
    }
}

/// The error of an engine that does not run whole sequences.
fn not_yet(device: &str) -> crate::Error {
    crate::Error::config(
        format!("{device} does not train or predict whole sequences yet"),
        "run whole-sequence models on the CPU reference (--device cpu), on one rank",
    )
}

#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::GpuTrainer;

#[cfg(not(target_arch = "wasm32"))]
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
    fn train_sequences(&mut self, batch: &Batch, report: bool) -> Result<Option<StepStats>> {
        GpuTrainer::train_sequences(self, batch, report)
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        GpuTrainer::predict(self, batch)
    }
    fn steps_computed(&self, steps: usize) -> usize {
        self.sequence_steps_computed(steps)
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
    fn gradients(
        &mut self,
        chunk: (&Inputs, &Targets),
        reset: bool,
        share: Share,
        grads: &mut Vec<f32>,
    ) -> Result<f32> {
        GpuTrainer::gradients(self, chunk, reset, share, grads)
    }
    fn apply(&mut self, grads: &[f32], report: bool) -> Result<Option<f32>> {
        GpuTrainer::apply(self, grads, report)
    }
    fn set_params(&mut self, params: &Params<f32>) -> Result<()> {
        GpuTrainer::set_params(self, params)
    }
    fn device(&self) -> String {
        let recurrence = self.step().recurrence().name();
        let gpu = crate::gpu::describe(&self.gpu().info);
        format!("GPU: {gpu}, {recurrence} recurrence")
    }
}

/// Training with the CPU reference: slow, simple, and bitwise repeatable.
pub struct CpuTrainer {
    params: Params<f32>,
    optim: OptimizerConfig,
    state: OptimizerState,
    /// The carried state: every layer's h, then (LSTM) every layer's c, (L, K·B, H) each for K
    /// micro-batches (1 but in data-parallel runs).
    carry: Vec<f32>,
    slots: usize,
    steps: usize,
    dropout: Option<DropoutSpec>,
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
        let step = crate::footprint::cpu_step(&params.config, batch, steps, 4);
        crate::footprint::check_bytes(
            "one training step of the CPU reference",
            step,
            "lower the batch size or the sequence length, or the model's sizes",
        )?;
        let n = params.config.num_params();
        let carry = vec![0.0; params.config.carry_len(batch)];
        Ok(Self {
            params,
            optim,
            state: OptimizerState::new(n),
            carry,
            slots: 1,
            steps,
            dropout: None,
        })
    }

    /// With dropout between the layers in its training steps.
    pub fn with_dropout(self, dropout: Option<DropoutSpec>) -> Self {
        Self { dropout, ..self }
    }

    /// Carrying the state of `slots` micro-batches, for [`Engine::gradients`].
    pub fn with_slots(self, slots: usize) -> Self {
        let carry = vec![0.0; self.carry.len() * slots];
        Self {
            carry,
            slots,
            ..self
        }
    }

    /// B, the streams of one micro-batch.
    fn micro(&self) -> usize {
        self.carry.len() / self.params.config.carry_len(1).max(1) / self.slots
    }
}

/// A batch of chunks with the carried state (every layer's h, then c) as its initial state.
fn carried_batch(
    config: &crate::model::ModelConfig,
    steps: usize,
    inputs: &Inputs,
    targets: &Targets,
    carry: &[f32],
) -> Batch {
    let batch = carry.len() / (config.carry_len(1)).max(1);
    let (h0, c0) = carry.split_at(config.state_len(batch));
    Batch {
        batch,
        steps,
        inputs: inputs.clone(),
        targets: targets.clone(),
        h0: h0.to_vec(),
        c0: c0.to_vec(),
        lengths: None,
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
        let config = self.params.config;
        let batch = carried_batch(&config, self.steps, inputs, targets, &self.carry);
        batch.validate(&config)?;
        let dropout = self.dropout.map(|d| d.at_step(self.state.step));
        let out = cpu::step_with(&self.params, &batch, dropout.as_ref());
        let grad_norm = optim::update(
            &self.optim,
            &mut self.params.data,
            &out.grads,
            &mut self.state,
        );
        self.carry = [out.h_n, out.c_n].concat();
        Ok(Some(StepStats {
            loss: out.loss,
            grad_norm,
        }))
    }

    fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        let config = self.params.config;
        let mut total = 0.0f64;
        let mut carry: Option<Vec<f32>> = None;
        for (x, y) in chunks {
            let n = match x {
                Inputs::Tokens(t) => t.len(),
                Inputs::Dense(v) => v.len() / config.input,
            };
            let b = n / self.steps;
            let state = carry
                .take()
                .unwrap_or_else(|| vec![0.0; config.carry_len(b)]);
            let batch = carried_batch(&config, self.steps, x, y, &state);
            batch.validate(&config)?;
            let fwd = cpu::forward(&self.params, &batch);
            total += fwd.loss as f64;
            carry = Some([fwd.h_n, fwd.c_n].concat());
        }
        Ok((total / chunks.len().max(1) as f64) as f32)
    }

    fn train_sequences(&mut self, batch: &Batch, _report: bool) -> Result<Option<StepStats>> {
        let config = self.params.config;
        batch.validate(&config)?;
        let dropout = self.dropout.map(|d| d.at_step(self.state.step));
        let out = cpu::step_with(&self.params, batch, dropout.as_ref());
        let grad_norm = optim::update(
            &self.optim,
            &mut self.params.data,
            &out.grads,
            &mut self.state,
        );
        Ok(Some(StepStats {
            loss: out.loss,
            grad_norm,
        }))
    }

    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        batch.validate(&self.params.config)?;
        Ok(cpu::forward(&self.params, batch).logits)
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
        crate::shares::check_carry_len(h.len(), self.carry.len())?;
        self.carry.copy_from_slice(h);
        Ok(())
    }

    fn device(&self) -> String {
        "CPU reference".into()
    }

    fn gradients(
        &mut self,
        (inputs, targets): (&Inputs, &Targets),
        reset: bool,
        share: Share,
        grads: &mut Vec<f32>,
    ) -> Result<f32> {
        let (config, b, k, slot) = (self.params.config, self.micro(), self.slots, share.slot);
        let mut carry = crate::shares::carry_of(&config, &self.carry, b, k, slot);
        if reset {
            carry.iter_mut().for_each(|h| *h = 0.0);
        }
        let batch = carried_batch(&config, self.steps, inputs, targets, &carry);
        batch.validate(&config)?;
        let dropout = self.dropout.map(|d| Dropout {
            first_stream: share.first_stream,
            ..d.at_step(self.state.step)
        });
        let out = cpu::step_with(&self.params, &batch, dropout.as_ref());
        let carry = [out.h_n, out.c_n].concat();
        crate::shares::set_carry_of(&config, &mut self.carry, &carry, b, k, slot);
        *grads = out.grads;
        Ok(out.loss)
    }

    fn set_params(&mut self, params: &Params<f32>) -> Result<()> {
        if params.config != self.params.config || params.data.len() != self.params.data.len() {
            return Err(crate::Error::config(
                format!(
                    "parameters of {} for a model of {}",
                    params.config, self.params.config
                ),
                "pass parameters of the trainer's model",
            ));
        }
        self.params.data.copy_from_slice(&params.data);
        Ok(())
    }

    fn apply(&mut self, grads: &[f32], _report: bool) -> Result<Option<f32>> {
        let norm = optim::update(&self.optim, &mut self.params.data, grads, &mut self.state);
        Ok(Some(norm))
    }
}
