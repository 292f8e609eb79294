//! Training on the GPU: the step of [`super::step`] followed by gradient clipping and the
//! optimizer update (`shaders/optimizer.wgsl`), with the hidden state carried from one chunk to
//! the next on the GPU.
//!
//! One training step is one submission: upload the batch's inputs and targets, then
//! `carry → h_0`, forward, loss, backward, ‖g‖, update, `h_T → carry`. Nothing is read back
//! except the loss and the gradient norm (8 bytes), and only on the steps that report them.

use crate::dropout::DropoutSpec;
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::context::map_read_f32_into;
use crate::gpu::context::{Gpu, map_read};
use crate::gpu::model_step::{ModelStep, StepOptions};
use crate::gpu::optimizer::OnGpu;
use crate::gpu::plan::storage;
use crate::gpu::recurrence::Recurrence;
use crate::gpu::sequence_steps::SequenceSteps;
use crate::gpu::submit::{load_carry, settle, store_carry};
use crate::gpu::variant::Variant;
use crate::model::{Inputs, ModelConfig, Params, Targets};
use crate::optim::{OptimizerConfig, OptimizerState};

/// What the trainer's device was asked to do: the training steps run, and the device's
/// [`crate::gpu::context::Meter`] (dispatches counted as they are recorded, submissions as they
/// are submitted, waits and bytes where they happen; evaluation and read-backs included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Training steps run.
    pub steps: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Queue submissions.
    pub submissions: u64,
    /// Waits for the GPU.
    pub waits: u64,
    /// Bytes written to the GPU.
    pub bytes_uploaded: u64,
    /// Bytes read back from the GPU.
    pub bytes_read_back: u64,
}

/// The loss and gradient norm of a reported step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The mean loss of the step's batch (before the update).
    pub loss: f32,
    /// The gradient's global norm before clipping.
    pub grad_norm: f32,
}

/// A model training on the GPU: parameters, optimizer state and the carried hidden state.
pub struct GpuTrainer {
    pub(super) gpu: Gpu,
    pub(super) train: ModelStep,
    eval: Option<ModelStep>,
    /// The carried state: every layer's h, then (LSTM) every layer's c.   (L, K·B, H) each, for
    /// K micro-batches of B streams (`crate::shares::carry_ranges` places each)
    pub(super) carry: wgpu::Buffer,
    /// K, the micro-batches whose state the trainer carries (1 but in data-parallel runs).
    slots: usize,
    /// Where a data-parallel step reads its gradients and loss back.   (P + 1)
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    grads_staging: Option<wgpu::Buffer>,
    /// The evaluation's carried state.   (L, B_eval, H) each
    eval_carry: Option<wgpu::Buffer>,
    pub(super) opt: OnGpu,
    /// Training steps run.
    pub(super) steps: u64,
    /// The steps of other shapes that whole sequences run on.
    pub(super) sequences: SequenceSteps,
    /// Bytes of the buffers created for the trainer (its steps' excepted).
    own_bytes: u64,
}

/// The shapes a trainer is built for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainerShape {
    /// B of the training batches.
    pub batch: usize,
    /// T of every chunk.
    pub steps: usize,
    /// B of the evaluation batches, if the trainer evaluates.
    pub eval_batch: Option<usize>,
    /// How the recurrences are dispatched; `None` chooses (see [`ModelStep::new`]).
    pub recurrence: Option<Recurrence>,
    /// Dropout between the layers in training steps.
    pub dropout: Option<DropoutSpec>,
    /// How the training step runs (a tuned choice, [`crate::tune`]); `None` chooses as
    /// `recurrence` says. Where both are given they must agree.
    pub variant: Option<Variant>,
}

impl TrainerShape {
    /// Training batches of (B, T), no evaluation, the recurrence chosen for the shape.
    pub fn new(batch: usize, steps: usize) -> Self {
        Self {
            batch,
            steps,
            eval_batch: None,
            recurrence: None,
            dropout: None,
            variant: None,
        }
    }
}

impl GpuTrainer {
    /// Checks, before anything is allocated, that the training step, the evaluation step and the
    /// optimizer's buffers (as large as the parameters') fit the adapter.
    pub fn check_fits(gpu: &Gpu, config: ModelConfig, shape: &TrainerShape) -> Result<()> {
        let r = shape.recurrence;
        ModelStep::check_fits(gpu, config, (shape.batch, shape.steps), r)?;
        if let Some(b) = shape.eval_batch {
            ModelStep::check_fits(gpu, config, (b, shape.steps), r)?;
        }
        Ok(())
    }

    /// Builds the training step for batches of (B, T), an evaluation step for (B_eval, T) when
    /// `shape.eval_batch` is given, and the optimizer; uploads the parameters.
    pub fn new(
        gpu: Gpu,
        config: ModelConfig,
        shape: TrainerShape,
        optim: OptimizerConfig,
        params: &Params<f32>,
    ) -> Result<Self> {
        let TrainerShape {
            batch,
            steps,
            eval_batch,
            recurrence,
            dropout,
            variant,
        } = shape;
        optim.validate()?;
        if let (Some(r), Some(v)) = (recurrence, variant)
            && r != v.recurrence
        {
            return Err(crate::Error::config(
                format!(
                    "the recurrence asked for ({}) is not the variant's ({})",
                    r.name(),
                    v.name()
                ),
                "give the variant alone, or one whose ordering is the one asked for",
            ));
        }
        Self::check_fits(&gpu, config, &shape)?;
        let kernels = gpu.kernels()?;
        let train = gpu.scoped("allocating the training step", || {
            let chosen = variant.map_or_else(StepOptions::default, |v| v.options());
            let options = StepOptions {
                recurrence: recurrence.or(chosen.recurrence),
                dropout,
                ..chosen
            };
            ModelStep::new(&gpu, &kernels, config, (batch, steps), options)
        })??;
        let eval = match eval_batch {
            Some(b) => Some(gpu.scoped("allocating the evaluation step", || {
                let options = train.sibling_options();
                ModelStep::new(&gpu, &kernels, config, (b, steps), options)
            })??),
            None => None,
        };
        let (carry, eval_carry, opt) = gpu.scoped("allocating the optimizer", || {
            let carry = storage(&gpu, "carry", config.carry_len(batch));
            let eval_carry = eval_batch.map(|b| storage(&gpu, "eval carry", config.carry_len(b)));
            (carry, eval_carry, OnGpu::new(&gpu, &train, &optim))
        })?;
        let own_bytes = carry.size() + eval_carry.as_ref().map_or(0, |b| b.size()) + opt.bytes;
        let sequences = SequenceSteps::new(kernels, dropout, steps);
        let mut trainer = Self {
            gpu,
            train,
            sequences,
            eval,
            carry,
            slots: 1,
            grads_staging: None,
            eval_carry,
            opt,
            steps: 0,
            own_bytes,
        };
        trainer.set_params(params)?;
        Ok(trainer)
    }

    /// The device this trainer runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The training step (buffers and dispatches).
    pub fn step(&self) -> &ModelStep {
        &self.train
    }

    /// What the steps so far cost the host.
    pub fn counters(&self) -> Counters {
        let m = self.gpu.meter.read();
        Counters {
            steps: self.steps,
            dispatches: m.dispatches,
            submissions: m.submissions,
            waits: m.waits,
            bytes_uploaded: m.bytes_uploaded,
            bytes_read_back: m.bytes_read_back,
        }
    }

    /// Dispatches in one training step (step, norm, update).
    pub fn dispatches_per_step(&self) -> usize {
        self.train.dispatches() + self.opt.dispatches.len()
    }

    /// GPU memory held by the trainer's buffers, in bytes. (The evaluation step and the steps
    /// for whole sequences share the training step's parameters; their own buffers count.)
    pub fn memory_bytes(&self) -> u64 {
        self.train.memory_bytes()
            + self.eval.as_ref().map_or(0, ModelStep::memory_bytes)
            + self.sequences.memory_bytes()
            + self.own_bytes
    }

    /// Replaces the parameters.
    pub fn set_params(&mut self, params: &Params<f32>) -> Result<()> {
        self.train.write_params(&self.gpu, params)
    }

    /// Carries the state of `slots` micro-batches of B streams each, for
    /// [`GpuTrainer::gradients`]: the carry becomes (L, K·B, H) per tensor, in stream order.
    pub fn with_slots(mut self, slots: usize) -> Result<Self> {
        let n = self.train.config().carry_len(self.train.shape().0) * slots;
        let carry = self.gpu.scoped("allocating the carried state", || {
            storage(&self.gpu, "carry", n)
        })?;
        self.own_bytes = self.own_bytes - self.carry.size() + carry.size();
        self.carry = carry;
        self.slots = slots;
        Ok(self)
    }

    /// The forward and backward pass of one micro-batch from its carried state (slot
    /// `share.slot`; zero when `reset`), without an update: waits for its gradients, reads them
    /// into `grads` and returns its loss. A data-parallel step sums these over its shares before
    /// [`GpuTrainer::apply_gradients`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gradients(
        &mut self,
        (inputs, targets): (&Inputs, &Targets),
        reset: bool,
        share: crate::shares::Share,
        grads: &mut Vec<f32>,
    ) -> Result<f32> {
        let n = self.train.config().num_params();
        if self.grads_staging.is_none() {
            let buffer = self.gpu.scoped("allocating the gradients' read-back", || {
                self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gradients read-back"),
                    size: (n as u64 + 1) * 4,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })?;
            self.own_bytes += buffer.size();
            self.grads_staging = Some(buffer);
        }
        self.train.write_data(&self.gpu, inputs, targets);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let at = (share.slot, self.slots);
        if reset {
            for (offset, bytes) in crate::gpu::submit::slot_blocks(&self.train, at) {
                encoder.clear_buffer(&self.carry, offset, Some(bytes));
            }
        }
        load_carry(&mut encoder, &self.carry, &self.train, at);
        if let Some(counter) = self.train.dropout_counter() {
            // The masks' b₀, written before this submission runs; their step, the optimizer's t.
            let first = share.first_stream as u32;
            self.gpu.write(counter, 4, bytemuck::bytes_of(&first));
            encoder.copy_buffer_to_buffer(&self.opt.state, 0, counter, 0, 4);
        }
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.train.record(&mut pass);
        }
        let mut encoder = pollster::block_on(settle(&self.gpu, &self.train, encoder, false))?;
        store_carry(&mut encoder, &self.train, &self.carry, at);
        let staging = self.grads_staging.as_ref().expect("made above");
        let bytes = n as u64 * 4;
        encoder.copy_buffer_to_buffer(self.train.grads(), 0, staging, 0, bytes);
        encoder.copy_buffer_to_buffer(self.train.stats(), 0, staging, bytes, 4);
        self.gpu.submit(encoder);
        let op = "reading the gradients back";
        map_read_f32_into(&self.gpu, staging, bytes + 4, op, grads)?;
        Ok(grads.pop().expect("the loss follows the gradients"))
    }

    /// Clips and applies given gradients (in the parameter layout) with the optimizer alone, as a
    /// training step would after its backward pass; returns the gradient's norm. Waits for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn apply_gradients(&mut self, grads: &[f32]) -> Result<f32> {
        let norm = self.apply(grads, true)?;
        Ok(norm.expect("a reported update has a norm"))
    }

    /// [`GpuTrainer::apply_gradients`], waiting for the norm only when `report`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn apply(&mut self, grads: &[f32], report: bool) -> Result<Option<f32>> {
        let n = self.train.config().num_params();
        if grads.len() != n {
            return Err(Error::config(
                format!("{} gradients for a model of {n} parameters", grads.len()),
                "pass gradients in the model's parameter layout",
            ));
        }
        self.gpu
            .write(self.train.grads(), 0, bytemuck::cast_slice(grads));
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &self.opt.dispatches {
                d.record(&mut pass);
            }
        }
        if report {
            encoder.copy_buffer_to_buffer(self.train.stats(), 0, &self.opt.staging, 0, 8);
        }
        self.gpu.submit(encoder);
        self.steps += 1;
        if !report {
            let _ = self.gpu.device.poll(wgpu::PollType::Poll);
            return self.gpu.check("an update").map(|_| None);
        }
        let stats = pollster::block_on(self.read_staging(8, "reading the gradient norm back"))?;
        Ok(Some(stats[1]))
    }

    /// Waits for the submitted work and reads the first `bytes` bytes of the staging buffer
    /// (the loss, and the gradient norm when 8) as f32.
    pub(super) async fn read_staging(&self, bytes: u64, op: &str) -> Result<Vec<f32>> {
        let staging = map_read(&self.gpu, &self.opt.staging, bytes, op).await?;
        Ok(bytemuck::pod_collect_to_vec(&staging))
    }

    /// One training step with each phase in its own compute pass between timestamp queries;
    /// returns (phase, milliseconds) in order. Needs `TIMESTAMP_QUERY`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_step(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
    ) -> Result<Vec<(&'static str, f64)>> {
        if !self.gpu.timestamps {
            return Err(Error::Adapter {
                problem: format!(
                    "{} has no timestamp queries",
                    crate::gpu::describe(&self.gpu.info)
                ),
                hint: "run bench without --profile".into(),
            });
        }
        let mut phases: Vec<(&'static str, &[crate::gpu::plan::Dispatch])> = self
            .train
            .phases()
            .0
            .iter()
            .map(|(p, d)| (p.name(), d.as_slice()))
            .collect();
        phases.push(("optimizer", &self.opt.dispatches));
        let count = 2 * phases.len() as u32;
        let (set, resolve, read) = self.gpu.scoped("creating timestamp queries", || {
            let set = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("phase timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let bytes = count as u64 * 8;
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read-back"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        })?;
        self.train.write_data(&self.gpu, inputs, targets);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for (i, (name, dispatches)) in phases.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(name),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            for d in *dispatches {
                d.record(&mut pass);
            }
        }
        encoder.resolve_query_set(&set, 0..count, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &read, 0, count as u64 * 8);
        self.gpu.submit(encoder);
        let bytes = count as u64 * 8;
        let ticks = pollster::block_on(map_read(&self.gpu, &read, bytes, "reading timestamps"))?;
        if pollster::block_on(self.train.barrier_failed(&self.gpu))? {
            // The times are of a step that ended early; the step runs ordered from now on.
            return self.profile_step(inputs, targets);
        }
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&ticks);
        let period = self.gpu.queue.get_timestamp_period() as f64;
        Ok(phases
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                (
                    *name,
                    ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period * 1e-6,
                )
            })
            .collect())
    }

    /// The mean loss over evaluation chunks, run from a zero hidden state carried from chunk to
    /// chunk, without touching the training state.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        pollster::block_on(self.evaluate_async(chunks))
    }

    /// [`GpuTrainer::evaluate`] as a future.
    pub async fn evaluate_async(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        let (Some(eval), Some(carry)) = (&self.eval, &self.eval_carry) else {
            return Err(Error::config(
                "this trainer was built without an evaluation step",
                "build it with an evaluation batch size",
            ));
        };
        let mut total = 0.0f64;
        for (i, (x, y)) in chunks.iter().enumerate() {
            eval.write_data(&self.gpu, x, y);
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            if i == 0 {
                encoder.clear_buffer(carry, 0, None);
            }
            load_carry(&mut encoder, carry, eval, (0, 1));
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                eval.record_forward(&mut pass);
            }
            let mut encoder = settle(&self.gpu, eval, encoder, true).await?;
            store_carry(&mut encoder, eval, carry, (0, 1));
            encoder.copy_buffer_to_buffer(eval.stats(), 0, &self.opt.staging, 0, 4);
            self.gpu.submit(encoder);
            let loss = self
                .read_staging(4, "reading the validation loss back")
                .await?;
            total += loss[0] as f64;
        }
        Ok((total / chunks.len().max(1) as f64) as f32)
    }

    /// The current parameters.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn params(&self) -> Result<Params<f32>> {
        pollster::block_on(self.params_async())
    }

    /// [`GpuTrainer::params`] as a future.
    pub async fn params_async(&self) -> Result<Params<f32>> {
        let config = self.train.config();
        let (params, n) = (self.train.params(), config.num_params());
        Ok(Params {
            config,
            data: self.gpu.read_f32_async(params, 0, n).await?,
        })
    }

    /// The optimizer's state.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn optimizer_state(&self) -> Result<OptimizerState> {
        pollster::block_on(self.optimizer_state_async())
    }

    /// [`GpuTrainer::optimizer_state`] as a future.
    pub async fn optimizer_state_async(&self) -> Result<OptimizerState> {
        let n = self.train.config().num_params();
        let state = self.gpu.read_u32_async(&self.opt.state, 0, 3).await?;
        Ok(OptimizerState {
            m: self.gpu.read_f32_async(&self.opt.m, 0, n).await?,
            v: self.gpu.read_f32_async(&self.opt.v, 0, n).await?,
            step: state[0] as u64,
            bias: [f32::from_bits(state[1]), f32::from_bits(state[2])],
        })
    }

    /// Replaces the optimizer's state.
    pub fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let n = self.train.config().num_params();
        if state.m.len() != n || state.v.len() != n {
            return Err(Error::config(
                format!(
                    "optimizer state of {} values for a model of {n} parameters",
                    state.m.len()
                ),
                "resume from a checkpoint of the same model",
            ));
        }
        let g = &self.gpu;
        g.write(&self.opt.m, 0, bytemuck::cast_slice(&state.m));
        g.write(&self.opt.v, 0, bytemuck::cast_slice(&state.v));
        let words = [
            state.step as u32,
            state.bias[0].to_bits(),
            state.bias[1].to_bits(),
            0,
        ];
        g.write(&self.opt.state, 0, bytemuck::cast_slice(&words));
        Ok(())
    }

    /// The values of the carried state: every layer's h, then (LSTM) every layer's c.
    fn carry_len(&self) -> usize {
        self.train.config().carry_len(self.train.shape().0) * self.slots
    }

    /// The carried state: every layer's h, then (LSTM) every layer's c, (L, B, H) each.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn hidden(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.hidden_async())
    }

    /// [`GpuTrainer::hidden`] as a future.
    pub async fn hidden_async(&self) -> Result<Vec<f32>> {
        self.gpu
            .read_f32_async(&self.carry, 0, self.carry_len())
            .await
    }

    /// Replaces the carried state.
    pub fn set_hidden(&mut self, h: &[f32]) -> Result<()> {
        crate::shares::check_carry_len(h.len(), self.carry_len())?;
        self.gpu.write(&self.carry, 0, bytemuck::cast_slice(h));
        Ok(())
    }
}
