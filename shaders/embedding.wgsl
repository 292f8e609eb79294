// embedding.wgsl: the one-hot input's projection, as a gather.
//
// With x_t a token id, x_t U^T is column x_t of U, so no matmul is needed:
//   gather:  pre[r, j] = U[j, x[r]] + bias[j]                   r = t·B + b over all T·B rows
// (Its gradient dU = dA^T x is matmul.wgsl with a one-hot B.)
// Shapes: x (T·B) token ids; U (H, I) at u_offset in src; the bias (H) at b_offset in bias (the
// parameters' b_ih, or the Elman step's folded b_ih + b_hh); pre (T·B, H). U and H are any
// weight_ih and its row count (G·H for a gated cell).
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:      EmbeddingParams, uniform (dynamic offset)
//   @binding(1) x:      array<u32>, read        (T·B)
//   @binding(2) src:    array<f32>, read        params (U)
//   @binding(3) bias:   array<f32>, read
//   @binding(4) out:    array<f32>, read_write  pre

struct EmbeddingParams {
    rows: u32,
    hidden: u32,
    input: u32,
    u_offset: u32,
    b_offset: u32,
    out_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: EmbeddingParams;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// One invocation per (r, j), j fastest.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = linear_index(gid, groups);
    if (idx >= p.rows * p.hidden) {
        return;
    }
    let r = idx / p.hidden;
    let j = idx % p.hidden;
    out[p.out_offset + idx] = src[p.u_offset + j * p.input + x[r]] + bias[p.b_offset + j];
}
