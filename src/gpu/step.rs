//! One training step of the Elman RNN on the GPU: forward, loss, backward, recorded into one
//! compute pass with every intermediate resident on the GPU.
//!
//! Dimensions: B batch, T timesteps, I input size, H hidden size, O output size.
//!
//! The stages, in order (the same as [`crate::cpu`], batched the way cuDNN batches them):
//!
//! | phase                | dispatches     | computes                                              |
//! |----------------------|---------------:|-------------------------------------------------------|
//! | weight layouts       | 2, or 3        | `W^T`, `V^T` (and W) with rows padded for vec4 loads   |
//! | input projection     | 1              | `pre = x U^T + b` for all T·B rows (gather for tokens) |
//! | forward recurrence   | T, or 1        | `h_t = tanh(pre_t + h_{t-1} W^T)`                      |
//! | output and loss      | 3              | `y = hs V^T + c`, per-row loss and `dy`, the mean loss |
//! | output gradients     | 3 (+1)         | `dh = dy V`, `dV = dy^T hs`, `dc = Σ dy`              |
//! | backward recurrence  | T, or 1        | `dA_t = (dh_t + dA_{t+1} W) ⊙ (1 − h_t²)`             |
//! | weight gradients     | 4 (+2)         | `dW = dA^T hs[..T]`, `db = Σ dA`, `dU = dA^T x`, `dh0 = dA_1 W` |
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
use crate::gpu::context::Gpu;
use crate::gpu::kernels::{
    EmbeddingParams, Kernels, MatmulParams, SequenceParams, TransposeParams,
};
pub(crate) use crate::gpu::plan::{
    A, B, Dispatch, Epilogue, Loss, Matmul, Plan, Product, cols, grid_1d, grid_rows, rows, storage,
    uniform, weight_gradient_splits,
};
pub use crate::gpu::plan::{K_CHUNK, LOOP_BUDGET, MAX_GROUPS, ROW_CHUNK, WIDE_LOSS_CLASSES};
use crate::model::{Batch, InputKind, Inputs, ModelConfig, Params, StepOutput, Targets};
use wgpu::util::DeviceExt;

/// The phases of a step, in the order they run (for profiles and counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `W^T` and `V^T`.
    Transposes,
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
    /// Whether the phase belongs to the forward pass and the loss (what evaluation runs).
    pub fn is_forward(&self) -> bool {
        matches!(
            self,
            Phase::Transposes
                | Phase::InputProjection
                | Phase::ForwardRecurrence
                | Phase::OutputAndLoss
        )
    }

    /// A short human name.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Transposes => "weight layouts",
            Phase::InputProjection => "input projection",
            Phase::ForwardRecurrence => "forward recurrence",
            Phase::OutputAndLoss => "output and loss",
            Phase::OutputGradients => "output gradients",
            Phase::BackwardRecurrence => "backward recurrence",
            Phase::WeightGradients => "weight gradients",
        }
    }
}

/// How the two recurrences are dispatched.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Recurrence {
    /// One fused matmul dispatch per timestep (matmul.wgsl), all in one compute pass.
    PerStep,
    /// One dispatch for all timesteps (rnn_sequence.wgsl): each workgroup owns a block of batch
    /// rows and loops over t with workgroup barriers.
    Persistent,
}

/// The most batch-row elements (rows per workgroup · H) the persistent kernel keeps in
/// workgroup memory (`HALF` in rnn_sequence.wgsl).
pub const PERSISTENT_MAX_ELEMENTS: usize = 2048;

impl Recurrence {
    /// The strategy for a shape on an adapter, by rules measured (README, Performance):
    /// - on a hardware GPU (an NVIDIA H200 through Vulkan) the persistent kernel was 3 to 5 times
    ///   faster at every configuration benchmarked, H from 100 to 1024 and B from 1 to 64: a
    ///   dispatch and the barrier after it cost more than a timestep's work;
    /// - on a software adapter (llvmpipe) a workgroup runs on one CPU thread, so the persistent
    ///   kernel wins only while the work is small: up to B·H = 512 it did (H=100 B=1, H=128 B=4,
    ///   H=64 B=8), from B·H = 2048 on the per-step products, spread over every core, did.
    ///
    /// The persistent kernel needs H ≤ 2048 (its workgroup memory).
    pub fn auto(device_type: wgpu::DeviceType, batch: usize, hidden: usize) -> Self {
        let h4 = hidden.next_multiple_of(4);
        let persistent = match device_type {
            wgpu::DeviceType::Cpu => batch * h4 <= 1024,
            _ => h4 <= PERSISTENT_MAX_ELEMENTS,
        };
        if persistent {
            Recurrence::Persistent
        } else {
            Recurrence::PerStep
        }
    }

    /// The persistent kernel's dispatches: [t_begin, t_end) ranges that cover 0..T, each short
    /// enough that one invocation's loops stay under [`LOOP_BUDGET`]. Per timestep an invocation
    /// loops over its quads (four columns of a row), and for each over H4/4 vec4s and four columns.
    fn time_chunks(rows_per_group: usize, h4: usize, steps: usize) -> Vec<(usize, usize)> {
        let q4 = h4 / 4;
        let quads_per_invocation = (rows_per_group * q4).div_ceil(256);
        let per_step = 2 + quads_per_invocation * (q4 + 6);
        // Clearing and loading the state: at most 2048/256 + 1024/256 + 2 iterations.
        let per_chunk = ((LOOP_BUDGET - 64) / per_step).max(1);
        (0..steps)
            .step_by(per_chunk)
            .map(|t| (t, (t + per_chunk).min(steps)))
            .collect()
    }

    /// Batch rows per workgroup of the persistent kernel: enough to give its 256 invocations work,
    /// few enough to fit the workgroup memory and to leave several workgroups.
    fn rows_per_group(batch: usize, hidden: usize) -> usize {
        let fit = (PERSISTENT_MAX_ELEMENTS / hidden).max(1);
        256usize.div_ceil(hidden).clamp(1, fit).min(batch)
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
    /// How the recurrences are dispatched.
    pub recurrence: Recurrence,
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
    phases: Vec<(Phase, Vec<Dispatch>)>,
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
        // The largest value in [0, hi] for which `ok` holds (ok is monotone: true, then false).
        let largest = |hi: usize, ok: &dyn Fn(usize) -> bool| {
            let (mut lo, mut hi) = (0usize, hi);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if ok(mid) { lo = mid } else { hi = mid - 1 }
            }
            lo
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
                let mut hint = String::from("the largest settings that fit: ");
                if h > 0 {
                    hint += &format!("--hidden {h} at batch {batch}");
                }
                if b > 0 {
                    hint += &format!(
                        "{}--batch {b} at hidden {}",
                        if h > 0 { ", or " } else { "" },
                        config.hidden
                    );
                }
                if h == 0 && b == 0 {
                    hint += &format!("none at sequence length {steps}; shorten --seq-len");
                }
                hint += "; or train with --device cpu";
                return Err(Error::Limit {
                    what: what.into(),
                    limit,
                    needed,
                    allowed,
                    hint,
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
        config.validate()?;
        if batch == 0 || steps == 0 {
            return Err(Error::config(
                format!("batch size B={batch} and timesteps T={steps}: both must be at least 1"),
                "pass --batch and --steps of 1 or more",
            ));
        }
        let (ni, nh, no) = (config.input, config.hidden, config.output);
        let (nb, nt) = (batch, steps);
        let n_rows = nt * nb;
        if recurrence == Recurrence::Persistent && nh.next_multiple_of(4) > PERSISTENT_MAX_ELEMENTS
        {
            return Err(Error::config(
                format!(
                    "the persistent recurrence holds at most H={PERSISTENT_MAX_ELEMENTS} in workgroup memory, H is {nh}"
                ),
                "use --recurrence per-step",
            ));
        }
        Self::check_fits(gpu, &config, nb, nt)?;
        let x_len = match config.kind {
            InputKind::Tokens => n_rows,
            InputKind::Dense => n_rows * ni,
        };
        let target_len = match config.kind {
            InputKind::Tokens => n_rows,
            InputKind::Dense => n_rows * no,
        };
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
        let table = config.table();
        let mut bytes = 0u64;
        let mut buf = |label: &str, n: usize| {
            bytes += (n.max(4) * 4) as u64;
            storage(gpu, label, n)
        };
        let params = match params {
            Some(shared) => shared,
            None => buf("params", table.len),
        };
        let grads = buf("grads", table.len);
        let bias = buf("bias", nh);
        let x = buf("x", x_len);
        let targets = buf("targets", target_len);
        let (h4, o4) = (nh.next_multiple_of(4), no.next_multiple_of(4));
        let wt = buf("wt", h4 * h4);
        let vt = buf("vt", nh * o4);
        let w_padded = buf("w_padded", h4 * h4);
        let pre = buf("pre", n_rows * nh);
        let hs = buf("hs", (nt + 1) * nb * nh);
        let logits = buf("logits", n_rows * no);
        let dy = buf("dy", n_rows * no);
        let row_loss = buf("row_loss", n_rows);
        let stats = buf("stats", 2);
        let dh = buf("dh", n_rows * nh);
        let da = buf("da", n_rows * nh);
        let dh0 = buf("dh0", nb * nh);
        // Partial sums of the split weight-gradient products: (splits, M·N) of the largest.
        let splits = weight_gradient_splits(n_rows, nh * nh.max(ni).max(no), gpu.storage_limit().1);
        let partials = buf(
            "partials",
            if splits > 1 {
                splits * nh * nh.max(ni).max(no)
            } else {
                0
            },
        );

        let off = |name: &str| table.get(name).expect("a parameter of the table").offset;
        let (o_u, o_w) = (off("rnn.weight_ih_l0"), off("rnn.weight_hh_l0"));
        let (o_bih, o_bhh) = (off("rnn.bias_ih_l0"), off("rnn.bias_hh_l0"));
        let (o_v, o_c) = (off("decoder.weight"), off("decoder.bias"));
        let align = gpu.limits().min_uniform_buffer_offset_alignment as usize;
        let mut plan = Plan {
            uniforms: Vec::new(),
            stride: std::mem::size_of::<MatmulParams>().next_multiple_of(align),
            specs: Vec::new(),
        };
        let k = kernels;
        let h1 = nb * nh; // offset of h_1 in hs, and the size of one timestep's slice
        // matmul.wgsl's bindings: a, b, tokens, bias, addend, aux, c. Unused ones get `params`
        // (read-only), except where params is C.
        let p_ = &params;

        // Weight layouts: W^T (H, H4) and V^T (H, O4), rows padded to multiples of 4; and, for the
        // persistent recurrence, W (H, H4).
        let mut layouts = vec![(nh, nh, o_w, &wt, h4, true), (no, nh, o_v, &vt, o4, true)];
        if recurrence == Recurrence::Persistent {
            layouts.push((nh, nh, o_w, &w_padded, h4, false));
        }
        // b = b_ih + b_hh: rows (I+H) and (I+H+1) of the parameters seen as rows of H (b_hh
        // follows b_ih), summed in order.
        debug_assert!(o_bih.is_multiple_of(nh) && o_bhh == o_bih + nh);
        let (b_row, sum) = (o_bih / nh, &k.column_sum);
        plan.column_sum_rows(sum, Phase::Transposes, p_, b_row..b_row + 2, nh, &bias, 0);
        for (rows_, cols_, in_offset, out, out_stride, transpose) in layouts {
            let copy = TransposeParams {
                rows: rows_ as u32,
                cols: cols_ as u32,
                in_offset: in_offset as u32,
                out_offset: 0,
                out_stride: out_stride as u32,
                transpose: transpose as u32,
                _pad: [0; 2],
            };
            plan.layout(k, copy, p_, out);
        }

        // Input projection.
        match config.kind {
            InputKind::Tokens => {
                let ep = EmbeddingParams {
                    rows: n_rows as u32,
                    hidden: nh as u32,
                    input: ni as u32,
                    u_offset: o_u as u32,
                    b_offset: 0,
                    out_offset: 0,
                    _pad: [0; 2],
                };
                plan.push(
                    Phase::InputProjection,
                    &k.gather,
                    &ep,
                    vec![&x, p_, &bias, &pre],
                    grid_1d(n_rows * nh),
                );
            }
            InputKind::Dense => {
                // pre (T·B, H) = x (T·B, I) · U^T (I, H) + b
                let product = Product::new(n_rows, nh, ni, rows(0, ni), cols(o_u, ni), (0, nh));
                let matmul = Matmul {
                    product,
                    a: A::Buffer(&x),
                    b: B::Buffer(p_),
                    c: &pre,
                    epilogue: Epilogue::Bias(&bias, 0),
                };
                plan.matmul(k, Phase::InputProjection, matmul);
            }
        }

        // Forward recurrence.
        let rows_per_group = Recurrence::rows_per_group(nb, h4);
        let sequence_groups = grid_rows(nb.div_ceil(rows_per_group));
        let sequence = |(t_begin, t_end): (usize, usize)| SequenceParams {
            batch: nb as u32,
            hidden: nh as u32,
            hidden4: h4 as u32,
            steps: nt as u32,
            rows_per_group: rows_per_group as u32,
            t_begin: t_begin as u32,
            t_end: t_end as u32,
            _pad: 0,
        };
        let time_chunks = Recurrence::time_chunks(rows_per_group, h4, nt);
        match recurrence {
            Recurrence::PerStep => {
                for t in 0..nt {
                    // h_{t+1} (B, H) = tanh(pre_t + h_t (B, H) · W^T (H, H))
                    let product = Product::new(
                        nb,
                        nh,
                        nh,
                        rows(t * h1, nh),
                        rows(0, h4),
                        ((t + 1) * h1, nh),
                    );
                    let matmul = Matmul {
                        product,
                        a: A::InC,
                        b: B::Buffer(&wt),
                        c: &hs,
                        epilogue: Epilogue::AddTanh(&pre, t * h1),
                    };
                    plan.matmul(k, Phase::ForwardRecurrence, matmul);
                }
            }
            Recurrence::Persistent => {
                for &chunk in &time_chunks {
                    plan.push(
                        Phase::ForwardRecurrence,
                        &k.forward_sequence,
                        &sequence(chunk),
                        vec![&pre, &wt, p_, &hs],
                        sequence_groups,
                    );
                }
            }
        }

        // Output and loss.
        // y (T·B, O) = hs[1..] (T·B, H) · V^T (H, O) + c
        let product = Product::new(n_rows, no, nh, rows(h1, nh), rows(0, o4), (0, no));
        let matmul = Matmul {
            product,
            a: A::Buffer(&hs),
            b: B::Buffer(&vt),
            c: &logits,
            epilogue: Epilogue::Bias(p_, o_c),
        };
        plan.matmul(k, Phase::OutputAndLoss, matmul);
        let loss = Loss {
            kind: config.kind,
            rows: n_rows,
            classes: no,
            logits: &logits,
            targets: &targets,
            dy: &dy,
            row_loss: &row_loss,
            stats: &stats,
        };
        plan.loss(k, loss);

        // Output gradients.
        // dh (T·B, H) = dy (T·B, O) · V (O, H)
        let pr = Product::new(n_rows, nh, no, rows(0, no), rows(o_v, nh), (0, nh));
        let matmul = Matmul {
            product: pr,
            a: A::Buffer(&dy),
            b: B::Buffer(p_),
            c: &dh,
            epilogue: Epilogue::None,
        };
        plan.matmul(k, Phase::OutputGradients, matmul);
        // dV (O, H) = dy^T (O, T·B) · hs[1..] (T·B, H)
        let pr = Product::new(no, nh, n_rows, cols(0, no), rows(h1, nh), (o_v, nh));
        plan.weight_gradient(
            k,
            Phase::OutputGradients,
            pr,
            &dy,
            B::Buffer(&hs),
            &grads,
            &partials,
        );
        plan.column_sum(
            &k.column_sum,
            Phase::OutputGradients,
            &dy,
            n_rows,
            no,
            &grads,
            o_c,
            1.0,
        );

        // Backward recurrence.
        match recurrence {
            Recurrence::PerStep => {
                for t in (0..nt).rev() {
                    // dA_t (B, H) = (dh_t + dA_{t+1} (B, H) · W (H, H)) ⊙ (1 − h_t²); no product at t = T
                    let depth = if t + 1 < nt { nh } else { 0 };
                    let a_offset = if t + 1 < nt { (t + 1) * h1 } else { 0 };
                    let product = Product::new(
                        nb,
                        nh,
                        depth,
                        rows(a_offset, nh),
                        rows(o_w, nh),
                        (t * h1, nh),
                    );
                    let matmul = Matmul {
                        product,
                        a: A::InC,
                        b: B::Buffer(p_),
                        c: &da,
                        epilogue: Epilogue::AddTanhGrad {
                            addend: (&dh, t * h1),
                            aux: (&hs, (t + 1) * h1),
                        },
                    };
                    plan.matmul(k, Phase::BackwardRecurrence, matmul);
                }
            }
            Recurrence::Persistent => {
                for &chunk in time_chunks.iter().rev() {
                    plan.push(
                        Phase::BackwardRecurrence,
                        &k.backward_sequence,
                        &sequence(chunk),
                        vec![&dh, &w_padded, &hs, &da],
                        sequence_groups,
                    );
                }
            }
        }

        // Weight gradients.
        // dW (H, H) = dA^T (H, T·B) · hs[..T] (T·B, H)
        let pr = Product::new(nh, nh, n_rows, cols(0, nh), rows(0, nh), (o_w, nh));
        plan.weight_gradient(
            k,
            Phase::WeightGradients,
            pr,
            &da,
            B::Buffer(&hs),
            &grads,
            &partials,
        );
        // db_ih = db_hh = Σ dA: the step adds b = b_ih + b_hh.
        for o_b in [o_bih, o_bhh] {
            let sum = &k.column_sum;
            plan.column_sum(
                sum,
                Phase::WeightGradients,
                &da,
                n_rows,
                nh,
                &grads,
                o_b,
                1.0,
            );
        }
        // dU (H, I) = dA^T (H, T·B) · x (T·B, I), x one-hot for tokens
        let pr = Product::new(nh, ni, n_rows, cols(0, nh), rows(0, ni), (o_u, ni));
        let x_as_b = match config.kind {
            InputKind::Tokens => B::OneHot(&x),
            InputKind::Dense => B::Buffer(&x),
        };
        plan.weight_gradient(
            k,
            Phase::WeightGradients,
            pr,
            &da,
            x_as_b,
            &grads,
            &partials,
        );
        // dh0 (B, H) = dA_1 (B, H) · W (H, H)
        let pr = Product::new(nb, nh, nh, rows(0, nh), rows(o_w, nh), (0, nh));
        let matmul = Matmul {
            product: pr,
            a: A::Buffer(&da),
            b: B::Buffer(p_),
            c: &dh0,
            epilogue: Epilogue::None,
        };
        plan.matmul(k, Phase::WeightGradients, matmul);

        bytes += plan.uniforms.len() as u64;
        let phases = plan.finish(gpu);
        Ok(Self {
            config,
            batch,
            steps,
            recurrence,
            params,
            grads,
            x,
            targets,
            wt,
            vt,
            w_padded,
            pre,
            hs,
            logits,
            dy,
            row_loss,
            stats,
            dh,
            da,
            dh0,
            partials,
            bias,
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

    /// The recorded phases, for per-phase profiling.
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
        gpu.write(&self.params, 0, bytemuck::cast_slice(&params.data));
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
        let h0 = gpu.write(&self.hs, 0, bytemuck::cast_slice(&batch.h0));
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
        gpu.write(&self.x, 0, x) + gpu.write(&self.targets, 0, y)
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
            gpu.submit(encoder);
            Ok(())
        })??;
        let (nb, nt, nh) = (self.batch, self.steps, self.config.hidden);
        let read = |b: &wgpu::Buffer, at: usize, len: usize| gpu.read_f32(b, at, len);
        Ok(StepOutput {
            loss: read(&self.stats, 0, 1)?[0],
            output: read(&self.hs, nb * nh, nt * nb * nh)?,
            h_n: read(&self.hs, nt * nb * nh, nb * nh)?,
            c_n: vec![],
            logits: read(&self.logits, 0, nt * nb * self.config.output)?,
            grads: read(&self.grads, 0, self.config.num_params())?,
            dh0: read(&self.dh0, 0, nb * nh)?,
            dc0: vec![],
        })
    }
}

/// One matmul.wgsl product on its own buffers, for benchmarks: C (M, N) = A (M, K) · B (K, N)
/// with A and B row-major, B's rows `b_row_stride` ≥ N apart (the step pads V^T's rows to O4).
pub struct MatmulProbe {
    dispatch: Dispatch,
    /// Whether the product runs on `matmul4` (vec4 loads).
    pub vec4: bool,
    _buffers: [wgpu::Buffer; 3],
}

impl MatmulProbe {
    /// Allocates A, B and C (filled with ones) and records the dispatch.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        m: usize,
        n: usize,
        k: usize,
        b_row_stride: usize,
    ) -> Self {
        let filled = |label: &str, len: usize| {
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(&vec![1.0f32; len.max(4)]),
                    usage: wgpu::BufferUsages::STORAGE,
                })
        };
        let b_row_stride = b_row_stride.max(n);
        let (a, b, c) = (
            filled("A", m * k),
            filled("B", k * b_row_stride),
            filled("C", m * n),
        );
        let product = Product::new(m, n, k, rows(0, k), rows(0, b_row_stride), (0, n));
        let vec4 = product.variant(false, false).vec4;
        let mut plan = Plan {
            uniforms: Vec::new(),
            stride: 256usize.max(gpu.limits().min_uniform_buffer_offset_alignment as usize),
            specs: Vec::new(),
        };
        let matmul = Matmul {
            product,
            a: A::Buffer(&a),
            b: B::Buffer(&b),
            c: &c,
            epilogue: Epilogue::None,
        };
        plan.matmul(kernels, Phase::WeightGradients, matmul);
        let dispatch = plan.finish(gpu).remove(0).1.remove(0);
        Self {
            dispatch,
            vec4,
            _buffers: [a, b, c],
        }
    }

    /// Records the product `repeats` times in one compute pass, submits, and waits.
    pub fn run(&self, gpu: &Gpu, repeats: usize) -> Result<()> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..repeats {
                self.dispatch.record(&mut pass);
            }
        }
        gpu.submit(encoder);
        gpu.wait("a matmul benchmark")
    }
}
