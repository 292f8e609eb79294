//! The dispatches of the fused Elman step ([`super::step`]), planned one phase at a time.
//!
//! Dimensions: B batch, T timesteps, I input size, H hidden size, O output size.

use crate::gpu::context::Gpu;
use crate::gpu::kernels::{
    EmbeddingParams, Kernels, MatmulParams, SequenceParams, TransposeParams,
};
use crate::gpu::phase::Phase;
use crate::gpu::plan::{
    A, B, Epilogue, Loss, Matmul, Plan, Product, cols, grid_1d, grid_rows, rows,
};
use crate::gpu::recurrence::Recurrence;
use crate::gpu::step::ElmanBuffers;
use crate::model::{InputKind, ModelConfig};

/// The sizes the planning reads: I, H, O, B, T, T·B, H and O rounded up to multiples of 4, and
/// B·H (the offset of h_1 in hs, and one timestep's slice).
#[derive(Clone, Copy)]
struct Dims {
    ni: usize,
    nh: usize,
    no: usize,
    nb: usize,
    nt: usize,
    n_rows: usize,
    h4: usize,
    o4: usize,
    h1: usize,
}

/// Where U, W, b_ih, b_hh, V and c sit in the parameters.
#[derive(Clone, Copy)]
struct Offsets {
    u: usize,
    w: usize,
    b_ih: usize,
    b_hh: usize,
    v: usize,
    c: usize,
}

/// Plans the step's dispatches, one function per phase.
pub(crate) struct Planner<'a> {
    pub(crate) plan: Plan<'a>,
    k: &'a Kernels,
    b: &'a ElmanBuffers,
    config: ModelConfig,
    recurrence: Recurrence,
    d: Dims,
    o: Offsets,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(
        gpu: &Gpu,
        k: &'a Kernels,
        b: &'a ElmanBuffers,
        config: ModelConfig,
        (nb, nt): (usize, usize),
        recurrence: Recurrence,
    ) -> Self {
        let (ni, nh, no) = (config.input, config.hidden, config.output);
        let table = config.table();
        let off = |name: &str| table.get(name).expect("a parameter of the table").offset;
        let align = gpu.limits().min_uniform_buffer_offset_alignment as usize;
        Self {
            plan: Plan {
                uniforms: Vec::new(),
                stride: std::mem::size_of::<MatmulParams>().next_multiple_of(align),
                specs: Vec::new(),
            },
            k,
            b,
            config,
            recurrence,
            d: Dims {
                ni,
                nh,
                no,
                nb,
                nt,
                n_rows: nb * nt,
                h4: nh.next_multiple_of(4),
                o4: no.next_multiple_of(4),
                h1: nb * nh,
            },
            o: Offsets {
                u: off("rnn.weight_ih_l0"),
                w: off("rnn.weight_hh_l0"),
                b_ih: off("rnn.bias_ih_l0"),
                b_hh: off("rnn.bias_hh_l0"),
                v: off("decoder.weight"),
                c: off("decoder.bias"),
            },
        }
    }

    /// The persistent kernel's uniforms, one per chunk of timesteps, and its grid.
    fn sequence(&self) -> (Vec<SequenceParams>, (u32, u32, u32)) {
        let d = self.d;
        let rows_per_group = Recurrence::rows_per_group(d.nb, d.h4);
        let chunks = Recurrence::time_chunks(rows_per_group, d.h4, d.nt)
            .into_iter()
            .map(|(t_begin, t_end)| SequenceParams {
                batch: d.nb as u32,
                hidden: d.nh as u32,
                hidden4: d.h4 as u32,
                steps: d.nt as u32,
                rows_per_group: rows_per_group as u32,
                t_begin: t_begin as u32,
                t_end: t_end as u32,
                _pad: 0,
            })
            .collect();
        (chunks, grid_rows(d.nb.div_ceil(rows_per_group)))
    }

    /// W^T (H, H4) and V^T (H, O4), rows padded to multiples of 4 (and W (H, H4) for the
    /// persistent recurrence); b = b_ih + b_hh.
    pub(crate) fn layouts(&mut self) {
        let (b, d) = (self.b, self.d);
        // Weight layouts: W^T (H, H4) and V^T (H, O4), rows padded to multiples of 4; and, for the
        // persistent self.recurrence, W (H, H4).
        let mut layouts = vec![
            (d.nh, d.nh, self.o.w, &b.wt, d.h4, true),
            (d.no, d.nh, self.o.v, &b.vt, d.o4, true),
        ];
        if self.recurrence == Recurrence::Persistent {
            layouts.push((d.nh, d.nh, self.o.w, &b.w_padded, d.h4, false));
        }
        // b = b_ih + b_hh: rows (I+H) and (I+H+1) of the parameters seen as rows of H (b_hh
        // follows b_ih), summed in order.
        debug_assert!(self.o.b_ih.is_multiple_of(d.nh) && self.o.b_hh == self.o.b_ih + d.nh);
        let (b_row, sum) = (self.o.b_ih / d.nh, &self.k.column_sum);
        self.plan.column_sum_rows(
            sum,
            Phase::Transposes,
            &b.params,
            b_row..b_row + 2,
            d.nh,
            &b.bias,
            0,
        );
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
            self.plan.layout(self.k, copy, &b.params, out);
        }
    }

    /// pre = x U^T + b over all T·B rows: a gather of U's columns for tokens, a product for dense.
    pub(crate) fn input_projection(&mut self) {
        let (b, d) = (self.b, self.d);
        // Input projection.
        match self.config.kind {
            InputKind::Tokens => {
                let ep = EmbeddingParams {
                    rows: d.n_rows as u32,
                    hidden: d.nh as u32,
                    input: d.ni as u32,
                    u_offset: self.o.u as u32,
                    b_offset: 0,
                    out_offset: 0,
                    _pad: [0; 2],
                };
                self.plan.push(
                    Phase::InputProjection,
                    &self.k.gather,
                    &ep,
                    vec![&b.x, &b.params, &b.bias, &b.pre],
                    grid_1d(d.n_rows * d.nh),
                );
            }
            InputKind::Dense => {
                // pre (T·B, H) = x (T·B, I) · U^T (I, H) + b
                let product = Product::new(
                    d.n_rows,
                    d.nh,
                    d.ni,
                    rows(0, d.ni),
                    cols(self.o.u, d.ni),
                    (0, d.nh),
                );
                let matmul = Matmul {
                    product,
                    a: A::Buffer(&b.x),
                    b: B::Buffer(&b.params),
                    c: &b.pre,
                    epilogue: Epilogue::Bias(&b.bias, 0),
                };
                self.plan.matmul(self.k, Phase::InputProjection, matmul);
            }
        }
    }

    /// h_t = tanh(pre_t + h_{t-1} W^T), t = 1..T: a fused product per timestep, or the persistent
    /// kernel.
    pub(crate) fn forward_recurrence(&mut self) {
        let (b, d) = (self.b, self.d);
        // Forward self.recurrence.
        let (chunks, groups) = self.sequence();
        match self.recurrence {
            Recurrence::PerStep => {
                for t in 0..d.nt {
                    // h_{t+1} (B, H) = tanh(pre_t + h_t (B, H) · W^T (H, H))
                    let product = Product::new(
                        d.nb,
                        d.nh,
                        d.nh,
                        rows(t * d.h1, d.nh),
                        rows(0, d.h4),
                        ((t + 1) * d.h1, d.nh),
                    );
                    let matmul = Matmul {
                        product,
                        a: A::InC,
                        b: B::Buffer(&b.wt),
                        c: &b.hs,
                        epilogue: Epilogue::AddTanh(&b.pre, t * d.h1),
                    };
                    self.plan.matmul(self.k, Phase::ForwardRecurrence, matmul);
                }
            }
            Recurrence::Persistent => {
                for params in &chunks {
                    self.plan.push(
                        Phase::ForwardRecurrence,
                        &self.k.forward_sequence,
                        params,
                        vec![&b.pre, &b.wt, &b.params, &b.hs],
                        groups,
                    );
                }
            }
        }
    }

    /// y = hs V^T + c, the loss and dy, the mean loss.
    pub(crate) fn output_and_loss(&mut self) {
        let (b, d) = (self.b, self.d);
        // Output and loss.
        // y (T·B, O) = hs[1..] (T·B, H) · V^T (H, O) + c
        let product = Product::new(
            d.n_rows,
            d.no,
            d.nh,
            rows(d.h1, d.nh),
            rows(0, d.o4),
            (0, d.no),
        );
        let matmul = Matmul {
            product,
            a: A::Buffer(&b.hs),
            b: B::Buffer(&b.vt),
            c: &b.logits,
            epilogue: Epilogue::Bias(&b.params, self.o.c),
        };
        self.plan.matmul(self.k, Phase::OutputAndLoss, matmul);
        let loss = Loss {
            kind: self.config.kind,
            rows: d.n_rows,
            classes: d.no,
            logits: &b.logits,
            targets: &b.targets,
            dy: &b.dy,
            row_loss: &b.row_loss,
            stats: &b.stats,
        };
        self.plan.loss(self.k, loss);
    }

    /// dh = dy V, dV = dy^T hs, dc = Σ dy.
    pub(crate) fn output_gradients(&mut self) {
        let (b, d) = (self.b, self.d);
        // Output gradients.
        // dh (T·B, H) = dy (T·B, O) · V (O, H)
        let pr = Product::new(
            d.n_rows,
            d.nh,
            d.no,
            rows(0, d.no),
            rows(self.o.v, d.nh),
            (0, d.nh),
        );
        let matmul = Matmul {
            product: pr,
            a: A::Buffer(&b.dy),
            b: B::Buffer(&b.params),
            c: &b.dh,
            epilogue: Epilogue::None,
        };
        self.plan.matmul(self.k, Phase::OutputGradients, matmul);
        // dV (O, H) = dy^T (O, T·B) · hs[1..] (T·B, H)
        let pr = Product::new(
            d.no,
            d.nh,
            d.n_rows,
            cols(0, d.no),
            rows(d.h1, d.nh),
            (self.o.v, d.nh),
        );
        self.plan.weight_gradient(
            self.k,
            Phase::OutputGradients,
            pr,
            &b.dy,
            B::Buffer(&b.hs),
            &b.grads,
            &b.partials,
        );
        self.plan.column_sum(
            &self.k.column_sum,
            Phase::OutputGradients,
            &b.dy,
            d.n_rows,
            d.no,
            &b.grads,
            self.o.c,
            1.0,
        );
    }

    /// dA_t = (dh_t + dA_{t+1} W) ⊙ (1 − h_t²), t = T..1.
    pub(crate) fn backward_recurrence(&mut self) {
        let (b, d) = (self.b, self.d);
        let (chunks, groups) = self.sequence();
        // Backward self.recurrence.
        match self.recurrence {
            Recurrence::PerStep => {
                for t in (0..d.nt).rev() {
                    // dA_t (B, H) = (dh_t + dA_{t+1} (B, H) · W (H, H)) ⊙ (1 − h_t²); d.no product at t = T
                    let depth = if t + 1 < d.nt { d.nh } else { 0 };
                    let a_offset = if t + 1 < d.nt { (t + 1) * d.h1 } else { 0 };
                    let product = Product::new(
                        d.nb,
                        d.nh,
                        depth,
                        rows(a_offset, d.nh),
                        rows(self.o.w, d.nh),
                        (t * d.h1, d.nh),
                    );
                    let matmul = Matmul {
                        product,
                        a: A::InC,
                        b: B::Buffer(&b.params),
                        c: &b.da,
                        epilogue: Epilogue::AddTanhGrad {
                            addend: (&b.dh, t * d.h1),
                            aux: (&b.hs, (t + 1) * d.h1),
                        },
                    };
                    self.plan.matmul(self.k, Phase::BackwardRecurrence, matmul);
                }
            }
            Recurrence::Persistent => {
                for params in chunks.iter().rev() {
                    self.plan.push(
                        Phase::BackwardRecurrence,
                        &self.k.backward_sequence,
                        params,
                        vec![&b.dh, &b.w_padded, &b.hs, &b.da],
                        groups,
                    );
                }
            }
        }
    }

    /// dW, db_ih = db_hh = Σ dA, dU, dh_0 = dA_1 W.
    pub(crate) fn weight_gradients(&mut self) {
        let (b, d) = (self.b, self.d);
        // Weight gradients.
        // dW (H, H) = dA^T (H, T·B) · hs[..T] (T·B, H)
        let pr = Product::new(
            d.nh,
            d.nh,
            d.n_rows,
            cols(0, d.nh),
            rows(0, d.nh),
            (self.o.w, d.nh),
        );
        self.plan.weight_gradient(
            self.k,
            Phase::WeightGradients,
            pr,
            &b.da,
            B::Buffer(&b.hs),
            &b.grads,
            &b.partials,
        );
        // db_ih = db_hh = Σ dA: the step adds b = b_ih + b_hh.
        for o_b in [self.o.b_ih, self.o.b_hh] {
            let sum = &self.k.column_sum;
            self.plan.column_sum(
                sum,
                Phase::WeightGradients,
                &b.da,
                d.n_rows,
                d.nh,
                &b.grads,
                o_b,
                1.0,
            );
        }
        // dU (H, I) = dA^T (H, T·B) · x (T·B, I), x one-hot for tokens
        let pr = Product::new(
            d.nh,
            d.ni,
            d.n_rows,
            cols(0, d.nh),
            rows(0, d.ni),
            (self.o.u, d.ni),
        );
        let x_as_b = match self.config.kind {
            InputKind::Tokens => B::OneHot(&b.x),
            InputKind::Dense => B::Buffer(&b.x),
        };
        self.plan.weight_gradient(
            self.k,
            Phase::WeightGradients,
            pr,
            &b.da,
            x_as_b,
            &b.grads,
            &b.partials,
        );
        // dh0 (B, H) = dA_1 (B, H) · W (H, H)
        let pr = Product::new(
            d.nb,
            d.nh,
            d.nh,
            rows(0, d.nh),
            rows(self.o.w, d.nh),
            (0, d.nh),
        );
        let matmul = Matmul {
            product: pr,
            a: A::Buffer(&b.da),
            b: B::Buffer(&b.params),
            c: &b.dh0,
            epilogue: Epilogue::None,
        };
        self.plan.matmul(self.k, Phase::WeightGradients, matmul);
    }
}
