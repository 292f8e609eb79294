// reduce.wgsl: column sums in a fixed order (no atomics, the same bits on every run).
//
// Math, for a row-major matrix m (R, C):
//   out[out_offset + j] = scale · Σ_{r = 0..R} m[r, j]
// Uses: dc = Σ_r dy (scale 1), db = Σ_r dA (scale 1), and the mean loss = Σ_r loss[r] / N
// (C = 1, scale 1/N). One invocation per column, walking the rows in order; neighbouring
// invocations read neighbouring columns.
//
// Bindings:
//   @binding(0) p:   ReduceParams, uniform (dynamic offset)
//   @binding(1) m:   array<f32>, read        (R, C)
//   @binding(2) out: array<f32>, read_write

struct ReduceParams {
    rows: u32,
    cols: u32,
    out_offset: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// The invocation's index in a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (a grid dimension holds at most 65,535 workgroups).
fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 64u + gid.x;
}

@compute @workgroup_size(64)
fn column_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = linear_index(gid, groups);
    if (j >= p.cols) {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        acc += m[r * p.cols + j];
    }
    out[p.out_offset + j] = acc * p.scale;
}
