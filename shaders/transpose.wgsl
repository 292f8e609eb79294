// transpose.wgsl: copies of the weight matrices laid out for the kernels that read them.
//
// Math, for a (rows, cols) matrix at src[in_offset..], with out_stride ≥ the copy's row length:
//   TRANSPOSE set:   out[out_offset + j * out_stride + i] = src[in_offset + i * cols + j]   (W^T, V^T)
//   TRANSPOSE clear: out[out_offset + i * out_stride + j] = src[in_offset + i * cols + j]   (a padded W)
// The per-timestep product h_{t-1} W^T reads W^T row by row, the output projection hs V^T reads
// V^T, and the persistent recurrences read W^T and W with rows padded to a multiple of 4 for vec4
// loads (the padding is never written, so it stays zero). Made once per step, before the forward
// pass. One invocation per element of the source.
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:   TransposeParams, uniform (dynamic offset)
//   @binding(1) src: array<f32>, read        (rows, cols) at in_offset
//   @binding(2) out: array<f32>, read_write

struct TransposeParams {
    rows: u32,
    cols: u32,
    in_offset: u32,
    out_offset: u32,
    out_stride: u32,
    transpose: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: TransposeParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = linear_index(gid, groups);
    if (idx >= p.rows * p.cols) {
        return;
    }
    if (p.transpose != 0u) {
        // Walk the output in order, so that neighbouring invocations write neighbouring elements.
        let j = idx / p.rows;
        let i = idx % p.rows;
        out[p.out_offset + j * p.out_stride + i] = src[p.in_offset + i * p.cols + j];
    } else {
        let i = idx / p.cols;
        let j = idx % p.cols;
        out[p.out_offset + i * p.out_stride + j] = src[p.in_offset + idx];
    }
}
