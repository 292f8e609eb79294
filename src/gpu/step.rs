//! One training step of the Elman RNN on the GPU: forward, loss, backward, recorded into one
//! compute pass with every intermediate resident on the GPU.
//!
//! Dimensions: B batch, T timesteps, I input size, H hidden size, O output size.
//!
//! The stages, in order (the same as [`crate::cpu`], batched the way cuDNN batches them):
//!
//! | phase                | dispatches | computes                                              |
//! |----------------------|-----------:|-------------------------------------------------------|
//! | input projection     | 1          | `pre = x U^T + b` for all T·B rows (gather for tokens) |
//! | forward recurrence   | T          | `h_t = tanh(pre_t + h_{t-1} W^T)`                      |
//! | output and loss      | 3          | `y = hs V^T + c`, per-row loss and `dy`, the mean loss |
//! | output gradients     | 3          | `dh = dy V`, `dV = dy^T hs`, `dc = Σ dy`              |
//! | backward recurrence  | T          | `dA_t = (dh_t + dA_{t+1} W) ⊙ (1 − h_t²)`             |
//! | weight gradients     | 4          | `dW = dA^T hs[..T]`, `db = Σ dA`, `dU = dA^T x`, `dh0 = dA_1 W` |
//!
//! Only the two recurrences run timestep by timestep; every other stage is one dispatch over all
//! T·B rows. Buffers, bind groups and pipelines are created once in [`GpuStep::new`].

use crate::error::{Error, Result};
use crate::gpu::context::Gpu;
use crate::gpu::kernels::{
    ADD_BIAS, EmbeddingParams, Kernel, Kernels, LossParams, MatmulParams, ReduceParams, StepParams,
};
use crate::model::{Batch, InputKind, Inputs, ModelConfig, Params, StepOutput, Targets};
use wgpu::util::DeviceExt;

/// The phases of a step, in the order they run (for profiles and counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `pre = x U^T + b`.
    InputProjection,
    /// `h_t = tanh(pre_t + h_{t-1} W^T)`, t = 1..T.
    ForwardRecurrence,
    /// `y = h V^T + c`, the loss and `dy`.
    OutputAndLoss,
    /// `dh = dy V`, `dV`, `dc`.
    OutputGradients,
    /// `dA_t`, t = T..1.
    BackwardRecurrence,
    /// `dW`, `db`, `dU`, `dh0`.
    WeightGradients,
}

impl Phase {
    /// A short human name.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::InputProjection => "input projection",
            Phase::ForwardRecurrence => "forward recurrence",
            Phase::OutputAndLoss => "output and loss",
            Phase::OutputGradients => "output gradients",
            Phase::BackwardRecurrence => "backward recurrence",
            Phase::WeightGradients => "weight gradients",
        }
    }
}

/// One recorded dispatch: a pipeline, its bind group and its grid.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub offsets: Vec<u32>,
    pub groups: (u32, u32, u32),
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &self.offsets);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
    }
}

/// A 2-D grid of 64-wide workgroups covering `n` invocations (see `linear_index` in the shaders).
pub(crate) fn grid_1d(n: usize) -> (u32, u32, u32) {
    let groups = n.div_ceil(64).max(1);
    let x = groups.min(65_535);
    (x as u32, groups.div_ceil(x) as u32, 1)
}

/// A storage buffer usable by every kernel, for copies and for reading back.
pub(crate) fn storage(gpu: &Gpu, label: &str, elements: usize) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (elements.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

pub(crate) fn uniform<T: bytemuck::Pod>(gpu: &Gpu, label: &str, value: &T) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// A matrix operand of matmul.wgsl: element (i, p) at `offset + i * row_stride + p * col_stride`.
struct Operand<'a> {
    buffer: &'a wgpu::Buffer,
    offset: usize,
    row_stride: usize,
    col_stride: usize,
}

fn op(buffer: &wgpu::Buffer, offset: usize, row_stride: usize, col_stride: usize) -> Operand<'_> {
    Operand {
        buffer,
        offset,
        row_stride,
        col_stride,
    }
}

/// The GPU buffers and the recorded dispatches of one training step for a fixed (B, T) and model.
pub struct GpuStep {
    /// The model's sizes.
    pub config: ModelConfig,
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// U, W, b, V, c in the flat layout.          (P)
    pub params: wgpu::Buffer,
    /// dU, dW, db, dV, dc in the flat layout.     (P)
    pub grads: wgpu::Buffer,
    /// x_1 … x_T: token ids (T, B) u32, or (T, B, I) f32.
    pub x: wgpu::Buffer,
    /// targets: token ids (T, B) u32, or (T, B, O) f32.
    pub targets: wgpu::Buffer,
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
    phases: Vec<(Phase, Vec<Dispatch>)>,
    bytes: u64,
}

impl GpuStep {
    /// Allocates every buffer and records every dispatch for this model and (B, T).
    /// Fails with [`Error::Limit`] before any allocation if a buffer does not fit the adapter.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        batch: usize,
        steps: usize,
    ) -> Result<Self> {
        Self::with_params(gpu, kernels, config, batch, steps, None)
    }

    /// As [`Self::new`], reading the parameters from `params` when given (shared with another step,
    /// e.g. the training step's, so that evaluation needs no copy).
    pub fn with_params(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        batch: usize,
        steps: usize,
        params: Option<wgpu::Buffer>,
    ) -> Result<Self> {
        config.validate()?;
        if batch == 0 || steps == 0 {
            return Err(Error::config(
                format!("batch size B={batch} and timesteps T={steps}: both must be at least 1"),
                "pass --batch and --steps of 1 or more",
            ));
        }
        let (ni, nh, no) = (config.input, config.hidden, config.output);
        let (nb, nt) = (batch, steps);
        let rows = nt * nb;
        let x_len = match config.kind {
            InputKind::Tokens => rows,
            InputKind::Dense => rows * ni,
        };
        let target_len = match config.kind {
            InputKind::Tokens => rows,
            InputKind::Dense => rows * no,
        };
        let layout = config.layout();
        let sizes = [
            ("the parameters (U, W, b, V, c)", layout.len),
            ("the inputs x (T, B, I)", x_len),
            ("the targets (T, B, O)", target_len),
            ("the hidden states hs (T+1, B, H)", (nt + 1) * nb * nh),
            ("the outputs y (T, B, O)", rows * no),
        ];
        for (what, elements) in sizes {
            gpu.check_storage_size(what, (elements * 4) as u64, || {
                format!(
                    "reduce the hidden size (H={nh}), the batch (B={nb}) or the timesteps (T={nt}); \
                     B·T·max(H, O)·4 bytes must stay below the limit, or use --device cpu"
                )
            })?;
        }
        let mut bytes = 0u64;
        let mut buf = |label: &str, n: usize| {
            bytes += (n.max(1) * 4) as u64;
            storage(gpu, label, n)
        };
        let params = match params {
            Some(shared) => shared,
            None => buf("params", layout.len),
        };
        let grads = buf("grads", layout.len);
        let x = buf("x", x_len);
        let targets = buf("targets", target_len);
        let pre = buf("pre", rows * nh);
        let hs = buf("hs", (nt + 1) * nb * nh);
        let logits = buf("logits", rows * no);
        let dy = buf("dy", rows * no);
        let row_loss = buf("row_loss", rows);
        let stats = buf("stats", 2);
        let dh = buf("dh", rows * nh);
        let da = buf("da", rows * nh);
        let dh0 = buf("dh0", nb * nh);

        let off = |name: &str| layout.slot(name).offset;
        let (o_u, o_w, o_b, o_v, o_c) = (off("U"), off("W"), off("b"), off("V"), off("c"));
        let d = &gpu.device;
        let matmul = |m: usize,
                      n: usize,
                      k: usize,
                      a: Operand,
                      b: Operand,
                      c: (&wgpu::Buffer, usize, usize),
                      bias: Option<(&wgpu::Buffer, usize)>| {
            let p = MatmulParams {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                flags: if bias.is_some() { ADD_BIAS } else { 0 },
                a_offset: a.offset as u32,
                a_row_stride: a.row_stride as u32,
                a_col_stride: a.col_stride as u32,
                b_offset: b.offset as u32,
                b_row_stride: b.row_stride as u32,
                b_col_stride: b.col_stride as u32,
                c_offset: c.1 as u32,
                c_row_stride: c.2 as u32,
                bias_offset: bias.map_or(0, |(_, o)| o as u32),
                _pad: [0; 3],
            };
            let u = uniform(gpu, "matmul params", &p);
            let bias_buffer = bias.map_or(b.buffer, |(buffer, _)| buffer);
            Dispatch {
                pipeline: kernels.matmul.pipeline.clone(),
                bind_group: kernels.matmul.bind(
                    d,
                    &[
                        u.as_entire_binding(),
                        a.buffer.as_entire_binding(),
                        b.buffer.as_entire_binding(),
                        bias_buffer.as_entire_binding(),
                        c.0.as_entire_binding(),
                    ],
                ),
                offsets: vec![],
                groups: (n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1),
            }
        };
        let simple = |kernel: &Kernel, u: wgpu::Buffer, bufs: &[&wgpu::Buffer], n: usize| {
            let mut entries = vec![u.as_entire_binding()];
            entries.extend(bufs.iter().map(|b| b.as_entire_binding()));
            Dispatch {
                pipeline: kernel.pipeline.clone(),
                bind_group: kernel.bind(d, &entries),
                offsets: vec![],
                groups: grid_1d(n),
            }
        };
        let column_sum = |m: &wgpu::Buffer,
                          rows: usize,
                          cols: usize,
                          out: &wgpu::Buffer,
                          out_offset: usize,
                          scale: f32| {
            let p = ReduceParams {
                rows: rows as u32,
                cols: cols as u32,
                out_offset: out_offset as u32,
                scale,
            };
            simple(
                &kernels.column_sum,
                uniform(gpu, "reduce params", &p),
                &[m, out],
                cols,
            )
        };
        let embedding = |kernel: &Kernel,
                         src: &wgpu::Buffer,
                         out: &wgpu::Buffer,
                         out_offset: usize,
                         n: usize| {
            let p = EmbeddingParams {
                rows: rows as u32,
                hidden: nh as u32,
                input: ni as u32,
                u_offset: o_u as u32,
                b_offset: o_b as u32,
                out_offset: out_offset as u32,
                _pad: [0; 2],
            };
            simple(
                kernel,
                uniform(gpu, "embedding params", &p),
                &[&x, src, out],
                n,
            )
        };

        // One StepParams per timestep, each at an offset the device accepts for dynamic uniforms.
        let stride = (std::mem::size_of::<StepParams>() as u32)
            .next_multiple_of(gpu.limits().min_uniform_buffer_offset_alignment)
            as usize;
        let mut step_bytes = vec![0u8; stride * nt];
        for t in 0..nt {
            let p = StepParams {
                batch: nb as u32,
                hidden: nh as u32,
                steps: nt as u32,
                t: t as u32,
                w_offset: o_w as u32,
                _pad: [0; 3],
            };
            step_bytes[t * stride..t * stride + std::mem::size_of::<StepParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        }
        let step_uniform = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("step params (one per timestep)"),
            contents: &step_bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let step_binding = || {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &step_uniform,
                offset: 0,
                size: wgpu::BufferSize::new(std::mem::size_of::<StepParams>() as u64),
            })
        };
        let forward_group = kernels.forward_step.bind(
            d,
            &[
                step_binding(),
                pre.as_entire_binding(),
                params.as_entire_binding(),
                hs.as_entire_binding(),
            ],
        );
        let backward_group = kernels.backward_step.bind(
            d,
            &[
                step_binding(),
                dh.as_entire_binding(),
                params.as_entire_binding(),
                hs.as_entire_binding(),
                da.as_entire_binding(),
            ],
        );
        let recurrence = |kernel: &Kernel, group: &wgpu::BindGroup, order: Vec<usize>| {
            order
                .into_iter()
                .map(|t| Dispatch {
                    pipeline: kernel.pipeline.clone(),
                    bind_group: group.clone(),
                    offsets: vec![(t * stride) as u32],
                    groups: grid_1d(nb * nh),
                })
                .collect::<Vec<_>>()
        };

        let h1 = nb * nh; // offset of h_1 in hs
        let input_projection = match config.kind {
            InputKind::Tokens => embedding(&kernels.gather, &params, &pre, 0, rows * nh),
            // pre (T·B, H) = x (T·B, I) · U^T (I, H) + b
            InputKind::Dense => matmul(
                rows,
                nh,
                ni,
                op(&x, 0, ni, 1),
                op(&params, o_u, 1, ni),
                (&pre, 0, nh),
                Some((&params, o_b)),
            ),
        };
        let loss_params = LossParams {
            rows: rows as u32,
            classes: no as u32,
            scale: 1.0 / rows as f32,
            _pad: 0,
        };
        let loss_kernel = match config.kind {
            InputKind::Tokens => &kernels.softmax_xent,
            InputKind::Dense => &kernels.squared_error,
        };
        let output_and_loss = vec![
            // y (T·B, O) = hs[1..] (T·B, H) · V^T (H, O) + c
            matmul(
                rows,
                no,
                nh,
                op(&hs, h1, nh, 1),
                op(&params, o_v, 1, nh),
                (&logits, 0, no),
                Some((&params, o_c)),
            ),
            simple(
                loss_kernel,
                uniform(gpu, "loss params", &loss_params),
                &[&logits, &targets, &targets, &dy, &row_loss],
                rows,
            ),
            column_sum(&row_loss, rows, 1, &stats, 0, 1.0 / rows as f32),
        ];
        let output_gradients = vec![
            // dh (T·B, H) = dy (T·B, O) · V (O, H)
            matmul(
                rows,
                nh,
                no,
                op(&dy, 0, no, 1),
                op(&params, o_v, nh, 1),
                (&dh, 0, nh),
                None,
            ),
            // dV (O, H) = dy^T (O, T·B) · hs[1..] (T·B, H)
            matmul(
                no,
                nh,
                rows,
                op(&dy, 0, 1, no),
                op(&hs, h1, nh, 1),
                (&grads, o_v, nh),
                None,
            ),
            column_sum(&dy, rows, no, &grads, o_c, 1.0),
        ];
        let d_u = match config.kind {
            InputKind::Tokens => embedding(&kernels.scatter, &da, &grads, o_u, ni * nh),
            // dU (H, I) = dA^T (H, T·B) · x (T·B, I)
            InputKind::Dense => matmul(
                nh,
                ni,
                rows,
                op(&da, 0, 1, nh),
                op(&x, 0, ni, 1),
                (&grads, o_u, ni),
                None,
            ),
        };
        let weight_gradients = vec![
            // dW (H, H) = dA^T (H, T·B) · hs[..T] (T·B, H)
            matmul(
                nh,
                nh,
                rows,
                op(&da, 0, 1, nh),
                op(&hs, 0, nh, 1),
                (&grads, o_w, nh),
                None,
            ),
            column_sum(&da, rows, nh, &grads, o_b, 1.0),
            d_u,
            // dh0 (B, H) = dA_1 (B, H) · W (H, H)
            matmul(
                nb,
                nh,
                nh,
                op(&da, 0, nh, 1),
                op(&params, o_w, nh, 1),
                (&dh0, 0, nh),
                None,
            ),
        ];
        let phases = vec![
            (Phase::InputProjection, vec![input_projection]),
            (
                Phase::ForwardRecurrence,
                recurrence(&kernels.forward_step, &forward_group, (0..nt).collect()),
            ),
            (Phase::OutputAndLoss, output_and_loss),
            (Phase::OutputGradients, output_gradients),
            (
                Phase::BackwardRecurrence,
                recurrence(
                    &kernels.backward_step,
                    &backward_group,
                    (0..nt).rev().collect(),
                ),
            ),
            (Phase::WeightGradients, weight_gradients),
        ];
        Ok(Self {
            config,
            batch,
            steps,
            params,
            grads,
            x,
            targets,
            pre,
            hs,
            logits,
            dy,
            row_loss,
            stats,
            dh,
            da,
            dh0,
            phases,
            bytes,
        })
    }

    /// Bytes of GPU memory the step's buffers hold.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Dispatches per step (forward, loss and backward).
    pub fn dispatches(&self) -> usize {
        self.phases.iter().map(|(_, d)| d.len()).sum()
    }

    /// Records the whole step (forward, loss, backward) into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for (_, dispatches) in &self.phases {
            for d in dispatches {
                d.record(pass);
            }
        }
    }

    /// Records the forward pass and the loss alone (for evaluation).
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>) {
        for (phase, dispatches) in &self.phases {
            if matches!(
                phase,
                Phase::InputProjection | Phase::ForwardRecurrence | Phase::OutputAndLoss
            ) {
                for d in dispatches {
                    d.record(pass);
                }
            }
        }
    }

    /// The recorded phases, for per-phase profiling.
    #[allow(dead_code)] // used by `bench --profile`
    pub(crate) fn phases(&self) -> &[(Phase, Vec<Dispatch>)] {
        &self.phases
    }

    /// Uploads the parameters.
    pub fn write_params(&self, gpu: &Gpu, params: &Params<f32>) -> Result<()> {
        if params.config != self.config {
            return Err(Error::config(
                format!(
                    "parameters of {:?} given to a step built for {:?}",
                    params.config, self.config
                ),
                "build the step for the model's sizes",
            ));
        }
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&params.data));
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
        gpu.queue
            .write_buffer(&self.hs, 0, bytemuck::cast_slice(&batch.h0));
        Ok(self.write_data(gpu, &batch.inputs, &batch.targets) + (batch.h0.len() * 4) as u64)
    }

    /// Uploads inputs and targets alone (the caller has checked them against the model), leaving
    /// h_0 as it is. Returns the bytes uploaded.
    pub fn write_data(&self, gpu: &Gpu, inputs: &Inputs, targets: &Targets) -> u64 {
        let q = &gpu.queue;
        let x: &[u8] = match inputs {
            Inputs::Tokens(x) => bytemuck::cast_slice(x),
            Inputs::Dense(x) => bytemuck::cast_slice(x),
        };
        let y: &[u8] = match targets {
            Targets::Tokens(y) => bytemuck::cast_slice(y),
            Targets::Dense(y) => bytemuck::cast_slice(y),
        };
        q.write_buffer(&self.x, 0, x);
        q.write_buffer(&self.targets, 0, y);
        (x.len() + y.len()) as u64
    }

    /// Runs one step on `params` and `batch` and reads back everything it computed.
    /// For checks and tests: the training loop never reads these back.
    pub fn run_and_read(
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
            gpu.queue.submit([encoder.finish()]);
            Ok(())
        })??;
        let (nb, nh) = (self.batch, self.config.hidden);
        let read = |b: &wgpu::Buffer, len: usize| gpu.read_f32(b, 0, len);
        Ok(StepOutput {
            loss: read(&self.stats, 1)?[0],
            hs: read(&self.hs, (self.steps + 1) * nb * nh)?,
            logits: read(&self.logits, self.steps * nb * self.config.output)?,
            grads: read(&self.grads, self.config.num_params())?,
            dh0: read(&self.dh0, nb * nh)?,
        })
    }
}
