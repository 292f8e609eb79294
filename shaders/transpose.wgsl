// transpose.wgsl: out = in^T, for the weights read along their columns.
//
// Math: out[out_offset + j * rows + i] = src[in_offset + i * cols + j]   for a (rows, cols) matrix.
// The per-timestep forward product h_{t-1} W^T reads W^T row by row, and the output projection
// hs V^T reads V^T: with the transposes made once per step, neighbouring invocations of matmul.wgsl
// read neighbouring addresses. One invocation per element of out, so that the writes are contiguous.
//
// Bindings:
//   @binding(0) p:   TransposeParams, uniform (dynamic offset)
//   @binding(1) src: array<f32>, read        (rows, cols) at in_offset
//   @binding(2) out: array<f32>, read_write  (cols, rows) at out_offset

struct TransposeParams {
    rows: u32,
    cols: u32,
    in_offset: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<uniform> p: TransposeParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// The invocation's index in a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (a grid dimension holds at most 65,535 workgroups).
fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 64u + gid.x;
}

@compute @workgroup_size(64)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = linear_index(gid, groups);
    if (idx >= p.rows * p.cols) {
        return;
    }
    let j = idx / p.rows;
    let i = idx % p.rows;
    out[p.out_offset + idx] = src[p.in_offset + i * p.cols + j];
}
