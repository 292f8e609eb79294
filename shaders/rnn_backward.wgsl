// rnn_backward.wgsl: one timestep of backpropagation through time, tanh' fused.
//
// Math, for the step t (0-based; run for t = T-1 down to 0):
//   dA[t, b, k] = (dh[t, b, k] + Σ_j dA[t+1, b, j] W[j, k]) ⊙ (1 − h[t+1, b, k]²)
// with the sum left out at t = T-1 (dA_{T+1} = 0 in the notes' 1-based terms).
// dh = dy V was computed for all timesteps at once before the recurrence; the weight gradients
// are computed from dA for all timesteps at once after it.
// Shapes: dh (T, B, H), W (H, H) at params[w_offset..], hs (T+1, B, H), dA (T, B, H).
// One invocation per (b, k); one dispatch per timestep, all in one compute pass.
//
// Bindings:
//   @binding(0) p:      StepParams, uniform (dynamic offset: one entry per timestep)
//   @binding(1) dh:     array<f32>, read        (T, B, H)
//   @binding(2) params: array<f32>, read        the flat parameter vector
//   @binding(3) hs:     array<f32>, read        (T+1, B, H)
//   @binding(4) da:     array<f32>, read_write  (T, B, H)

struct StepParams {
    batch: u32,
    hidden: u32,
    steps: u32,
    t: u32,
    w_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> dh: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> hs: array<f32>;
@group(0) @binding(4) var<storage, read_write> da: array<f32>;

// The invocation's index in a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (a grid dimension holds at most 65,535 workgroups).
fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 64u + gid.x;
}

@compute @workgroup_size(64)
fn backward_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = p.batch * p.hidden;
    let idx = linear_index(gid, groups);
    if (idx >= n) {
        return;
    }
    let b = idx / p.hidden;
    let k = idx % p.hidden;
    var g = dh[p.t * n + idx];
    if (p.t + 1u < p.steps) {
        let da_next = (p.t + 1u) * n + b * p.hidden;
        for (var j = 0u; j < p.hidden; j++) {
            g += da[da_next + j] * params[p.w_offset + j * p.hidden + k];
        }
    }
    let h = hs[(p.t + 1u) * n + idx];
    da[p.t * n + idx] = g * (1.0 - h * h);
}
