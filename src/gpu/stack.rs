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
//! | weight layouts      | G + 1 (+1 for V)     | `W_ih^T`, and `W_hh^T` gate by gate, padded for vec4 loads |
//! | input projection    | 1                    | `a = x U^T + b_ih` over all T·B rows (a gather for tokens) |
//! | forward recurrence  | T, or 1              | `h_t` (and `c_t`) from `a_t` and `h_{t-1} W^T + b_hh`, fused |
//! | output and loss     | 4 (once)             | `y = h V^T + c`, loss and `dy`, their sum, the mean |
//! | output gradients    | 3 (once)             | `dh = dy V`, `dV`, `dc`                           |
//! | backward recurrence | T + 1, or 1          | `dr_t W`, then the cell's backward                |
//! | weight gradients    | 4 (+1 below the top) | `dU = da^T x`, `db_ih`, `dW = dr^T h`, `db_hh`; layer l−1's `dh = da U` |
//!
//! The recurrences run split by units (`shaders/recurrence.wgsl`): one dispatch per timestep
//! ([`Recurrence::Ordered`]) or one per layer and pass with a grid barrier between timesteps
//! ([`Recurrence::Grid`]; on a software adapter one per chunk of timesteps; one more dispatch per
//! step clears the barriers' counters). (Split weight gradients add one in-order sum each, from
//! T·B = 1024 rows on.) Layer l reads
//! layer l−1's h_1 … h_T as its x; the backward pass runs from the top layer down, each layer's
//! `da U` becoming the `dh` of the layer below. Buffers, bind groups and pipelines are created
//! once in [`GpuStack::new`]; a step is one submission.
//!
//! A bidirectional layer runs both directions in the same recurrence dispatches (each its own
//! state block and parameters; the reverse direction's step s reads time n_b − 1 − s), the other
//! phases once per direction (+1 dispatch forward to lay its output out by time, +1 backward to
//! split that output's gradient), and its output by time
//! ([h_fwd; h_rev]) is what the layer above and the decoder read. Each sequence's length n_b
//! bounds its row in the recurrence; the `last` and `mean` heads decode each sequence's features
//! (one dispatch each way more, see [`super::stack_head`]).

use crate::dropout::DropoutSpec;
use crate::error::{Error, Result};
use crate::gpu::context::Gpu;
use crate::gpu::kernels::{Kernels, Products};
use crate::gpu::plan::{LOOP_BUDGET, Recorded};
use crate::gpu::recurrence::{self, Recurrence, Tiles, Tiling};
pub use crate::gpu::stack_buffers::StackBuffers;
use crate::gpu::stack_buffers::{Shape, allocate, check_fits, places};
use crate::gpu::stack_plan::{PlanOptions, plan_step};
use crate::model::{Batch, Head, Inputs, ModelConfig, StepOutput, Targets};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a step is built beyond its model and shape.
#[derive(Clone, Debug, Default)]
pub struct StepOptions {
    /// How the recurrences are ordered (None: chosen per shape and adapter).
    pub recurrence: Option<Recurrence>,
    /// Another step's parameters to share (evaluation reads the training step's).
    pub params: Option<wgpu::Buffer>,
    /// Another step's gradients to share (a trainer's steps for other shapes write the
    /// gradients its optimizer reads).
    pub grads: Option<wgpu::Buffer>,
    /// Dropout between the layers (a training step of two layers or more).
    pub dropout: Option<DropoutSpec>,
    /// The recurrence's tiles (None: chosen per shape and adapter).
    pub tiles: Option<Tiles>,
    /// Whether the recurrence shares states among a subgroup's lanes (None: chosen per adapter;
    /// `Some(true)` is an error on an adapter without subgroup operations).
    pub subgroups: Option<bool>,
    /// The kernel of the products outside the recurrences.
    pub products: Products,
}

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
    /// How the layers' recurrences were planned.
    pub recurrence: Recurrence,
    /// The tiles of every layer's recurrence.
    pub(crate) tiling: Tiling,
    /// The kernel of the products outside the recurrences.
    pub(crate) products: Products,
    phases: Recorded,
    /// The same step with ordered recurrences, where `phases` has grid barriers: what runs once
    /// a barrier has failed on this adapter.
    ordered: Option<Recorded>,
    /// Whether a grid barrier has failed on this step's device (every step there then runs
    /// `ordered`).
    failed: Arc<AtomicBool>,
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
            grads,
            dropout,
            tiles,
            subgroups,
            products,
        } = options;
        let (s, recurrence, tiling) =
            Self::check_fits(gpu, config, (batch, steps), (recurrence, tiles, subgroups))?;
        let table = config.table();
        let (places, vt, wt_len) = places(&config, &table);
        let dropped = dropout.is_some() && config.layers > 1;
        let (buffers, mut bytes) = allocate(gpu, &s, &table, wt_len, (params, grads, dropped));
        write_lengths(gpu, &buffers, &s, None);
        let mut plan = |recurrence| {
            let options = PlanOptions {
                dropout: dropout.filter(|_| config.layers > 1),
                recurrence,
                tiling,
                products,
            };
            let layout = (places.clone(), vt);
            let (phases, uniform_bytes) =
                plan_step(gpu, kernels, (&buffers, s, &table), layout, options);
            bytes += uniform_bytes;
            phases
        };
        let phases = plan(recurrence);
        let ordered = (recurrence == Recurrence::Grid).then(|| plan(Recurrence::Ordered));
        Ok(Self {
            config,
            batch,
            steps,
            buffers,
            phases,
            ordered,
            failed: gpu.grid_failed.clone(),
            bytes,
            dropout: dropped,
            recurrence,
            tiling,
            products,
        })
    }

    /// Checks, before anything is allocated, that the model and (B, T) make a step and that
    /// every buffer of it fits the adapter; returns the shape, the recurrence it would run and
    /// its tiles.
    pub(crate) fn check_fits(
        gpu: &Gpu,
        config: ModelConfig,
        (batch, steps): (usize, usize),
        (recurrence, tiles, subgroups): (Option<Recurrence>, Option<Tiles>, Option<bool>),
    ) -> Result<(Shape, Recurrence, Tiling)> {
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
        let limits = gpu.limits();
        let (hidden, gates) = (config.hidden, config.cell.gates());
        if let Some(t) = tiles {
            t.validate()?;
        }
        let mut tiling = Tiling::new(gpu.info.device_type, &limits, batch, (hidden, gates), tiles);
        tiling.subgroups = recurrence::subgroups(gpu, subgroups)?;
        check_fits(gpu, &s)?;
        let software = gpu.info.device_type == wgpu::DeviceType::Cpu;
        if config.head == Head::Mean && software && steps > LOOP_BUDGET {
            return Err(Error::config(
                format!(
                    "the mean head sums up to T = {steps} steps in one loop; a software adapter \
                     runs at most {LOOP_BUDGET}"
                ),
                "use shorter sequences or the last head on this adapter",
            ));
        }
        let device = (gpu.info.device_type, &limits);
        let resident = recurrence::resident_workgroups(gpu);
        // Both directions of a layer run in one dispatch: twice the tiles.
        let resident = resident / config.directions();
        let recurrence =
            recurrence::choose(device, recurrence, &tiling, (hidden, gates), resident)?;
        Ok((s, recurrence, tiling))
    }

    /// Bytes of GPU memory the step's buffers hold.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Dispatches per step (forward, loss and backward).
    pub fn dispatches(&self) -> usize {
        self.phases.dispatches()
    }

    /// The step's shape.
    fn shape(&self) -> Shape {
        Shape {
            config: self.config,
            nb: self.batch,
            nt: self.steps,
        }
    }

    /// Workgroups of one dispatch of a layer's recurrence (its tiles, in each direction).
    pub fn recurrence_workgroups(&self) -> usize {
        self.config.directions() * self.tiling.groups()
    }

    /// Records the whole step into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.phases().record(pass);
    }

    /// The recorded phases: the ordered ones once a grid barrier has failed.
    pub(crate) fn phases(&self) -> &Recorded {
        match &self.ordered {
            Some(ordered) if self.failed.load(Ordering::Relaxed) => ordered,
            _ => &self.phases,
        }
    }

    /// Whether a subgroup's lanes share the states the recurrence loads.
    pub fn subgroups(&self) -> bool {
        self.tiling.subgroups
    }

    /// The kernel of the products outside the recurrences.
    pub fn products(&self) -> Products {
        self.products
    }

    /// The ordering the step runs now.
    pub fn running(&self) -> Recurrence {
        if self.failed.load(Ordering::Relaxed) {
            Recurrence::Ordered
        } else {
            self.recurrence
        }
    }

    /// Whether the step last run needs running again: a grid barrier failed in it (the workgroups
    /// did not all run at once). Reads the failure flag (nothing for ordered steps); when it is
    /// set, clears it and makes every step on this device run ordered from now on.
    pub async fn barrier_failed(&self, gpu: &Gpu) -> Result<bool> {
        if self.running() != Recurrence::Grid {
            return Ok(false);
        }
        let flag = gpu.read_f32_async(&self.buffers.sync, 0, 1).await?[0];
        if flag == 0.0 {
            return Ok(false);
        }
        gpu.write(&self.buffers.sync, 0, bytemuck::cast_slice(&[0u32]));
        self.failed.store(true, Ordering::Relaxed);
        Ok(true)
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
            Targets::Tokens(y) | Targets::Labels(y) => bytemuck::cast_slice(y),
            Targets::Dense(y) => bytemuck::cast_slice(y),
        };
        gpu.write(&b.x, 0, x) + gpu.write(&b.targets, 0, y)
    }

    /// Uploads a batch: inputs, targets, lengths, and every block's h_0 (and c_0).
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
        let (b, s) = (&self.buffers, self.shape());
        let mut sent = self.write_data(gpu, &batch.inputs, &batch.targets);
        sent += write_lengths(gpu, b, &s, batch.lengths.as_deref());
        let bh = s.bh();
        let lstm = self.config.cell.has_cell_state();
        for block in 0..s.blocks() {
            let at = (s.state(block, 0) * 4) as u64;
            let rows = block * bh..(block + 1) * bh;
            sent += gpu.write(&b.hs, at, bytemuck::cast_slice(&batch.h0[rows.clone()]));
            if lstm {
                sent += gpu.write(&b.cs, at, bytemuck::cast_slice(&batch.c0[rows]));
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
        if self.barrier_failed(gpu).await? {
            return Box::pin(self.run_and_read_async(gpu, params, batch)).await;
        }
        self.read_output(gpu, batch.lengths.as_deref()).await
    }

    /// Reads back the results of the step last run over sequences of `lengths`, zero at padding
    /// as the CPU reference gives them.
    async fn read_output(&self, gpu: &Gpu, lengths: Option<&[usize]>) -> Result<StepOutput<f32>> {
        let (c, b, s) = (&self.config, &self.buffers, self.shape());
        let (nb, nt, nd) = (self.batch, self.steps, c.features());
        let bh = s.bh();
        // Every block's state after the last step.
        let last = async |buf: &wgpu::Buffer| -> Result<Vec<f32>> {
            let mut v = Vec::with_capacity(s.blocks() * bh);
            for block in 0..s.blocks() {
                v.extend(gpu.read_f32_async(buf, s.state(block, nt), bh).await?);
            }
            Ok(v)
        };
        let lstm = c.cell.has_cell_state();
        let mut output = if c.bidirectional {
            let at = (c.layers - 1) * s.rows() * nd;
            gpu.read_f32_async(&b.outs, at, s.rows() * nd).await?
        } else {
            let top = s.state(c.layers - 1, 1);
            gpu.read_f32_async(&b.hs, top, s.rows() * nd).await?
        };
        let mut logits = (gpu.read_f32_async(&b.logits, 0, s.head_rows() * c.output)).await?;
        let padded = |p: usize| lengths.is_some_and(|n| p / nb >= n[p % nb]);
        for p in (0..s.rows()).filter(|&p| padded(p)) {
            output[p * nd..(p + 1) * nd].fill(0.0);
            if !c.head.is_sequence() {
                logits[p * c.output..(p + 1) * c.output].fill(0.0);
            }
        }
        let states = s.blocks() * bh;
        let (_, dh0, dc0, _) = s.d0();
        Ok(StepOutput {
            loss: gpu.read_f32_async(&b.stats, 0, 1).await?[0],
            output,
            h_n: last(&b.hs).await?,
            c_n: if lstm { last(&b.cs).await? } else { vec![] },
            logits,
            features: if c.head.is_sequence() {
                gpu.read_f32_async(&b.feats, 0, nb * nd).await?
            } else {
                vec![]
            },
            grads: gpu.read_f32_async(&b.grads, 0, c.table().len).await?,
            dh0: gpu.read_f32_async(&b.d0, dh0, states).await?,
            dc0: if lstm {
                gpu.read_f32_async(&b.d0, dc0, states).await?
            } else {
                vec![]
            },
        })
    }
}

/// Writes each row's length into `sync` (T for every row where `lengths` is None), each decoded
/// row's weight in the mean loss and 1/n after them; returns the bytes written.
fn write_lengths(gpu: &Gpu, b: &StackBuffers, s: &Shape, lengths: Option<&[usize]>) -> u64 {
    let n: Vec<u32> = (0..s.nb)
        .map(|i| lengths.map_or(s.nt, |l| l[i]) as u32)
        .collect();
    // 1/n over the n rows that count (every sequence, or every valid step), then 1/n itself.
    let sequences = s.config.head.is_sequence();
    let counted = if sequences {
        s.nb
    } else {
        n.iter().map(|&v| v as usize).sum()
    };
    let w = 1.0 / counted as f32;
    let counts = |p: usize| sequences || p / s.nb < n[p % s.nb] as usize;
    let weight: Vec<f32> = (0..s.head_rows())
        .map(|p| if counts(p) { w } else { 0.0 })
        .chain([w])
        .collect();
    let at = (s.lengths_at() * 4) as u64;
    gpu.write(&b.sync, at, bytemuck::cast_slice(&n))
        + gpu.write(&b.weight, 0, bytemuck::cast_slice(&weight))
}
