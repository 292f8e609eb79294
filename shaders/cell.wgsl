// cell.wgsl: the bindings and helpers shared by the pointwise kernels of every cell
// (cell_rnn.wgsl, cell_gru.wgsl, cell_lstm.wgsl), prepended to each of them.
//
// A cell's kernels run once per timestep t of a layer, one invocation per (b, j) of B·H, between
// the products of matmul.wgsl that the host plans around them (src/gpu/stack.rs):
//   forward t:   r_t = h_{t-1} W^T + b_hh                   (matmul.wgsl, into r)
//                h_t (and c_t) from a_t = x_t U^T + b_ih and r_t   (the cell's `forward`)
//   backward t:  da_t, dr_t from ∂L/∂h_t (and ∂L/∂c_t)      (the cell's `backward`)
//                dh_next = dr_t W  (+ d_direct, the path around W, at t = 1)   (matmul.wgsl)
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
// can hold the same placeholder buffer; each entry's comment says what it reads and writes.
//
// Bindings:
//   @binding(0) p:        CellParams, uniform (dynamic offset)
//   @binding(1) a … @binding(9) dc0, in the order above.

struct CellParams {
    batch: u32,
    hidden: u32,
    // Offset of step t's rows in a and r: (t−1)·B·G·H.
    row: u32,
    // Offsets of h_{t-1} and h_t in hs (and of c_{t-1}, c_t in cs): (l·(T+1) + t−1)·B·H, … + B·H.
    prev: u32,
    next: u32,
    // Offset of step t's saved activations: (l·T + t−1)·B·S·H.
    saved: u32,
    // Offset of ∂L/∂h_t in dh: (t−1)·B·H.
    dh: u32,
    // 1 at t = T (backward): nothing has come from t+1 yet.
    last_step: u32,
    // 1 at t = 1 (backward): write ∂L/∂c_0 at dc0[state + i].
    first_step: u32,
    state: u32,
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

// The invocation's index in a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (a grid dimension holds at most 65,535 workgroups).
fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 64u + gid.x;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// A unit (b, j) of the B·H: its index in (B, H) buffers and where gate k of its row sits in a
// (B, G·H) row block.
struct Unit {
    i: u32,
    b: u32,
    j: u32,
}

fn unit(gid: vec3<u32>, groups: vec3<u32>) -> Unit {
    let i = linear_index(gid, groups);
    return Unit(i, i / p.hidden, i % p.hidden);
}

fn gate(u: Unit, gates: u32, k: u32) -> u32 {
    return u.b * gates * p.hidden + k * p.hidden + u.j;
}

// ∂L/∂h_t: from above, plus what came from t+1 through W (none at t = T).
fn incoming(u: Unit) -> f32 {
    var g = dh[p.dh + u.i];
    if (p.last_step == 0u) {
        g += dh_next[u.i];
    }
    return g;
}

// What came from t+1 around W (none at t = T).
fn direct(u: Unit) -> f32 {
    if (p.last_step != 0u) {
        return 0.0;
    }
    return d_direct[u.i];
}
