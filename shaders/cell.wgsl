// cell.wgsl: the bindings and helpers shared by the pointwise step of every cell
// (cell_rnn.wgsl, cell_gru.wgsl, cell_lstm.wgsl), prepended to each of them; recurrence.wgsl,
// appended, runs them. The cells' tanh is activation.wgsl's tanh_f32, prepended to this. A cell
// file defines GATES (G), CELL_STATE (whether it keeps c_t) and two functions over one unit
// (b, j) of one timestep:
//   cell_forward(u, s, r):        h_t (and c_t) from a_t = x_t U^T + b_ih and r, the unit's G
//                                 values of r_t = h_{t-1} W^T + b_hh (gate k in r[k])
//   cell_backward(u, s, through): da_t, dr_t from ∂L/∂h_t (and ∂L/∂c_t), where `through` is
//                                 dr_{t+1} W at the unit, the gradient reaching h_t through W
//                                 (0 at t = T)
// The G gates of a row sit side by side, gate k of unit j at column k·H + j (PyTorch's rows of
// weight_ih and weight_hh). A cell saves what its backward needs (S·H values per row) in `saved`.
//
// Shapes (L layers, B batch, T timesteps, H hidden, G gates, S saved values per unit):
// A direction's step s = 0 … T−1 reads time t = s (forward) or t = n_b − 1 − s (reverse), n_b the
// row's length (recurrence.wgsl reads it); steps s ≥ n_b are padding. The states, saved
// activations, r and dh are kept by step; a (and da) by time. A state block is one layer's
// direction, k·ND + d (PyTorch's order of h_n). A dispatch runs p.directions directions of a
// layer, the reverse direction's workgroups after the forward one's; each direction's a, r, dh
// and d_direct are blocks of their own, p.*_stride apart (`dir` below).
//
//   a:        (ND, T, B, G·H)  forward: x_t U^T + b_ih, read;  backward: da, written (by time)
//   r:        (ND, T, B, G·H)  backward: dr, written (the forward keeps r_t in registers; bound as
//             vec4s, r_at and set_r reach one element)
//   hs:       (ND·L, T+1, B, H) every block's h_0 … h_T; forward writes h_{s+1}, both read h_s
//             (bound as vec4s; h_at and set_h reach one element)
//   cs:       (ND·L, T+1, B, H) every block's c_0 … c_T (LSTM)
//   saved:    (ND·L, T, B, S·H) the activations the backward reads (GRU r, z, n, W_n h + b_hn;
//             LSTM i, f, g, o)
//   d0:       the gradients of the states, one block after another:
//             dh (ND, T, B, H) at p.dh: ∂L/∂h_{s+1} from above (the decoder, or layer l+1's
//             input gradient), by step, read;
//             ∂L/∂h_0 (ND·L, B, H) at p.dh0, written at s = 0;
//             ∂L/∂c_0 (ND·L, B, H) at p.dc0 (LSTM), written at s = 0;
//             d_direct (ND, B, H) at p.direct, the gradient reaching step t from t+1 around W (a
//             GRU's z ⊙ dh, to h; an LSTM's f ⊙ dc, to c), read and rewritten in place by the
//             invocation that owns the unit
// Every binding is read_write so that one layout serves both passes and an unused binding can
// hold a placeholder buffer; each cell's comment says what it reads and writes.
//
// Bindings:
//   @binding(0) p:        CellParams, storage, read (dynamic offset: per-dispatch values that a
//                         software adapter would otherwise compile into the shader each time)
//   @binding(1) a … @binding(6) d0, in the order above.

struct CellParams {
    batch: u32,
    hidden: u32,
    // G and S of the cell.
    gates: u32,
    saved_width: u32,
    // The state block k·ND + d and T.
    block: u32,
    steps: u32,
    // The stages [t_begin, t_end) of this dispatch (recurrence.wgsl).
    t_begin: u32,
    t_end: u32,
    // The tiles: units per slice (a multiple of 4), slices, batch rows per block, workgroups.
    units: u32,
    slices: u32,
    row_block: u32,
    groups: u32,
    // Where the padded W_hh^T (vec4s) sits in wt and W_hh and b_hh in params, and whether
    // d_direct reaches h (a GRU's: ∂L/∂h_0 adds it).
    wt: u32,
    w: u32,
    bias: u32,
    direct_to_h: u32,
    // The grid barrier's bound on polls (0: one stage per dispatch, no barrier); this dispatch's
    // arrival counter.
    spin: u32,
    slot: u32,
    // Where the blocks of d0 start: dh, ∂L/∂h_0, ∂L/∂c_0, d_direct.
    dh: u32,
    dh0: u32,
    dc0: u32,
    direct: u32,
    // The directions this dispatch runs (1, or 2: a bidirectional layer), and where row 0's
    // length n_0 sits in sync (recurrence.wgsl).
    directions: u32,
    lengths: u32,
    // From the forward direction's to the reverse one's: W_hh^T (in wt), W_hh and b_hh (in
    // params), a and r, dh, d_direct.
    wt_stride: u32,
    w_stride: u32,
    ar_stride: u32,
    dh_stride: u32,
    direct_stride: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> p: CellParams;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> r: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> hs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> cs: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;
@group(0) @binding(6) var<storage, read_write> d0: array<f32>;

// The direction a workgroup runs: whether it is the reverse one, its state block, and where its
// W_hh^T (vec4s in wt), W_hh and b_hh, a and r, dh and d_direct start.
struct Direction {
    reverse: bool,
    block: u32,
    wt: u32,
    w: u32,
    bias: u32,
    ar: u32,
    dh: u32,
    direct: u32,
}

// Set once at the start of every entry point (recurrence.wgsl), from the workgroup's index.
var<private> dir: Direction;

fn direction_of(d: u32) -> Direction {
    return Direction(
        d == 1u,
        p.block + d,
        p.wt + d * p.wt_stride,
        p.w + d * p.w_stride,
        p.bias + d * p.w_stride,
        d * p.ar_stride,
        p.dh + d * p.dh_stride,
        p.direct + d * p.direct_stride,
    );
}

// Element i of hs (bound as vec4s, so that the recurrence's product loads four at once).
fn h_at(i: u32) -> f32 {
    return hs[i / 4u][i % 4u];
}

fn set_h(i: u32, v: f32) {
    hs[i / 4u][i % 4u] = v;
}

// Element i of r (bound as vec4s too).
fn r_at(i: u32) -> f32 {
    return r[i / 4u][i % 4u];
}

fn set_r(i: u32, v: f32) {
    r[i / 4u][i % 4u] = v;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Where step s of the workgroup's direction reads and writes: offsets into the buffers above.
struct Step {
    // Step s's rows in r: s·B·G·H (in the direction's block).
    row: u32,
    // The rows in a of the time the step reads: t·B·G·H (recurrence.wgsl sets it per row, for
    // the row's own time; s·B·G·H here).
    a: u32,
    // h_s and h_{s+1} in hs (c_s, c_{s+1} in cs): (k·(T+1) + s)·B·H, … + B·H.
    prev: u32,
    next: u32,
    // Step s's saved activations: (k·T + s)·B·S·H.
    saved: u32,
    // ∂L/∂h_{s+1} in dh: s·B·H.
    dh: u32,
    // The last step (backward): nothing has come from s+1 yet.
    last: bool,
    // The first step (backward): write ∂L/∂c_0 at d0[p.dc0 + state + i].
    first: bool,
    // Block k's rows of ∂L/∂h_0 (and ∂L/∂c_0): k·B·H.
    state: u32,
}

fn step_at(s: u32) -> Step {
    let bh = p.batch * p.hidden;
    let prev = (dir.block * (p.steps + 1u) + s) * bh;
    let row = dir.ar + s * p.batch * p.gates * p.hidden;
    return Step(
        row,
        row,
        prev,
        prev + bh,
        (dir.block * p.steps + s) * p.saved_width * bh,
        s * bh,
        s + 1u == p.steps,
        s == 0u,
        dir.block * bh,
    );
}

// A unit (b, j) of the B·H: its index in (B, H) buffers and where gate k of its row sits in a
// (B, G·H) row block.
struct Unit {
    i: u32,
    b: u32,
    j: u32,
}

fn unit_at(i: u32) -> Unit {
    return Unit(i, i / p.hidden, i % p.hidden);
}

fn gate(u: Unit, gates: u32, k: u32) -> u32 {
    return u.b * gates * p.hidden + k * p.hidden + u.j;
}

// ∂L/∂h_t: from above, plus `through`, what came from t+1 through W (0 at t = T).
fn incoming(u: Unit, s: Step, through: f32) -> f32 {
    return d0[dir.dh + s.dh + u.i] + through;
}

// What came from t+1 around W (none at t = T), and where it goes to t−1.
fn direct(u: Unit, s: Step) -> f32 {
    if (s.last) {
        return 0.0;
    }
    return d0[dir.direct + u.i];
}

fn set_direct(u: Unit, v: f32) {
    d0[dir.direct + u.i] = v;
}
