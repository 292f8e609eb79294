// dropout.wgsl: dropout between stacked layers, the mask from a counter-based hash (the CPU twin
// is src/dropout.rs, which computes the same bits).
//
// Math, for layer l's output h (T, B, H) as layer l+1 reads it, in training step s (the number of
// updates before it, counter[0]), b counted from the batch's first stream b₀ = counter[1] (0 but
// for a data-parallel share):
//   m[t, b, j] = 1 / (1 − p) if u(seed, s, l, t, b, j) ≥ p, else 0
//   u = (h >> 8) / 2^24,  h = lowbias32(seed_lo), then h = lowbias32(h ^ x) for x in
//       (seed_hi, s, l, t, b, j)
//   forward:   dst[dst_offset + i] = src[src_offset + i] · m       (x of layer l+1 = m ⊙ h_t)
//   backward:  dst[dst_offset + i] *= m                            (∂L/∂h_t of layer l = m ⊙ ∂L/∂x)
// i = (t·B + b)·H + j over all T·B·H; one invocation each.
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:       DropoutParams, uniform (dynamic offset)
//   @binding(1) counter: array<u32>, read        [s, b₀, …]
//   @binding(2) src:     array<f32>, read        (forward only)
//   @binding(3) dst:     array<f32>, read_write

struct DropoutParams {
    rows: u32,
    hidden: u32,
    batch: u32,
    layer: u32,
    seed_lo: u32,
    seed_hi: u32,
    p: f32,
    scale: f32,
    src_offset: u32,
    dst_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: DropoutParams;
@group(0) @binding(1) var<storage, read> counter: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn lowbias32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    return x ^ (x >> 16u);
}

// The mask's factor at element i: 0 or 1 / (1 − p).
fn factor(i: u32) -> f32 {
    let r = i / p.hidden;
    let j = i % p.hidden;
    let t = r / p.batch;
    let b = r % p.batch;
    var h = lowbias32(p.seed_lo);
    h = lowbias32(h ^ p.seed_hi);
    h = lowbias32(h ^ counter[0]);
    h = lowbias32(h ^ p.layer);
    h = lowbias32(h ^ t);
    h = lowbias32(h ^ (counter[1] + b));
    h = lowbias32(h ^ j);
    let u = f32(h >> 8u) / 16777216.0;
    return select(0.0, p.scale, u >= p.p);
}

@compute @workgroup_size(64)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i >= p.rows * p.hidden) {
        return;
    }
    dst[p.dst_offset + i] = src[p.src_offset + i] * factor(i);
}

@compute @workgroup_size(64)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i >= p.rows * p.hidden) {
        return;
    }
    dst[p.dst_offset + i] *= factor(i);
}
