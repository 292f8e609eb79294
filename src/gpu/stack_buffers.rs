//! The memory of a stacked step ([`super::stack`]): its shape, where each layer's parameters and
//! transposed weights sit, every buffer with its shape, their allocation within the adapter's
//! limits, and the check of a batch against them.
//!
//! Dimensions: B batch, T timesteps, I input, H hidden, O output, L layers, G gates per cell,
//! S values a cell saves per unit for its backward pass, ND directions per layer, D = ND·H. A
//! state block is one direction of one layer, k·ND + d (PyTorch's order of h_n); N the rows the
//! head decodes (T·B per step, B for a sequence head).

use crate::error::{Error, Result};
use crate::footprint::largest;
use crate::gpu::cells::saved_per_unit;
use crate::gpu::context::Gpu;
use crate::gpu::plan::{storage, weight_gradient_splits};
use crate::model::{InputKind, ModelConfig};
use crate::param_table::ParamTable;

/// Where one direction of one layer (a state block) has its parameters in the flat vector, and
/// its transposed weights in `wt`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    /// The layer's input width: I for layer 0, D above.
    pub(crate) input: usize,
    pub(crate) w_ih: usize,
    pub(crate) w_hh: usize,
    pub(crate) b_ih: usize,
    pub(crate) b_hh: usize,
    /// W_ih^T (input, G4) in `wt` (G4: G·H rounded up to a multiple of 4).
    pub(crate) wt_ih: usize,
    /// W_hh^T gate by gate, (H, G, H4) in `wt`: W_hh[k·H + j, i] at (i·G + k)·H4 + j, zeros
    /// where j ≥ H (H4: H rounded up to a multiple of 4).
    pub(crate) wt_hh: usize,
}

/// Every buffer of a stacked step.
pub struct StackBuffers {
    /// θ in the table's layout.                          (P)
    pub params: wgpu::Buffer,
    /// ∂L/∂θ in the table's layout.                      (P)
    pub grads: wgpu::Buffer,
    /// x_1 … x_T: token ids (T, B) u32, or (T, B, I) f32.
    pub x: wgpu::Buffer,
    /// Token ids (T, B) u32, or (T, B, O) f32; a sequence head's labels (B) u32.
    pub targets: wgpu::Buffer,
    /// Every block's W_ih^T and W_hh^T, then V^T, rows padded to multiples of 4.
    pub wt: wgpu::Buffer,
    /// The input projection a (forward), da (backward) of the current layer's directions, by
    /// time.                                             (ND, T, B, G·H)
    pub a: wgpu::Buffer,
    /// The recurrent projection r (forward), dr (backward) of the current layer's directions,
    /// by step.                                          (ND, T, B, G·H)
    pub r: wgpu::Buffer,
    /// Every block's h_0 … h_T, by step.                 (ND·L, T+1, B, H)
    pub hs: wgpu::Buffer,
    /// Every block's c_0 … c_T (LSTM).                   (ND·L, T+1, B, H)
    pub cs: wgpu::Buffer,
    /// Every block's saved activations.                  (ND·L, T, B, S·H)
    pub saved: wgpu::Buffer,
    /// Every layer's output by time, both directions side by side, zero at padding
    /// (bidirectional models).                           (L, T, B, D)
    pub outs: wgpu::Buffer,
    /// ∂L/∂ of a layer's output (bidirectional models).   (T, B, D)
    pub d_out: wgpu::Buffer,
    /// A sequence head's features, and their gradient.   (B, D) each
    pub feats: wgpu::Buffer,
    pub d_feats: wgpu::Buffer,
    /// The logits y.                                     (N, O)
    pub logits: wgpu::Buffer,
    /// ∂L/∂y.                                            (N, O)
    pub dy: wgpu::Buffer,
    /// Each row's loss (0 where it does not count).      (N)
    pub row_loss: wgpu::Buffer,
    /// Each row's weight in the mean loss: 1/N, or per step 1/Σ n_b at valid steps and 0 at
    /// padding (written with each batch); then that 1/n.  (N + 1)
    pub weight: wgpu::Buffer,
    /// [the mean loss, the gradient norm].               (2)
    pub stats: wgpu::Buffer,
    /// The gradients of the states: ∂L/∂h from above for the current layer's directions by step
    /// (ND, T, B, H) first, then ∂L/∂h_0 of every block (ND·L, B, H), ∂L/∂c_0 of every block
    /// (ND·L, B, H; LSTM), and the gradient reaching s from s+1 around W (ND, B, H): see
    /// [`Shape::d0`].
    pub d0: wgpu::Buffer,
    /// Partial sums of split weight gradients.           (splits, max M·N)
    pub partials: wgpu::Buffer,
    /// The outputs of every layer but the top one after dropout.   (L−1, T, B, D)
    pub dropped: wgpu::Buffer,
    /// [the update count that keys the dropout masks, …].   (4) u32
    pub counter: wgpu::Buffer,
    /// [the grid barrier's failure flag, an arrival counter per grid dispatch, each row's
    /// length n_b (B)].   u32
    pub sync: wgpu::Buffer,
    /// Bound where a kernel's binding is unused: one buffer per unused binding of a group,
    /// since WebGPU forbids binding a buffer twice in a group that writes it.
    pub(crate) unused: [wgpu::Buffer; 2],
}

/// The sizes every plan needs.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) config: ModelConfig,
    pub(crate) nb: usize,
    pub(crate) nt: usize,
}

impl Shape {
    /// G·H.
    pub(crate) fn gh(&self) -> usize {
        self.config.cell.gates() * self.config.hidden
    }

    /// B·H: one timestep of one block's states.
    pub(crate) fn bh(&self) -> usize {
        self.nb * self.config.hidden
    }

    /// ND·L: the state blocks.
    pub(crate) fn blocks(&self) -> usize {
        self.config.directions() * self.config.layers
    }

    /// N: the rows the head decodes, T·B per step or B for a sequence head.
    pub(crate) fn head_rows(&self) -> usize {
        if self.config.head.is_sequence() {
            self.nb
        } else {
            self.rows()
        }
    }

    /// Where row 0's length sits in `sync`, after the failure flag and the arrival counters.
    pub(crate) fn lengths_at(&self) -> usize {
        1 + sync_slots(self)
    }

    /// T·B.
    pub(crate) fn rows(&self) -> usize {
        self.nt * self.nb
    }

    /// Where the blocks of `d0` start: dh (at 0), ∂L/∂h_0, ∂L/∂c_0 (as long; an LSTM's only),
    /// d_direct.
    pub(crate) fn d0(&self) -> (usize, usize, usize, usize) {
        let dh0 = self.config.directions() * self.rows() * self.config.hidden;
        let block = self.blocks() * self.bh();
        let c0 = if self.config.cell.has_cell_state() {
            block
        } else {
            0
        };
        (0, dh0, dh0 + block, dh0 + block + c0)
    }

    /// Offset of block k's h_s (c_s) in hs (cs), s = 0..=T.
    pub(crate) fn state(&self, block: usize, s: usize) -> usize {
        (block * (self.nt + 1) + s) * self.bh()
    }

    /// The largest buffers, (what, elements), to check against the adapter's limits (the others,
    /// `dh`, `dropped`, the loss's, are no larger than one of these).
    pub(crate) fn sizes(&self, table: &ParamTable, wt: usize) -> Vec<(&'static str, usize)> {
        let c = &self.config;
        let per_block = self.blocks() * (self.nt + 1) * self.bh();
        let x = match c.kind {
            InputKind::Tokens => self.rows(),
            InputKind::Dense => self.rows() * c.input,
        };
        let outputs = self.blocks() * self.rows() * c.hidden;
        vec![
            ("the parameters", table.len),
            ("the transposed weights", wt),
            ("the inputs x (T, B, I)", x),
            ("the outputs (N, O)", self.head_rows() * c.output),
            (
                "the gate projections (ND, T, B, G·H)",
                c.directions() * self.rows() * self.gh(),
            ),
            ("every layer's hidden states (ND·L, T+1, B, H)", per_block),
            ("every layer's outputs (L, T, B, D)", outputs),
            (
                "the saved gate activations (ND·L, T, B, S·H)",
                outputs * saved_per_unit(c.cell),
            ),
        ]
    }
}

/// Where each layer's parameters sit, and where its transposed and padded weights go in `wt`;
/// and the offset of V^T and the length of `wt`. Every block starts at a multiple of 4.
pub(crate) fn places(config: &ModelConfig, table: &ParamTable) -> (Vec<Place>, usize, usize) {
    let gh = config.cell.gates() * config.hidden;
    let g4 = gh.next_multiple_of(4);
    let h4 = config.hidden.next_multiple_of(4);
    let mut wt = 0;
    let mut places = Vec::new();
    for (block, layer) in table.layers.iter().enumerate() {
        debug_assert_eq!(layer.state, block, "the table's rows are in block order");
        let input = layer.input();
        let wt_ih = wt;
        wt += input * g4;
        let wt_hh = wt;
        wt += config.hidden * config.cell.gates() * h4;
        places.push(Place {
            input,
            w_ih: layer.weight_ih.offset,
            w_hh: layer.weight_hh.offset,
            b_ih: layer.bias_ih.offset,
            b_hh: layer.bias_hh.offset,
            wt_ih,
            wt_hh,
        });
    }
    let vt = wt;
    wt += config.features() * config.output.next_multiple_of(4);
    (places, vt, wt)
}

/// The first buffer of a stacked step larger than `allowed` bytes, if any: (what, bytes).
fn overflow(s: &Shape, allowed: u64) -> Option<(&'static str, u64)> {
    let table = s.config.table();
    let (_, _, wt) = places(&s.config, &table);
    s.sizes(&table, wt)
        .into_iter()
        .map(|(what, n)| (what, n as u64 * 4))
        .find(|&(_, bytes)| bytes > allowed)
}

/// Checks, before any allocation, that every buffer fits the adapter's binding limit; the
/// error names the largest hidden size and batch that fit.
pub(crate) fn check_fits(gpu: &Gpu, s: &Shape) -> Result<()> {
    let (limit, allowed) = gpu.storage_limit();
    let Some((what, needed)) = overflow(s, allowed) else {
        return Ok(());
    };
    let c = s.config;
    let fits = |s: Shape| overflow(&s, allowed).is_none();
    let h = largest(c.hidden, &|h| {
        fits(Shape {
            config: ModelConfig { hidden: h, ..c },
            ..*s
        })
    });
    let b = largest(s.nb, &|b| fits(Shape { nb: b, ..*s }));
    Err(Error::Limit {
        what: what.into(),
        limit,
        needed,
        allowed,
        hint: largest_hint(h, b, (c.hidden, s.nb, s.nt)),
    })
}

/// What to do when a step does not fit: the largest hidden size at this batch (`h`) and the
/// largest batch at this hidden size (`b`) that do, 0 where none does.
pub(crate) fn largest_hint(
    h: usize,
    b: usize,
    (hidden, batch, steps): (usize, usize, usize),
) -> String {
    let mut options = Vec::new();
    if h > 0 {
        options.push(format!("H = {h} at B = {batch}"));
    }
    if b > 0 {
        options.push(format!("B = {b} at H = {hidden}"));
    }
    let fits = if options.is_empty() {
        format!("none at T = {steps}: a shorter sequence, or fewer layers")
    } else {
        format!("the largest settings that fit: {}", options.join(", or "))
    };
    format!("{fits}; the CPU reference (--device cpu) has no such limit")
}

/// Arrival counters the grid barriers of a step may use: one per dispatch of a layer's pass (both
/// directions in one), at most T + 1 dispatches each.
pub(crate) fn sync_slots(s: &Shape) -> usize {
    2 * s.config.layers * (s.nt + 1)
}

/// Allocates every buffer of a step (but the parameters and gradients it shares with another);
/// returns them and their bytes.
pub(crate) fn allocate(
    gpu: &Gpu,
    s: &Shape,
    table: &ParamTable,
    wt: usize,
    (params, grads, dropout): (Option<wgpu::Buffer>, Option<wgpu::Buffer>, bool),
) -> (StackBuffers, u64) {
    let c = &s.config;
    let (n_rows, gh, bh, nl, nd) = (s.rows(), s.gh(), s.bh(), c.layers, c.features());
    let lstm = c.cell.has_cell_state();
    let states = s.blocks() * (s.nt + 1) * bh;
    let saved = s.blocks() * s.nt * bh * saved_per_unit(c.cell);
    let (x, y) = match (c.kind, c.head.is_sequence()) {
        (InputKind::Tokens, false) => (n_rows, n_rows),
        (InputKind::Dense, false) => (n_rows * c.input, n_rows * c.output),
        (InputKind::Tokens, true) => (n_rows, s.nb),
        (InputKind::Dense, true) => (n_rows * c.input, s.nb),
    };
    let bi = c.bidirectional;
    let feats = if c.head.is_sequence() { s.nb * nd } else { 0 };
    let widest = gh * nd.max(c.input) + c.output * nd;
    let splits = weight_gradient_splits(n_rows, widest, gpu.storage_limit().1);
    let mut bytes = 0u64;
    let mut buf = |label: &str, n: usize| {
        bytes += (n.max(4) * 4) as u64;
        storage(gpu, label, n)
    };
    let buffers = StackBuffers {
        params: match params {
            Some(shared) => shared,
            None => buf("params", table.len),
        },
        grads: match grads {
            Some(shared) => shared,
            None => buf("grads", table.len),
        },
        x: buf("x", x),
        targets: buf("targets", y),
        wt: buf("wt", wt),
        a: buf("a", c.directions() * n_rows * gh),
        r: buf("r", c.directions() * n_rows * gh),
        hs: buf("hs", states),
        cs: buf("cs", if lstm { states } else { 0 }),
        saved: buf("saved", saved),
        outs: buf("outs", if bi { nl * n_rows * nd } else { 0 }),
        d_out: buf("d_out", if bi { n_rows * nd } else { 0 }),
        feats: buf("feats", feats),
        d_feats: buf("d_feats", feats),
        logits: buf("logits", s.head_rows() * c.output),
        dy: buf("dy", s.head_rows() * c.output),
        row_loss: buf("row_loss", s.head_rows()),
        weight: buf("weight", s.head_rows() + 1),
        stats: buf("stats", 2),
        d0: buf("d0", s.d0().3 + c.directions() * bh),
        partials: buf("partials", if splits > 1 { splits * widest } else { 0 }),
        dropped: buf("dropped", if dropout { (nl - 1) * n_rows * nd } else { 0 }),
        counter: buf("counter", 4),
        sync: buf("sync", s.lengths_at() + s.nb),
        unused: [0, 1].map(|_| buf("unused", 0)),
    };
    (buffers, bytes)
}
