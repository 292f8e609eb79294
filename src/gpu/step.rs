//! One training step of one tanh Elman layer on the GPU (the fused fast path; every other model
//! runs [`super::stack`]): forward, loss, backward, recorded into one compute pass with every
//! intermediate resident on the GPU.
//!
//! Dimensions: B batch, T timesteps, I input size, H hidden size, O output size.
//!
//! The stages, in order (the same as [`crate::cpu`], batched the way cuDNN batches them):
//!
//! | phase                | dispatches     | computes                                              |
//! |----------------------|---------------:|-------------------------------------------------------|
//! | weight layouts       | 3, or 4        | `W^T`, `V^T` (and W) padded for vec4 loads; `b = b_ih + b_hh` |
//! | input projection     | 1              | `pre = x U^T + b` for all T·B rows (gather for tokens) |
//! | forward recurrence   | T, or 1        | `h_t = tanh(pre_t + h_{t-1} W^T)`                      |
//! | output and loss      | 3              | `y = hs V^T + c`, per-row loss and `dy`, the mean loss |
//! | output gradients     | 3 (+1)         | `dh = dy V`, `dV = dy^T hs`, `dc = Σ dy`              |
//! | backward recurrence  | T, or 1        | `dA_t = (dh_t + dA_{t+1} W) ⊙ (1 − h_t²)`             |
//! | weight gradients     | 5 (+2)         | `dW = dA^T hs[..T]`, `db_ih = db_hh = Σ dA`, `dU = dA^T x`, `dh0 = dA_1 W` |
//!
//! (+1, +2: the in-order sums of split weight gradients, from T·B = 1024 rows on.)
//!
//! Only the two recurrences are sequential in time. They run either as one fused matmul dispatch
//! per timestep ([`Recurrence::PerStep`]) or as one dispatch for all T timesteps in which each
//! workgroup owns a block of batch rows ([`Recurrence::Persistent`]); every other stage is one
//! dispatch over all T·B rows. Buffers, bind groups and pipelines are created once in
//! [`GpuStep::new`]; the parameters of every dispatch sit in one uniform buffer, each at its own
//! dynamic offset.

use crate::error::{Error, Result};
use crate::footprint::largest;
use crate::gpu::context::Gpu;
use crate::gpu::kernels::Kernels;
pub use crate::gpu::phase::Phase;
use crate::gpu::plan::{Recorded, storage, weight_gradient_splits};
pub use crate::gpu::recurrence::{PERSISTENT_MAX_ELEMENTS, Recurrence};
use crate::gpu::stack_buffers::largest_hint;
use crate::gpu::step_plan::Planner;
use crate::model::{Batch, InputKind, Inputs, ModelConfig, Params, StepOutput, Targets};

/// The buffers of the fused Elman step.
pub struct ElmanBuffers {
    /// θ in the table's layout: U, W, b_ih, b_hh, V, c.   (P)
    pub params: wgpu::Buffer,
    /// ∂L/∂θ in the table's layout (db_ih = db_hh = db).   (P)
    pub grads: wgpu::Buffer,
    /// b = b_ih + b_hh, the bias the step adds once.       (H)
    pub bias: wgpu::Buffer,
    /// x_1 … x_T: token ids (T, B) u32, or (T, B, I) f32.
    pub x: wgpu::Buffer,
    /// targets: token ids (T, B) u32, or (T, B, O) f32.
    pub targets: wgpu::Buffer,
    /// W^T, rows padded to H4 (H rounded up to a multiple of 4).   (H4, H4)
    pub wt: wgpu::Buffer,
    /// V^T, rows padded to O4.                    (H, O4)
    pub vt: wgpu::Buffer,
    /// W, rows padded to H4 (persistent recurrence).   (H4, H4)
    pub w_padded: wgpu::Buffer,
    /// x U^T + b.                                 (T, B, H)
    pub pre: wgpu::Buffer,
    /// h_0 … h_T.                                 (T+1, B, H)
    pub hs: wgpu::Buffer,
    /// y_1 … y_T.                                 (T, B, O)
    pub logits: wgpu::Buffer,
    /// ∂L/∂y.                                     (T, B, O)
    pub dy: wgpu::Buffer,
    /// per-position loss.                         (T·B)
    pub row_loss: wgpu::Buffer,
    /// [the mean loss, the gradient norm (written by the optimizer)].   (2)
    pub stats: wgpu::Buffer,
    /// dy V.                                      (T, B, H)
    pub dh: wgpu::Buffer,
    /// dA_1 … dA_T.                               (T, B, H)
    pub da: wgpu::Buffer,
    /// ∂L/∂h_0.                                   (B, H)
    pub dh0: wgpu::Buffer,
    /// Partial sums of the split weight gradients.   (splits, max M·N)
    pub partials: wgpu::Buffer,
}

/// The GPU buffers and the recorded dispatches of one training step for a fixed (B, T) and model.
pub struct GpuStep {
    /// The model's sizes.
    pub config: ModelConfig,
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// How the recurrences are dispatched.
    pub recurrence: Recurrence,
    /// The buffers.
    pub buffers: ElmanBuffers,
    phases: Recorded,
    bytes: u64,
}

/// The step's largest buffers for a model and (B, T): (what, elements).
fn buffer_sizes(config: &ModelConfig, batch: usize, steps: usize) -> [(&'static str, usize); 5] {
    let (ni, nh, no) = (config.input, config.hidden, config.output);
    let rows = batch * steps;
    let dense = config.kind == InputKind::Dense;
    [
        (
            "the parameters (U, W, b_ih, b_hh, V, c)",
            config.num_params().max(nh.next_multiple_of(4).pow(2)),
        ),
        (
            "the inputs x (T, B, I)",
            if dense { rows * ni } else { rows },
        ),
        ("the targets and outputs (T, B, O)", rows * no),
        ("the hidden states hs (T+1, B, H)", (steps + 1) * batch * nh),
        ("the per-timestep gradients dA (T, B, H)", rows * nh),
    ]
}

impl GpuStep {
    /// Checks, before any allocation, that every buffer of a step fits the device's limits; the
    /// error names the limit, the bytes needed, and the largest hidden size and batch that fit.
    pub fn check_fits(gpu: &Gpu, config: &ModelConfig, batch: usize, steps: usize) -> Result<()> {
        let (limit, allowed) = gpu.storage_limit();
        let fits = |c: &ModelConfig, b: usize| {
            buffer_sizes(c, b, steps)
                .iter()
                .all(|&(_, n)| (n as u64) * 4 <= allowed)
        };
        for (what, elements) in buffer_sizes(config, batch, steps) {
            let needed = elements as u64 * 4;
            if needed > allowed {
                let h = largest(config.hidden, &|h| {
                    h > 0
                        && fits(
                            &ModelConfig {
                                hidden: h,
                                ..*config
                            },
                            batch,
                        )
                });
                let b = largest(batch, &|b| b > 0 && fits(config, b));
                return Err(Error::Limit {
                    what: what.into(),
                    limit,
                    needed,
                    allowed,
                    hint: largest_hint(h, b, (config.hidden, batch, steps)),
                });
            }
        }
        Ok(())
    }

    /// Allocates every buffer and records every dispatch for this model and (B, T).
    /// Fails with [`Error::Limit`] before any allocation if a buffer does not fit the adapter.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        batch: usize,
        steps: usize,
        recurrence: Recurrence,
    ) -> Result<Self> {
        Self::with_params(gpu, kernels, config, batch, steps, recurrence, None)
    }

    /// As [`Self::new`], reading the parameters from `params` when given (shared with another step,
    /// e.g. the training step's, so that evaluation needs no copy).
    pub fn with_params(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        batch: usize,
        steps: usize,
        recurrence: Recurrence,
        params: Option<wgpu::Buffer>,
    ) -> Result<Self> {
        validate(gpu, &config, (batch, steps), recurrence)?;
        let (buffers, mut bytes) = allocate(gpu, &config, (batch, steps), params);
        let mut planner = Planner::new(gpu, kernels, &buffers, config, (batch, steps), recurrence);
        planner.layouts();
        planner.input_projection();
        planner.forward_recurrence();
        planner.output_and_loss();
        planner.output_gradients();
        planner.backward_recurrence();
        planner.weight_gradients();
        bytes += planner.plan.uniforms.len() as u64;
        let phases = planner.plan.finish(gpu);
        Ok(Self {
            config,
            batch,
            steps,
            recurrence,
            buffers,
            phases,
            bytes,
        })
    }

    /// Bytes of GPU memory the step's buffers hold (the parameters too, unless shared with another
    /// step).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Dispatches per step (forward, loss and backward).
    pub fn dispatches(&self) -> usize {
        self.phases.dispatches()
    }

    /// Records the whole step (forward, loss, backward) into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.phases.record(pass);
    }

    /// The recorded phases, for per-phase profiling.
    pub(crate) fn phases(&self) -> &Recorded {
        &self.phases
    }

    /// Uploads the parameters.
    pub fn write_params(&self, gpu: &Gpu, params: &Params<f32>) -> Result<()> {
        if params.config != self.config {
            return Err(Error::config(
                format!(
                    "parameters of a model of {} given to a step built for {}",
                    params.config, self.config
                ),
                "build the step for the model's sizes",
            ));
        }
        gpu.write(&self.buffers.params, 0, bytemuck::cast_slice(&params.data));
        Ok(())
    }

    /// Uploads a batch's inputs, targets and h_0. Returns the bytes uploaded.
    pub fn write_batch(&self, gpu: &Gpu, batch: &Batch) -> Result<u64> {
        if batch.batch != self.batch || batch.steps != self.steps {
            return Err(Error::config(
                format!(
                    "a batch of B={}, T={} given to a step built for B={}, T={}",
                    batch.batch, batch.steps, self.batch, self.steps
                ),
                "build a step for the batch's shape",
            ));
        }
        batch.validate(&self.config)?;
        let h0 = gpu.write(&self.buffers.hs, 0, bytemuck::cast_slice(&batch.h0));
        Ok(self.write_data(gpu, &batch.inputs, &batch.targets) + h0)
    }

    /// Uploads inputs and targets alone (the caller has checked them against the model), leaving
    /// h_0 as it is. Returns the bytes uploaded.
    pub fn write_data(&self, gpu: &Gpu, inputs: &Inputs, targets: &Targets) -> u64 {
        let x: &[u8] = match inputs {
            Inputs::Tokens(x) => bytemuck::cast_slice(x),
            Inputs::Dense(x) => bytemuck::cast_slice(x),
        };
        let y: &[u8] = match targets {
            Targets::Tokens(y) => bytemuck::cast_slice(y),
            Targets::Dense(y) => bytemuck::cast_slice(y),
        };
        gpu.write(&self.buffers.x, 0, x) + gpu.write(&self.buffers.targets, 0, y)
    }

    /// Runs one step on `params` and `batch` and reads back everything it computed.
    /// For checks and tests: the training loop never reads these back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_and_read(
        &self,
        gpu: &Gpu,
        params: &Params<f32>,
        batch: &Batch,
    ) -> Result<StepOutput<f32>> {
        pollster::block_on(self.run_and_read_async(gpu, params, batch))
    }

    /// [`GpuStep::run_and_read`] as a future.
    pub async fn run_and_read_async(
        &self,
        gpu: &Gpu,
        params: &Params<f32>,
        batch: &Batch,
    ) -> Result<StepOutput<f32>> {
        gpu.scoped("running the training step", || -> Result<()> {
            self.write_params(gpu, params)?;
            self.write_batch(gpu, batch)?;
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record(&mut pass);
            }
            gpu.submit(encoder);
            Ok(())
        })??;
        let (nb, nt, nh) = (self.batch, self.steps, self.config.hidden);
        let b = &self.buffers;
        Ok(StepOutput {
            loss: gpu.read_f32_async(&b.stats, 0, 1).await?[0],
            output: gpu.read_f32_async(&b.hs, nb * nh, nt * nb * nh).await?,
            h_n: gpu.read_f32_async(&b.hs, nt * nb * nh, nb * nh).await?,
            c_n: vec![],
            logits: (gpu.read_f32_async(&b.logits, 0, nt * nb * self.config.output)).await?,
            grads: (gpu.read_f32_async(&b.grads, 0, self.config.num_params())).await?,
            dh0: gpu.read_f32_async(&b.dh0, 0, nb * nh).await?,
            dc0: vec![],
        })
    }
}

/// Rejects a model, shape or recurrence the fused step cannot run, and one that does not fit the
/// adapter, before any allocation.
pub(crate) fn validate(
    gpu: &Gpu,
    config: &ModelConfig,
    (batch, steps): (usize, usize),
    recurrence: Recurrence,
) -> Result<()> {
    config.validate()?;
    if batch == 0 || steps == 0 {
        return Err(Error::config(
            format!("batch size B={batch} and timesteps T={steps}: both must be at least 1"),
            "pass --batch and --steps of 1 or more",
        ));
    }
    let nh = config.hidden;
    let (nb, nt) = (batch, steps);
    if recurrence == Recurrence::Persistent && nh.next_multiple_of(4) > PERSISTENT_MAX_ELEMENTS {
        return Err(Error::config(
            format!(
                "the persistent recurrence holds at most H={PERSISTENT_MAX_ELEMENTS} in workgroup memory, H is {nh}"
            ),
            "use --recurrence per-step",
        ));
    }
    GpuStep::check_fits(gpu, config, nb, nt)?;
    if !config.is_elman() {
        return Err(Error::config(
            format!(
                "the fused Elman step runs one tanh layer; this model has {} layer(s) of {}",
                config.layers,
                config.cell.name()
            ),
            "build the stacked step (GpuStack) for it",
        ));
    }
    Ok(())
}

/// Allocates every buffer of the step (the parameters unless shared); returns them and their
/// bytes.
fn allocate(
    gpu: &Gpu,
    config: &ModelConfig,
    (nb, nt): (usize, usize),
    params: Option<wgpu::Buffer>,
) -> (ElmanBuffers, u64) {
    let (ni, nh, no) = (config.input, config.hidden, config.output);
    let n_rows = nt * nb;
    let (x_len, target_len) = match config.kind {
        InputKind::Tokens => (n_rows, n_rows),
        InputKind::Dense => (n_rows * ni, n_rows * no),
    };
    let mut bytes = 0u64;
    let mut buf = |label: &str, n: usize| {
        bytes += (n.max(4) * 4) as u64;
        storage(gpu, label, n)
    };
    let (h4, o4) = (nh.next_multiple_of(4), no.next_multiple_of(4));
    // Partial sums of the split weight-gradient products: (splits, M·N) of the largest.
    let widest = nh * nh.max(ni).max(no);
    let splits = weight_gradient_splits(n_rows, widest, gpu.storage_limit().1);
    let buffers = ElmanBuffers {
        params: match params {
            Some(shared) => shared,
            None => buf("params", config.num_params()),
        },
        grads: buf("grads", config.num_params()),
        bias: buf("bias", nh),
        x: buf("x", x_len),
        targets: buf("targets", target_len),
        wt: buf("wt", h4 * h4),
        vt: buf("vt", nh * o4),
        w_padded: buf("w_padded", h4 * h4),
        pre: buf("pre", n_rows * nh),
        hs: buf("hs", (nt + 1) * nb * nh),
        logits: buf("logits", n_rows * no),
        dy: buf("dy", n_rows * no),
        row_loss: buf("row_loss", n_rows),
        stats: buf("stats", 2),
        dh: buf("dh", n_rows * nh),
        da: buf("da", n_rows * nh),
        dh0: buf("dh0", nb * nh),
        partials: buf("partials", if splits > 1 { splits * widest } else { 0 }),
    };
    (buffers, bytes)
}
