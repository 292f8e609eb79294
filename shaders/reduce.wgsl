// reduce.wgsl: column sums in a fixed order (no atomics, the same bits on every run).
//
// Math, for a row-major matrix m (R, C):
//   out[out_offset + j] = scale · Σ_{r = 0..R} m[r, j]
// Uses: dc = Σ_r dy (scale 1), db = Σ_r dA (scale 1), the mean loss = Σ_r loss[r] / N (C = 1,
// scale 1/N), and the in-order sum of split weight gradients. One invocation per column, walking
// the rows in order; neighbouring invocations read neighbouring columns.
//
// Rows in chunks: one dispatch sums rows [row_begin, row_end) only. The host runs the chunks of a
// long sum as consecutive dispatches: every chunk but the first starts from the partial sum that
// the one before it stored (`first` = 0), and only the last multiplies by the scale (`last` = 1),
// so the sum runs in the same order as in one dispatch. This bounds the loop iterations of one
// invocation (LOOP_BUDGET in src/gpu/step.rs).
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:   ReduceParams, uniform (dynamic offset)
//   @binding(1) m:   array<f32>, read        (R, C)
//   @binding(2) out: array<f32>, read_write

struct ReduceParams {
    row_begin: u32,
    row_end: u32,
    cols: u32,
    out_offset: u32,
    scale: f32,
    first: u32,
    last: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn column_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = linear_index(gid, groups);
    if (j >= p.cols) {
        return;
    }
    var acc = 0.0;
    if (p.first == 0u) {
        acc = out[p.out_offset + j];
    }
    for (var r = p.row_begin; r < p.row_end; r++) {
        acc += m[r * p.cols + j];
    }
    if (p.last != 0u) {
        acc *= p.scale;
    }
    out[p.out_offset + j] = acc;
}
