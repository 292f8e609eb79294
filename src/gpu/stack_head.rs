//! The head of a stacked step ([`super::stack_plan`]): the decoder over the top layer's output
//! (per step) or over each sequence's features (`last`, `mean`), the loss and their gradients;
//! and the glue of a bidirectional layer, its two directions as one output by time
//! (`shaders/sequence.wgsl`).
//!
//! ```text
//! per step:  y (T·B, O) = out V^T + c       out: the top layer's h_1 … h_T, or (bidirectional)
//!                                           its output (T, B, D), zero at padding
//! sequence:  feats (B, D) from the top layer's states;  y (B, O) = feats V^T + c
//! loss:      loss.wgsl over the N rows of y, each with its weight (a padded step's is 0)
//! backward:  ∂L/∂out = dy V (then split into the directions' dh), or ∂L/∂feats = dy V
//!            scattered into dh; dV = dy^T out (or feats), dc = Σ dy
//! ```

use crate::gpu::kernels::SequenceParams;
use crate::gpu::phase::Phase;
use crate::gpu::plan::{A, B, Epilogue, Loss, Matmul, Product, cols, grid_1d, rows};
use crate::gpu::stack_plan::Planner;
use crate::model::{Head, InputKind};

impl<'a> Planner<'a> {
    /// The decoder's input: (buffer, offset, rows), rows D wide.
    fn decoded(&self) -> (&'a wgpu::Buffer, usize, usize) {
        let (s, b, c) = (self.s, self.b, self.s.config);
        if c.head.is_sequence() {
            (&b.feats, 0, s.nb)
        } else if c.bidirectional {
            (&b.outs, (c.layers - 1) * s.rows() * c.features(), s.rows())
        } else {
            (&b.hs, s.state(c.layers - 1, 1), s.rows())
        }
    }

    /// sequence.wgsl's uniform over the top layer's (or layer l's) blocks.
    fn sequence_params(&self, src: usize, dst: usize) -> SequenceParams {
        let (s, c) = (self.s, self.s.config);
        SequenceParams {
            batch: s.nb as u32,
            steps: s.nt as u32,
            hidden: c.hidden as u32,
            directions: c.directions() as u32,
            mean: (c.head == Head::Mean) as u32,
            lengths: s.lengths_at() as u32,
            src: src as u32,
            dst: dst as u32,
        }
    }

    /// A bidirectional layer's output by time, both directions side by side, into `outs`.
    pub(super) fn concat(&mut self, l: usize) {
        let (s, b) = (self.s, self.b);
        if !s.config.bidirectional {
            return;
        }
        let n = s.rows() * s.config.features();
        let sp = self.sequence_params(s.state(l * s.config.directions(), 0), l * n);
        let buffers = vec![&b.sync, &b.hs, &b.outs];
        (self.plan).push(
            Phase::ForwardRecurrence,
            &self.k.concat,
            &sp,
            buffers,
            grid_1d(n),
        );
    }

    /// A bidirectional layer's output gradient (`d_out`) as each direction's dh, by step.
    pub(super) fn split(&mut self, phase: Phase) {
        let (s, b) = (self.s, self.b);
        if !s.config.bidirectional {
            return;
        }
        let sp = self.sequence_params(0, s.d0().0);
        let buffers = vec![&b.sync, &b.d_out, &b.d0];
        let n = s.rows() * s.config.features();
        (self.plan).push(phase, &self.k.split, &sp, buffers, grid_1d(n));
    }

    /// y = out V^T + c (or feats V^T + c), the loss, dy and the mean loss.
    pub(super) fn output_and_loss(&mut self) {
        let (c, b, s) = (self.s.config, self.b, self.s);
        let nd = c.features();
        if c.head.is_sequence() {
            let top = s.state((c.layers - 1) * c.directions(), 0);
            let sp = self.sequence_params(top, 0);
            let buffers = vec![&b.sync, &b.hs, &b.feats];
            let k = &self.k.features;
            (self.plan).push(Phase::OutputAndLoss, k, &sp, buffers, grid_1d(s.nb * nd));
        }
        let (input, at, n_rows) = self.decoded();
        let o4 = c.output.next_multiple_of(4);
        let product = Product::new(
            n_rows,
            c.output,
            nd,
            rows(at, nd),
            rows(self.vt, o4),
            (0, c.output),
        );
        let matmul = Matmul {
            product,
            a: A::Buffer(input),
            b: B::Buffer(&b.wt),
            c: &b.logits,
            epilogue: Epilogue::Bias(&b.params, self.c),
        };
        self.plan.matmul(self.k, Phase::OutputAndLoss, matmul);
        let loss = Loss {
            kind: if c.head.is_sequence() {
                InputKind::Tokens
            } else {
                c.kind
            },
            rows: n_rows,
            classes: c.output,
            logits: &b.logits,
            targets: &b.targets,
            dy: &b.dy,
            row_loss: &b.row_loss,
            weight: &b.weight,
            stats: &b.stats,
        };
        self.plan.loss(self.k, loss);
    }

    /// ∂L/∂ of the decoder's input = dy V (into the top layer's dh, through `d_feats` or
    /// `d_out` where it is not dh itself), dV = dy^T input, dc = Σ dy.
    pub(super) fn output_gradients(&mut self) {
        let (c, b, s) = (self.s.config, self.b, self.s);
        let (no, nd) = (c.output, c.features());
        let phase = Phase::OutputGradients;
        let (input, at, n_rows) = self.decoded();
        let d_input = if c.head.is_sequence() {
            &b.d_feats
        } else {
            self.output_gradient()
        };
        let product = Product::new(n_rows, nd, no, rows(0, no), rows(self.v, nd), (0, nd));
        let matmul = Matmul {
            product,
            a: A::Buffer(&b.dy),
            b: B::Buffer(&b.params),
            c: d_input,
            epilogue: Epilogue::None,
        };
        self.plan.matmul(self.k, phase, matmul);
        let product = Product::new(no, nd, n_rows, cols(0, no), rows(at, nd), (self.v, nd));
        let x = B::Buffer(input);
        (self.plan).weight_gradient(self.k, phase, product, &b.dy, x, &b.grads, &b.partials);
        let sum = &self.k.column_sum;
        (self.plan).column_sum(sum, phase, &b.dy, 0..n_rows, no, &b.grads, self.c, 1.0);
        if c.head.is_sequence() {
            let sp = self.sequence_params(0, s.d0().0);
            let buffers = vec![&b.sync, &b.d_feats, &b.d0];
            let n = c.directions() * s.rows() * c.hidden;
            let k = &self.k.features_backward;
            self.plan.push(phase, k, &sp, buffers, grid_1d(n));
        } else {
            self.split(phase);
        }
    }
}
