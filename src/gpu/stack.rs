//! One training step of stacked recurrent layers of any [`Cell`](crate::cell::Cell) on the GPU: forward, loss and
//! backward recorded into one compute pass, every layer's hidden states (and an LSTM's cell
//! states) and gate activations resident between the passes.
//!
//! Dimensions: B batch, T timesteps, I input, H hidden, O output, L layers, G gates per cell.
//!
//! Per layer, the shape cuDNN uses (`a` is the input projection of every gate, `r` the
//! recurrent one, both G·H wide):
//!
//! | phase               | dispatches per layer | computes                                          |
//! |---------------------|---------------------:|---------------------------------------------------|
//! | weight layouts      | 2 (+1 for V, +1 persistent) | `W_ih^T`, `W_hh^T` (and `W_hh`) padded for vec4 loads |
//! | input projection    | 1                    | `a = x U^T + b_ih` over all T·B rows (a gather for tokens) |
//! | forward recurrence  | 2T, or 1             | `r_t = h_{t-1} W^T + b_hh`, then the cell's `forward` |
//! | output and loss     | 3 (once)             | `y = h V^T + c`, loss and `dy`, the mean          |
//! | output gradients    | 3 (once)             | `dh = dy V`, `dV`, `dc`                           |
//! | backward recurrence | 2T, or 1             | the cell's `backward`, then `dh_next = dr_t W`    |
//! | weight gradients    | 4 (+1 below the top) | `dU = da^T x`, `db_ih`, `dW = dr^T h`, `db_hh`; layer l−1's `dh = da U` |
//!
//! The recurrences run per timestep (a product, then the cell's kernel) or as one persistent
//! kernel per layer and pass (`shaders/cell_sequence.wgsl`; on a software adapter one per chunk
//! of timesteps), as [`Recurrence`] chooses. (Split weight gradients add one in-order sum each,
//! from T·B = 1024 rows on.) Layer l reads
//! layer l−1's h_1 … h_T as its x; the backward pass runs from the top layer down, each layer's
//! `da U` becoming the `dh` of the layer below. Buffers, bind groups and pipelines are created
//! once in [`GpuStack::new`]; a step is one submission.

use crate::error::{Error, Result};
use crate::gpu::context::Gpu;
use crate::gpu::kernels::Kernels;
use crate::gpu::model_step::StepOptions;
use crate::gpu::plan::Recorded;
use crate::gpu::recurrence::Recurrence;
pub use crate::gpu::stack_buffers::StackBuffers;
use crate::gpu::stack_buffers::{Shape, allocate, check_fits, places};
use crate::gpu::stack_plan::{PlanOptions, plan_step};
use crate::model::{Batch, Inputs, ModelConfig, StepOutput, Targets};

/// The GPU buffers and recorded dispatches of one training step of a stacked model for a fixed
/// (B, T).
pub struct GpuStack {
    /// The model.
    pub config: ModelConfig,
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// The buffers.
    pub buffers: StackBuffers,
    /// How the layers' recurrences are dispatched.
    pub recurrence: Recurrence,
    phases: Recorded,
    bytes: u64,
    dropout: bool,
}

impl GpuStack {
    /// Allocates every buffer and records every dispatch for this model and (B, T). Fails with
    /// [`Error::Limit`] before any allocation if a buffer does not fit the adapter.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        batch: usize,
        steps: usize,
    ) -> Result<Self> {
        Self::with_options(gpu, kernels, config, (batch, steps), StepOptions::default())
    }

    /// As [`Self::new`], with the options: the recurrence asked for (else chosen per shape and
    /// adapter), the parameters read from another step's buffer (evaluation shares the training
    /// step's, so it needs no copy), and dropout between the layers (a training step's; its
    /// masks keyed by the update count in the step's counter buffer).
    pub fn with_options(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        (batch, steps): (usize, usize),
        options: StepOptions,
    ) -> Result<Self> {
        let StepOptions {
            recurrence,
            params,
            dropout,
        } = options;
        let (s, recurrence) = Self::check_fits(gpu, config, (batch, steps), recurrence)?;
        let table = config.table();
        let persistent = recurrence == Recurrence::Persistent;
        let (places, vt, wt_len) = places(&config, &table, persistent);
        let dropped = dropout.is_some() && config.layers > 1;
        let (buffers, mut bytes) = allocate(gpu, &s, &table, wt_len, (params, dropped));
        let options = PlanOptions {
            dropout: dropout.filter(|_| config.layers > 1),
            recurrence,
        };
        let (phases, uniform_bytes) =
            plan_step(gpu, kernels, (&buffers, s, &table), (places, vt), options);
        bytes += uniform_bytes;
        Ok(Self {
            config,
            batch,
            steps,
            buffers,
            phases,
            bytes,
            dropout: dropped,
            recurrence,
        })
    }

    /// Checks, before anything is allocated, that the model and (B, T) make a step and that
    /// every buffer of it fits the adapter; returns the shape and the recurrence it would run.
    pub(crate) fn check_fits(
        gpu: &Gpu,
        config: ModelConfig,
        (batch, steps): (usize, usize),
        recurrence: Option<Recurrence>,
    ) -> Result<(Shape, Recurrence)> {
        config.validate()?;
        if batch == 0 || steps == 0 {
            return Err(Error::config(
                format!("batch size B={batch} and timesteps T={steps}: both must be at least 1"),
                "pass --batch and --steps of 1 or more",
            ));
        }
        let s = Shape {
            config,
            nb: batch,
            nt: steps,
        };
        let recurrence = Recurrence::for_cells(gpu, recurrence, s.gh())?;
        check_fits(gpu, &s, recurrence == Recurrence::Persistent)?;
        Ok((s, recurrence))
    }

    /// Bytes of GPU memory the step's buffers hold.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Dispatches per step (forward, loss and backward).
    pub fn dispatches(&self) -> usize {
        self.phases.dispatches()
    }

    /// Records the whole step into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.phases.record(pass);
    }

    /// The recorded phases.
    pub(crate) fn phases(&self) -> &Recorded {
        &self.phases
    }

    /// Whether the step applies dropout between its layers.
    pub fn has_dropout(&self) -> bool {
        self.dropout
    }

    /// Sets the update count that keys the dropout masks (the trainer copies the optimizer's
    /// instead, on the GPU).
    pub fn set_step(&self, gpu: &Gpu, step: u64) {
        gpu.write(
            &self.buffers.counter,
            0,
            bytemuck::cast_slice(&[step as u32, 0, 0, 0]),
        );
    }

    /// Uploads the parameters (in the table's layout).
    pub fn write_params(&self, gpu: &Gpu, params: &[f32]) -> Result<()> {
        let expected = self.config.table().len;
        if params.len() != expected {
            return Err(Error::config(
                format!(
                    "{} parameters given to a step of a model with {expected}",
                    params.len()
                ),
                "build the step for the model's sizes",
            ));
        }
        gpu.write(&self.buffers.params, 0, bytemuck::cast_slice(params));
        Ok(())
    }

    /// Uploads inputs and targets alone (the caller has checked them against the model).
    /// Returns the bytes uploaded.
    pub fn write_data(&self, gpu: &Gpu, inputs: &Inputs, targets: &Targets) -> u64 {
        let b = &self.buffers;
        let x: &[u8] = match inputs {
            Inputs::Tokens(x) => bytemuck::cast_slice(x),
            Inputs::Dense(x) => bytemuck::cast_slice(x),
        };
        let y: &[u8] = match targets {
            Targets::Tokens(y) => bytemuck::cast_slice(y),
            Targets::Dense(y) => bytemuck::cast_slice(y),
        };
        gpu.write(&b.x, 0, x) + gpu.write(&b.targets, 0, y)
    }

    /// Uploads a batch: inputs, targets, and every layer's h_0 (and c_0).
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
        let b = &self.buffers;
        let mut sent = self.write_data(gpu, &batch.inputs, &batch.targets);
        let bh = self.batch * self.config.hidden;
        let lstm = self.config.cell.has_cell_state();
        for l in 0..self.config.layers {
            let at = ((l * (self.steps + 1) * bh) * 4) as u64;
            let layer = l * bh..(l + 1) * bh;
            sent += gpu.write(&b.hs, at, bytemuck::cast_slice(&batch.h0[layer.clone()]));
            if lstm {
                sent += gpu.write(&b.cs, at, bytemuck::cast_slice(&batch.c0[layer]));
            }
        }
        Ok(sent)
    }

    /// Runs one step and reads back everything it computed, in the CPU reference's form.
    /// For checks and tests: training never reads these back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_and_read(
        &self,
        gpu: &Gpu,
        params: &[f32],
        batch: &Batch,
    ) -> Result<StepOutput<f32>> {
        pollster::block_on(self.run_and_read_async(gpu, params, batch))
    }

    /// [`GpuStack::run_and_read`] as a future.
    pub async fn run_and_read_async(
        &self,
        gpu: &Gpu,
        params: &[f32],
        batch: &Batch,
    ) -> Result<StepOutput<f32>> {
        gpu.scoped("running the stacked training step", || -> Result<()> {
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
        self.read_output(gpu).await
    }

    /// Reads back the results of the step last run.
    async fn read_output(&self, gpu: &Gpu) -> Result<StepOutput<f32>> {
        let (c, b) = (&self.config, &self.buffers);
        let (nb, nt, nh, nl) = (self.batch, self.steps, c.hidden, c.layers);
        let bh = nb * nh;
        // Every layer's state after the last timestep.
        let last = async |buf: &wgpu::Buffer| -> Result<Vec<f32>> {
            let mut v = Vec::with_capacity(nl * bh);
            for l in 0..nl {
                v.extend(
                    gpu.read_f32_async(buf, (l * (nt + 1) + nt) * bh, bh)
                        .await?,
                );
            }
            Ok(v)
        };
        let lstm = c.cell.has_cell_state();
        let top = ((nl - 1) * (nt + 1) + 1) * bh;
        Ok(StepOutput {
            loss: gpu.read_f32_async(&b.stats, 0, 1).await?[0],
            output: gpu.read_f32_async(&b.hs, top, nt * bh).await?,
            h_n: last(&b.hs).await?,
            c_n: if lstm { last(&b.cs).await? } else { vec![] },
            logits: gpu.read_f32_async(&b.logits, 0, nt * nb * c.output).await?,
            grads: gpu.read_f32_async(&b.grads, 0, c.table().len).await?,
            dh0: gpu.read_f32_async(&b.dh0, 0, nl * bh).await?,
            dc0: if lstm {
                gpu.read_f32_async(&b.dc0, 0, nl * bh).await?
            } else {
                vec![]
            },
        })
    }
}
