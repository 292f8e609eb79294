// cell.wgsl: the bindings and helpers shared by the pointwise step of every cell
// (cell_rnn.wgsl, cell_gru.wgsl, cell_lstm.wgsl), prepended to each of them; recurrence.wgsl,
// appended, runs them. The cells' tanh is activation.wgsl's tanh_f32, prepended to this. A cell
// file defines GATES (G) and two functions over one unit (b, j) of one timestep:
//   cell_forward(u, s, r):        h_t (and c_t) from a_t = x_t U^T + b_ih and r, the unit's G
//                                 values of r_t = h_{t-1} W^T + b_hh (gate k in r[k])
//   cell_backward(u, s, through): da_t, dr_t from ∂L/∂h_t (and ∂L/∂c_t), where `through` is
//                                 dr_{t+1} W at the unit, the gradient reaching h_t through W
//                                 (0 at t = T)
// The G gates of a row sit side by side, gate k of unit j at column k·H + j (PyTorch's rows of
// weight_ih and weight_hh). A cell saves what its backward needs (S·H values per row) in `saved`.
//
// Shapes (L layers, B batch, T timesteps, H hidden, G gates, S saved values per unit):
//   a:        (T, B, G·H)  forward: x_t U^T + b_ih, read;     backward: da, written
//   r:        (T, B, G·H)  backward: dr, written (the forward keeps r_t in registers; bound as
//             vec4s, r_at and set_r reach one element)
//   hs:       (L, T+1, B, H) every layer's h_0 … h_T; forward writes h_t, both read h_{t-1}
//             (bound as vec4s; h_at and set_h reach one element)
//   cs:       (L, T+1, B, H) every layer's c_0 … c_T (LSTM)
//   saved:    (L, T, B, S·H) the activations the backward reads (GRU r, z, n, W_n h + b_hn;
//             LSTM i, f, g, o)
//   d0:       the gradients of the states, one block after another:
//             dh (T, B, H) at p.dh: ∂L/∂h_t from above (the decoder, or layer l+1's input
//             gradient), read;
//             ∂L/∂h_0 (L, B, H) at p.dh0, written at t = 1;
//             ∂L/∂c_0 (L, B, H) at p.dc0 (LSTM), written at t = 1;
//             d_direct (B, H) at p.direct, the gradient reaching step t from t+1 around W (a
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
    // The layer l and T.
    layer: u32,
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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> p: CellParams;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> r: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> hs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> cs: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;
@group(0) @binding(6) var<storage, read_write> d0: array<f32>;

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

// Where timestep t of layer p.layer reads and writes: offsets into the buffers above.
struct Step {
    // Step t's rows in a and r: t·B·G·H.
    row: u32,
    // h_t and h_{t+1} in hs (c_t, c_{t+1} in cs): (l·(T+1) + t)·B·H, … + B·H.
    prev: u32,
    next: u32,
    // Step t's saved activations: (l·T + t)·B·S·H.
    saved: u32,
    // ∂L/∂h_{t+1} in dh: t·B·H.
    dh: u32,
    // The last timestep (backward): nothing has come from t+1 yet.
    last: bool,
    // The first timestep (backward): write ∂L/∂c_0 at d0[p.dc0 + state + i].
    first: bool,
    // Layer l's block of ∂L/∂h_0 (and ∂L/∂c_0): l·B·H.
    state: u32,
}

fn step_at(t: u32) -> Step {
    let bh = p.batch * p.hidden;
    let prev = (p.layer * (p.steps + 1u) + t) * bh;
    return Step(
        t * p.batch * p.gates * p.hidden,
        prev,
        prev + bh,
        (p.layer * p.steps + t) * p.saved_width * bh,
        t * bh,
        t + 1u == p.steps,
        t == 0u,
        p.layer * bh,
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
    return d0[p.dh + s.dh + u.i] + through;
}

// What came from t+1 around W (none at t = T), and where it goes to t−1.
fn direct(u: Unit, s: Step) -> f32 {
    if (s.last) {
        return 0.0;
    }
    return d0[p.direct + u.i];
}

fn set_direct(u: Unit, v: f32) {
    d0[p.direct + u.i] = v;
}
