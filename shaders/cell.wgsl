// cell.wgsl: the bindings and helpers shared by the pointwise step of every cell
// (cell_rnn.wgsl, cell_gru.wgsl, cell_lstm.wgsl), prepended to each of them, and the per-step
// entry points that run it. The cells' tanh is activation.wgsl's tanh_f32, prepended to this. A cell file defines two functions over one unit (b, j) of one
// timestep, `cell_forward(u, s)` and `cell_backward(u, s)`; the per-step kernels below run them
// once per timestep, one invocation per unit, and cell_sequence.wgsl (appended for the persistent
// recurrence) runs them for every timestep in one dispatch.
//
// Per timestep t of a layer, between the products that the host plans around the per-step
// kernels (src/gpu/stack_plan.rs) or that cell_sequence.wgsl computes itself:
//   forward t:   r_t = h_{t-1} W^T + b_hh
//                h_t (and c_t) from a_t = x_t U^T + b_ih and r_t   (cell_forward)
//   backward t:  da_t, dr_t from ∂L/∂h_t (and ∂L/∂c_t)      (cell_backward)
//                dh_next = dr_t W  (+ d_direct, the path around W, at t = 1)
// The G gates of a row sit side by side, gate k of unit j at column k·H + j (PyTorch's rows of
// weight_ih and weight_hh). A cell saves what its backward needs (S·H values per row) in `saved`.
//
// Shapes (L layers, B batch, T timesteps, H hidden, G gates, S saved values per unit):
//   a:        (T, B, G·H)  forward: x_t U^T + b_ih, read;     backward: da, written
//   r:        (T, B, G·H)  forward: h_{t-1} W^T + b_hh, read;  backward: dr, written
//   hs:       (L, T+1, B, H) every layer's h_0 … h_T; forward writes h_t, both read h_{t-1}
//   cs:       (L, T+1, B, H) every layer's c_0 … c_T (LSTM)
//   saved:    (L, T, B, S·H) the activations the backward reads (GRU r, z, n, W_n h + b_hn;
//             LSTM i, f, g, o)
//   dh:       (T, B, H) ∂L/∂h_t from above (the decoder, or layer l+1's input gradient), read
//   dh_next:  (B, H) dr_{t+1} W, the gradient reaching h_t through W from t+1, read
//   d_direct: (B, H) the gradient reaching step t from t+1 around W: a GRU's z ⊙ dh (to h),
//             an LSTM's f ⊙ dc (to c); read and rewritten in place by the same invocation
//   dc0:      (L, B, H) ∂L/∂c_0 (LSTM), written at t = 1
// Every binding is read_write so that one layout serves both entry points and an unused binding
// can hold a placeholder buffer; each cell's comment says what it reads and writes.
//
// Bindings:
//   @binding(0) p:        CellParams, uniform (dynamic offset)
//   @binding(1) a … @binding(9) dc0, in the order above.

struct CellParams {
    batch: u32,
    hidden: u32,
    // G and S of the cell.
    gates: u32,
    saved_width: u32,
    // The layer l, T, and the timestep t (0-based: h_{t+1} from h_t) of a per-step kernel.
    layer: u32,
    steps: u32,
    t: u32,
    // The persistent recurrence only (cell_sequence.wgsl): the timesteps [t_begin, t_end) of
    // this dispatch, the batch rows per workgroup, where the padded W_hh^T and W_hh sit in wt and
    // b_hh in params, and whether d_direct reaches h (a GRU's: ∂L/∂h_0 adds it).
    t_begin: u32,
    t_end: u32,
    rows_per_group: u32,
    wt: u32,
    w: u32,
    bias: u32,
    direct_to_h: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: CellParams;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> r: array<f32>;
@group(0) @binding(3) var<storage, read_write> hs: array<f32>;
@group(0) @binding(4) var<storage, read_write> cs: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;
@group(0) @binding(6) var<storage, read_write> dh: array<f32>;
@group(0) @binding(7) var<storage, read_write> dh_next: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_direct: array<f32>;
@group(0) @binding(9) var<storage, read_write> dc0: array<f32>;

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
    // The first timestep (backward): write ∂L/∂c_0 at dc0[state + i].
    first: bool,
    // Layer l's block in dc0 (and dh0): l·B·H.
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

// ∂L/∂h_t: from above, plus what came from t+1 through W (none at t = T).
fn incoming(u: Unit, s: Step) -> f32 {
    var g = dh[s.dh + u.i];
    if (!s.last) {
        g += dh_next[u.i];
    }
    return g;
}

// What came from t+1 around W (none at t = T).
fn direct(u: Unit, s: Step) -> f32 {
    if (s.last) {
        return 0.0;
    }
    return d_direct[u.i];
}

// The unit of an invocation in a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (a grid dimension holds at most 65,535 workgroups), if it is one of the B·H.
fn grid_unit(gid: vec3<u32>, groups: vec3<u32>) -> Unit {
    return unit_at(gid.y * groups.x * 64u + gid.x);
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = grid_unit(gid, groups);
    if (u.i < p.batch * p.hidden) {
        cell_forward(u, step_at(p.t));
    }
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = grid_unit(gid, groups);
    if (u.i < p.batch * p.hidden) {
        cell_backward(u, step_at(p.t));
    }
}
