//! The stacked step's dispatches ([`super::stack`]): one planning function per phase, looping
//! over the layers and their directions (the head's are in [`super::stack_head`]). A
//! bidirectional layer's two directions run in the same recurrence dispatches, the reverse one's
//! workgroups after the forward one's, each direction with its own state block and its own
//! blocks of `a`, `r`, dh and d_direct.

use crate::dropout::DropoutSpec;
use crate::gpu::cells::{CellParams, UnitKernels, direct_reaches_h, saved_per_unit};
use crate::gpu::context::Gpu;
use crate::gpu::kernels::{
    DropoutParams, EmbeddingParams, Kernels, MatmulParams, Products, TransposeParams,
};
use crate::gpu::phase::Phase;
use crate::gpu::plan::{
    A, B, Epilogue, Matmul, Plan, Product, Recorded, cols, grid_1d, grid_rows, rows,
};
use crate::gpu::recurrence::{Recurrence, Tiling};
use crate::gpu::stack_buffers::{Place, Shape, StackBuffers};
use crate::model::InputKind;
use crate::param_table::ParamTable;

/// How a stacked step runs beyond its shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlanOptions {
    /// Dropout between the layers (training steps only).
    pub(crate) dropout: Option<DropoutSpec>,
    /// How each layer's recurrence is ordered.
    pub(crate) recurrence: Recurrence,
    /// The tiles of each layer's recurrence.
    pub(crate) tiling: Tiling,
    /// The kernel of the products.
    pub(crate) products: Products,
}

/// Records every dispatch of a stacked step over `buffers` (W^T of layer l at `places[l]`, V^T
/// at `vt` in `wt`): forward layer by layer, the output and loss, backward from the top layer
/// down. Returns the dispatches and the bytes of their uniforms.
pub(crate) fn plan_step(
    gpu: &Gpu,
    kernels: &Kernels,
    (buffers, s, table): (&StackBuffers, Shape, &ParamTable),
    (places, vt): (Vec<Place>, usize),
    options: PlanOptions,
) -> (Recorded, u64) {
    let config = s.config;
    let limits = gpu.limits();
    let align = (limits.min_uniform_buffer_offset_alignment)
        .max(limits.min_storage_buffer_offset_alignment) as usize;
    let uniform = std::mem::size_of::<MatmulParams>().max(std::mem::size_of::<CellParams>());
    let build = options.tiling.build(options.recurrence);
    let units = (kernels.cell(config.cell)).units(&gpu.device, build);
    let mut planner = Planner {
        plan: Plan {
            uniforms: Vec::new(),
            stride: uniform.next_multiple_of(align),
            specs: Vec::new(),
            products: options.products,
        },
        k: kernels,
        units,
        recurrence: options.recurrence,
        tiling: options.tiling,
        slots: 0,
        device_type: gpu.info.device_type,
        b: buffers,
        s,
        places,
        vt,
        v: table.get("decoder.weight").expect("the decoder").offset,
        c: table.get("decoder.bias").expect("the decoder").offset,
        dropout: options.dropout,
    };
    planner.layouts();
    let directions = config.directions();
    for l in 0..config.layers {
        for d in 0..directions {
            planner.input_projection(l, d);
        }
        planner.recurrence(l, false);
        planner.concat(l);
        if l + 1 < config.layers {
            planner.dropout(l, false);
        }
    }
    planner.output_and_loss();
    planner.output_gradients();
    for l in (0..config.layers).rev() {
        planner.recurrence(l, true);
        for d in 0..directions {
            planner.weight_gradients(l, d);
        }
        if l > 0 {
            planner.dropout(l - 1, true);
            planner.split(Phase::WeightGradients);
        }
    }
    planner.clear_sync();
    let bytes = planner.plan.uniforms.len() as u64;
    (planner.plan.finish(gpu), bytes)
}

/// Plans the dispatches of a step, phase by phase and layer by layer.
pub(super) struct Planner<'a> {
    pub(super) plan: Plan<'a>,
    pub(super) k: &'a Kernels,
    units: &'a UnitKernels,
    recurrence: Recurrence,
    tiling: Tiling,
    /// The grid barriers' arrival counters used so far.
    slots: usize,
    /// The adapter's type (a software adapter runs long loops in chunks).
    device_type: wgpu::DeviceType,
    pub(super) b: &'a StackBuffers,
    pub(super) s: Shape,
    /// Each state block's parameters and transposed weights.
    places: Vec<Place>,
    /// V^T's offset in `wt`.
    pub(super) vt: usize,
    /// V's and c's offsets in the parameters.
    pub(super) v: usize,
    pub(super) c: usize,
    /// Dropout between the layers (training steps only).
    dropout: Option<DropoutSpec>,
}

impl<'a> Planner<'a> {
    /// W_ih^T of every block (not for a gathered token layer) and W_hh^T gate by gate, with rows
    /// padded; then V^T.
    fn layouts(&mut self) {
        let (c, gh) = (self.s.config, self.s.gh());
        let (g4, h4, gates) = (
            gh.next_multiple_of(4),
            c.hidden.next_multiple_of(4),
            c.cell.gates(),
        );
        let copy = |rows: usize, cols: usize, in_offset: usize, out_offset: usize, stride| {
            TransposeParams {
                rows: rows as u32,
                cols: cols as u32,
                in_offset: in_offset as u32,
                out_offset: out_offset as u32,
                out_stride: stride as u32,
                transpose: 1,
                _pad: [0; 2],
            }
        };
        for (block, p) in self.places.clone().iter().enumerate() {
            if !(block < c.directions() && c.kind == InputKind::Tokens) {
                let t = copy(gh, p.input, p.w_ih, p.wt_ih, g4);
                self.plan.layout(self.k, t, &self.b.params, &self.b.wt);
            }
            let block = c.hidden * c.hidden;
            for k in 0..gates {
                let at = p.wt_hh + k * h4;
                let t = copy(c.hidden, c.hidden, p.w_hh + k * block, at, gates * h4);
                self.plan.layout(self.k, t, &self.b.params, &self.b.wt);
            }
        }
        let t = copy(
            c.output,
            c.features(),
            self.v,
            self.vt,
            c.output.next_multiple_of(4),
        );
        self.plan.layout(self.k, t, &self.b.params, &self.b.wt);
    }

    /// Layer l's x as the B operand of a product over the T·B rows, with its offset (rows of
    /// the layer's input width).
    fn layer_input(&self, l: usize) -> (B<'a>, usize) {
        let (c, b) = (self.s.config, self.b);
        let below = (l.max(1) - 1) * self.s.rows() * c.features();
        match (l, c.kind) {
            (0, InputKind::Tokens) => (B::OneHot(&b.x), 0),
            (0, InputKind::Dense) => (B::Buffer(&b.x), 0),
            _ if self.dropout.is_some() => (B::Buffer(&b.dropped), below),
            _ if c.bidirectional => (B::Buffer(&b.outs), below),
            _ => (B::Buffer(&b.hs), self.s.state(l - 1, 1)),
        }
    }

    /// Where the gradient of a layer's output (T, B, D) is formed: `d_out` for a bidirectional
    /// model (then split into its directions), else straight into `dh` at the start of `d0`.
    pub(super) fn output_gradient(&self) -> &'a wgpu::Buffer {
        if self.s.config.bidirectional {
            &self.b.d_out
        } else {
            &self.b.d0
        }
    }

    /// dropout.wgsl over layer l's output (T, B, D): into `dropped` (forward), or over the
    /// gradient of that output (backward, see [`Self::output_gradient`]).
    fn dropout(&mut self, l: usize, backward: bool) {
        let Some(d) = self.dropout else { return };
        let (s, b, nd) = (self.s, self.b, self.s.config.features());
        let n = s.rows() * nd;
        let (src, src_offset) = if s.config.bidirectional {
            (&b.outs, l * n)
        } else {
            (&b.hs, s.state(l, 1))
        };
        let dp = DropoutParams {
            rows: s.rows() as u32,
            hidden: nd as u32,
            batch: s.nb as u32,
            layer: l as u32,
            seed_lo: d.seed as u32,
            seed_hi: (d.seed >> 32) as u32,
            p: d.p,
            scale: 1.0 / (1.0 - d.p),
            src_offset: src_offset as u32,
            dst_offset: if backward { 0 } else { (l * n) as u32 },
            _pad: [0; 2],
        };
        let (phase, kernel, src, dst) = if backward {
            let k = &self.k.dropout_backward;
            (
                Phase::WeightGradients,
                k,
                &b.unused[0],
                self.output_gradient(),
            )
        } else {
            let k = &self.k.dropout_forward;
            (Phase::ForwardRecurrence, k, src, &b.dropped)
        };
        let buffers = vec![&b.counter, src, dst];
        self.plan.push(phase, kernel, &dp, buffers, grid_1d(n));
    }

    /// Where direction d's block of `a` and `r` starts: (ND, T, B, G·H).
    fn ar(&self, d: usize) -> usize {
        d * self.s.rows() * self.s.gh()
    }

    /// a (T·B, G·H) = x U^T + b_ih of layer l's direction d (into its block of `a`): a gather of
    /// U's columns for tokens, else one product.
    fn input_projection(&mut self, l: usize, d: usize) {
        let block = l * self.s.config.directions() + d;
        let (p, gh, n_rows, at) = (self.places[block], self.s.gh(), self.s.rows(), self.ar(d));
        let phase = Phase::InputProjection;
        match self.layer_input(l) {
            (B::OneHot(x), _) => {
                let ep = EmbeddingParams {
                    rows: n_rows as u32,
                    hidden: gh as u32,
                    input: p.input as u32,
                    u_offset: p.w_ih as u32,
                    b_offset: p.b_ih as u32,
                    out_offset: at as u32,
                    _pad: [0; 2],
                };
                let buffers = vec![x, &self.b.params, &self.b.params, &self.b.a];
                let groups = grid_1d(n_rows * gh);
                self.plan.push(phase, &self.k.gather, &ep, buffers, groups);
            }
            (B::Buffer(x), x_offset) => {
                let g4 = gh.next_multiple_of(4);
                let product = Product::new(
                    n_rows,
                    gh,
                    p.input,
                    rows(x_offset, p.input),
                    rows(p.wt_ih, g4),
                    (at, gh),
                );
                let matmul = Matmul {
                    product,
                    a: A::Buffer(x),
                    b: B::Buffer(&self.b.wt),
                    c: &self.b.a,
                    epilogue: Epilogue::Bias(&self.b.params, p.b_ih),
                };
                self.plan.matmul(self.k, phase, matmul);
            }
        }
    }

    /// The recurrence of layer l's directions, forward or backward: recurrence.wgsl over the
    /// layer's tiles (each direction's), one dispatch per stage (ordered) or per chunk of stages
    /// (grid; backward: the last chunk first). The backward pass has T + 1 stages (its last
    /// computes ∂L/∂h_0).
    fn recurrence(&mut self, l: usize, backward: bool) {
        let (s, cell, tiling) = (self.s, self.s.config.cell, self.tiling);
        let stages = if backward { s.nt + 1 } else { s.nt };
        let shape = (s.config.hidden, cell.gates());
        let (mut chunks, spin) = tiling.chunks(self.recurrence, self.device_type, shape, stages);
        let u = self.units;
        let (phase, kernel) = match (backward, spin > 0) {
            (true, true) => (Phase::BackwardRecurrence, &u.backward),
            (true, false) => (Phase::BackwardRecurrence, &u.backward_step),
            (false, true) => (Phase::ForwardRecurrence, &u.forward),
            (false, false) => (Phase::ForwardRecurrence, &u.forward_step),
        };
        if backward {
            chunks.reverse();
        }
        let groups = grid_rows(s.config.directions() * tiling.groups());
        for (t_begin, t_end) in chunks {
            let cp = CellParams {
                t_begin: t_begin as u32,
                t_end: t_end as u32,
                spin: spin as u32,
                slot: self.slots as u32,
                ..self.cell_params(l)
            };
            if spin > 0 {
                self.slots += 1;
            }
            self.plan
                .push(phase, kernel, &cp, self.cell_buffers(), groups);
        }
    }

    /// The recurrence's uniform for layer l's directions, without its stages.
    fn cell_params(&self, l: usize) -> CellParams {
        let (s, cell, tiling) = (&self.s, self.s.config.cell, self.tiling);
        let nd = s.config.directions();
        let block = l * nd;
        let p = self.places[block];
        // From the forward direction's place to the reverse one's (0 for one direction).
        let stride = |at: fn(&Place) -> usize| at(&self.places[block + nd - 1]) - at(&p);
        debug_assert_eq!(stride(|q| q.w_hh), stride(|q| q.b_hh));
        CellParams {
            batch: s.nb as u32,
            hidden: s.config.hidden as u32,
            gates: cell.gates() as u32,
            saved_width: saved_per_unit(cell) as u32,
            block: block as u32,
            steps: s.nt as u32,
            units: tiling.units as u32,
            slices: tiling.slices as u32,
            row_block: tiling.row_block as u32,
            groups: (nd * tiling.groups()) as u32,
            wt: (p.wt_hh / 4) as u32,
            w: p.w_hh as u32,
            bias: p.b_hh as u32,
            direct_to_h: direct_reaches_h(cell) as u32,
            dh: s.d0().0 as u32,
            dh0: s.d0().1 as u32,
            dc0: s.d0().2 as u32,
            direct: s.d0().3 as u32,
            directions: nd as u32,
            lengths: s.lengths_at() as u32,
            wt_stride: (stride(|q| q.wt_hh) / 4) as u32,
            w_stride: stride(|q| q.w_hh) as u32,
            ar_stride: self.ar(1) as u32,
            dh_stride: (s.rows() * s.config.hidden) as u32,
            direct_stride: s.bh() as u32,
            ..Default::default()
        }
    }

    /// Zeroes the arrival counters of the step's grid barriers, first of all (in the weight
    /// layouts, which evaluation runs too).
    fn clear_sync(&mut self) {
        if self.slots == 0 {
            return;
        }
        let cp = CellParams {
            slot: self.slots as u32,
            ..self.cell_params(0)
        };
        let kernel = &self.units.clear_sync;
        let buffers = self.cell_buffers();
        self.plan
            .push_first(Phase::Transposes, kernel, &cp, buffers, (1, 1, 1));
    }

    /// The recurrence's bindings after its parameters (see cell.wgsl and recurrence.wgsl): one
    /// layout for both passes, so the forward kernel has the gradients bound too and leaves them
    /// alone.
    fn cell_buffers(&self) -> Vec<&'a wgpu::Buffer> {
        let (b, cell) = (self.b, self.s.config.cell);
        let cs = if cell.has_cell_state() {
            &b.cs
        } else {
            &b.unused[0]
        };
        let saved = if saved_per_unit(cell) > 0 {
            &b.saved
        } else {
            &b.unused[1]
        };
        vec![
            &b.a, &b.r, &b.hs, cs, saved, &b.d0, &b.wt, &b.params, &b.sync,
        ]
    }

    /// Layer l's direction d: dU = da^T x, db_ih = Σ da, dW = dr^T h_{0..T-1}, db_hh = Σ dr over
    /// all T·B rows; below the top layer's input, the gradient of layer l−1's output = Σ_d da U
    /// (see [`Self::output_gradient`]).
    fn weight_gradients(&mut self, l: usize, d: usize) {
        let block = l * self.s.config.directions() + d;
        let (p, gh, n_rows, nh) = (
            self.places[block],
            self.s.gh(),
            self.s.rows(),
            self.s.config.hidden,
        );
        let (b, k, ar) = (self.b, self.k, self.ar(d));
        let phase = Phase::WeightGradients;
        let (x, x_offset) = self.layer_input(l);
        let product = Product::new(
            gh,
            p.input,
            n_rows,
            cols(ar, gh),
            rows(x_offset, p.input),
            (p.w_ih, p.input),
        );
        (self.plan).weight_gradient(k, phase, product, &b.a, x, &b.grads, &b.partials);
        let sum = &k.column_sum;
        let own_rows = ar / gh..ar / gh + n_rows;
        (self.plan).column_sum(
            sum,
            phase,
            &b.a,
            own_rows.clone(),
            gh,
            &b.grads,
            p.b_ih,
            1.0,
        );
        let h_prev = rows(self.s.state(block, 0), nh);
        let product = Product::new(gh, nh, n_rows, cols(ar, gh), h_prev, (p.w_hh, nh));
        let hs = B::Buffer(&b.hs);
        (self.plan).weight_gradient(k, phase, product, &b.r, hs, &b.grads, &b.partials);
        (self.plan).column_sum(sum, phase, &b.r, own_rows, gh, &b.grads, p.b_hh, 1.0);
        if l > 0 {
            let width = p.input;
            let product = Product::new(
                n_rows,
                width,
                gh,
                rows(ar, gh),
                rows(p.w_ih, width),
                (0, width),
            );
            let matmul = Matmul {
                product,
                a: A::Buffer(&b.a),
                b: B::Buffer(&b.params),
                c: self.output_gradient(),
                epilogue: if d == 0 {
                    Epilogue::None
                } else {
                    Epilogue::Accumulate
                },
            };
            self.plan.matmul(k, phase, matmul);
        }
    }
}
