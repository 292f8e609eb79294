// rnn_forward.wgsl: one timestep of the forward recurrence, bias and tanh fused.
//
// Math, for the step t (0-based here; the notes' h_{t+1}):
//   h[t+1, b, j] = tanh(pre[t, b, j] + Σ_k h[t, b, k] W[j, k])
// where pre = x U^T + b was computed for all timesteps at once before the recurrence.
// Shapes: pre (T, B, H), W (H, H) at params[w_offset..], hs (T+1, B, H) with h_0 at index 0.
// One invocation per (b, j); one dispatch per timestep, all in one compute pass.
//
// hs is bound once, read_write, and t selects the slices: wgpu tracks a buffer as a whole, so
// h_t (read) and h_{t+1} (written) cannot be two bindings of the same buffer.
//
// Bindings:
//   @binding(0) p:      StepParams, uniform (dynamic offset: one entry per timestep)
//   @binding(1) pre:    array<f32>, read        (T, B, H)
//   @binding(2) params: array<f32>, read        the flat parameter vector
//   @binding(3) hs:     array<f32>, read_write  (T+1, B, H)

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
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> hs: array<f32>;

// The invocation's index in a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (a grid dimension holds at most 65,535 workgroups).
fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 64u + gid.x;
}

@compute @workgroup_size(64)
fn forward_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = p.batch * p.hidden;
    let idx = linear_index(gid, groups);
    if (idx >= n) {
        return;
    }
    let b = idx / p.hidden;
    let j = idx % p.hidden;
    let h_prev = p.t * n + b * p.hidden;
    let w_row = p.w_offset + j * p.hidden;
    var a = pre[p.t * n + idx];
    for (var k = 0u; k < p.hidden; k++) {
        a += hs[h_prev + k] * params[w_row + k];
    }
    hs[(p.t + 1u) * n + idx] = tanh(a);
}
