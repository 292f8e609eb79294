// sequence.wgsl: what turns one layer's directions into the sequence the layer above (or the head)
// reads, and the gradients back: the bidirectional output, the `last` and `mean` heads' features,
// and their backward passes. One invocation per output element; no sums but the mean's, in time
// order.
//
// Shapes (B batch, T timesteps, H hidden, ND directions, D = ND·H; n_b row b's length):
//   hs:    a layer's blocks of states by step, (ND, T+1, B, H) from p.src: direction d's step s
//          reads time s (forward) or n_b − 1 − s (reverse) and writes its state at s + 1, so
//          the state after time t sits at t + 1 (forward) or n_b − t (reverse)
//   out:   the layer's output by time, (T, B, D): [h_fwd; h_rev] at (t, b), zero where t ≥ n_b
//   dh:    ∂L/∂ of each direction's states by step, (ND, T, B, H): what recurrence.wgsl reads
//   feats: a sequence head's input, (B, D)
//
//   concat:            out[t, b, d·H + j] = hs[d, slot_d(t), b, j]            (t < n_b; else 0)
//   split:             dh[d, s, b, j] = d_out[time_d(s), b, d·H + j]          (s < n_b; else 0)
//   features (last):   feats[b, d·H + j] = hs[d, n_b, b, j]   (the forward state at n_b − 1,
//                      the reverse one after time 0: PyTorch's h_n of the top layer)
//   features (mean):   feats[b, d·H + j] = (1/n_b) Σ_{t < n_b} out[t, b, d·H + j]
//   features_backward: dh[d, s, b, j] = d_feats[b, d·H + j] at s = n_b − 1 (last), or
//                      d_feats[b, d·H + j] / n_b at every s < n_b (mean); 0 elsewhere
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:       SequenceParams, uniform (dynamic offset)
//   @binding(1) lengths: array<u32>, read        n_b at p.lengths + b
//   @binding(2) src:     array<f32>, read        hs (concat, features) or d_out, d_feats
//   @binding(3) dst:     array<f32>, read_write  out, feats, or dh

struct SequenceParams {
    batch: u32,
    steps: u32,
    hidden: u32,
    directions: u32,
    // 0: last, 1: mean (features, features_backward).
    mean: u32,
    lengths: u32,
    src: u32,
    dst: u32,
}

@group(0) @binding(0) var<uniform> p: SequenceParams;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn width() -> u32 {
    return p.directions * p.hidden;
}

// Where direction d's state after time t of row b sits in hs, from p.src.
fn state_at(d: u32, t: u32, b: u32, j: u32) -> u32 {
    let n = lengths[p.lengths + b];
    let slot = select(t + 1u, n - t, d == 1u);
    return p.src + ((d * (p.steps + 1u) + slot) * p.batch + b) * p.hidden + j;
}

@compute @workgroup_size(64)
fn concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    let nd = width();
    if (i >= p.steps * p.batch * nd) {
        return;
    }
    let t = i / (p.batch * nd);
    let b = (i / nd) % p.batch;
    let c = i % nd;
    var v = 0.0;
    if (t < lengths[p.lengths + b]) {
        v = src[state_at(c / p.hidden, t, b, c % p.hidden)];
    }
    dst[p.dst + i] = v;
}

// Element i of a (ND, T, B, H) block by step: its direction, step, row and unit.
struct ByStep {
    d: u32,
    s: u32,
    b: u32,
    j: u32,
}

fn by_step(i: u32) -> ByStep {
    let bh = p.batch * p.hidden;
    return ByStep(i / (p.steps * bh), (i / bh) % p.steps, (i / p.hidden) % p.batch, i % p.hidden);
}

@compute @workgroup_size(64)
fn split(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i >= p.directions * p.steps * p.batch * p.hidden) {
        return;
    }
    let e = by_step(i);
    let n = lengths[p.lengths + e.b];
    var v = 0.0;
    if (e.s < n) {
        let t = select(e.s, n - 1u - e.s, e.d == 1u);
        v = src[p.src + (t * p.batch + e.b) * width() + e.d * p.hidden + e.j];
    }
    dst[p.dst + i] = v;
}

@compute @workgroup_size(64)
fn features(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    let nd = width();
    if (i >= p.batch * nd) {
        return;
    }
    let b = i / nd;
    let d = (i % nd) / p.hidden;
    let j = i % p.hidden;
    let n = lengths[p.lengths + b];
    var v = 0.0;
    if (p.mean == 0u) {
        v = src[p.src + ((d * (p.steps + 1u) + n) * p.batch + b) * p.hidden + j];
    } else {
        for (var t = 0u; t < n; t++) {
            v += src[state_at(d, t, b, j)];
        }
        v *= 1.0 / f32(n);
    }
    dst[p.dst + i] = v;
}

@compute @workgroup_size(64)
fn features_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i >= p.directions * p.steps * p.batch * p.hidden) {
        return;
    }
    let e = by_step(i);
    let n = lengths[p.lengths + e.b];
    let g = src[p.src + e.b * width() + e.d * p.hidden + e.j];
    var v = 0.0;
    if (p.mean == 0u && e.s + 1u == n) {
        v = g;
    } else if (p.mean != 0u && e.s < n) {
        v = g * (1.0 / f32(n));
    }
    dst[p.dst + i] = v;
}
