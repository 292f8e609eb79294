// loss.wgsl: the per-position loss and its gradient with respect to the outputs y.
//
// Over the N rows of y (N, O) (T·B positions, or B sequences for a sequence head), each with its
// weight w[r] in the mean loss (1/n for the n rows that count: per position 1/Σ n_b at a valid
// step and 0 at padding; per sequence 1/B), and 1/n itself at w[N]:
//   softmax_xent:  loss[r] = log Σ_o exp(y[r, o]) − y[r, target[r]]       (0 where w[r] = 0)
//                  dy[r, o] = (softmax(y[r])[o] − [o = target[r]]) · w[r]
//   squared_error: loss[r] = ½ Σ_o (y[r, o] − target[r, o])²              (0 where w[r] = 0)
//                  dy[r, o] = (y[r, o] − target[r, o]) · w[r]
//   mean_loss:     stats[0] = w[N] · Σ_r loss[r], once reduce.wgsl has summed the rows in a
//                  fixed order into stats[0] (bound where row_loss is)
// The softmax subtracts the row's maximum first, so exp never overflows.
//
// Two forms of each, with the same bindings and results:
//   softmax_xent, squared_error:           one invocation per row, walking its O classes (small O);
//   softmax_xent_wide, squared_error_wide: one 256-wide workgroup per row, each invocation taking
//                                          every 256th class, the lanes' partial results combined
//                                          by a fixed tree. For large O: it keeps one invocation's
//                                          loops short (LOOP_BUDGET in src/gpu/step.rs) and gives a
//                                          long row many invocations. Rows past 65,535 use the
//                                          grid's second dimension.
//
// linear_index is shaders/grid.wgsl's, prepended to this file.
//
// Bindings:
//   @binding(0) p:             LossParams, uniform (dynamic offset)
//   @binding(1) y:             array<f32>, read        (N, O)
//   @binding(2) token_targets: array<u32>, read        (N)     softmax_xent only
//   @binding(3) dense_targets: array<f32>, read        (N, O)  squared_error only
//   @binding(4) dy:            array<f32>, read_write  (N, O)
//   @binding(5) row_loss:      array<f32>, read_write  (N)
//   @binding(6) weight:        array<f32>, read        (N + 1)

struct LossParams {
    rows: u32,
    classes: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> token_targets: array<u32>;
@group(0) @binding(3) var<storage, read> dense_targets: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read> weight: array<f32>;

@compute @workgroup_size(64)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_index(gid, groups);
    if (r >= p.rows) {
        return;
    }
    let row = r * p.classes;
    var m = y[row];
    for (var o = 1u; o < p.classes; o++) {
        m = max(m, y[row + o]);
    }
    var sum = 0.0;
    for (var o = 0u; o < p.classes; o++) {
        sum += exp(y[row + o] - m);
    }
    let label = token_targets[r];
    let w = weight[r];
    let inv = w / sum;
    for (var o = 0u; o < p.classes; o++) {
        dy[row + o] = exp(y[row + o] - m) * inv;
    }
    dy[row + label] -= w;
    row_loss[r] = select(0.0, m + log(sum) - y[row + label], w != 0.0);
}

@compute @workgroup_size(64)
fn squared_error(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_index(gid, groups);
    if (r >= p.rows) {
        return;
    }
    let row = r * p.classes;
    let w = weight[r];
    var l = 0.0;
    for (var o = 0u; o < p.classes; o++) {
        let e = y[row + o] - dense_targets[row + o];
        l += 0.5 * e * e;
        dy[row + o] = e * w;
    }
    row_loss[r] = select(0.0, l, w != 0.0);
}

// ---- one workgroup per row ----

const LANES: u32 = 256u;

var<workgroup> lanes: array<f32, 256>;

// The workgroup's row: workgroups are laid out as a 2-D grid, row = y · (groups along x) + x.
fn row_of(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.y * groups.x + wid.x;
}

// Combines the 256 lanes' values pairwise, in a fixed order, by max (`take_max`) or by sum; every
// lane gets the result.
fn combine(lid: u32, value: f32, take_max: bool) -> f32 {
    lanes[lid] = value;
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width >>= 1u) {
        if (lid < width) {
            if (take_max) {
                lanes[lid] = max(lanes[lid], lanes[lid + width]);
            } else {
                lanes[lid] += lanes[lid + width];
            }
        }
        workgroupBarrier();
    }
    let result = lanes[0];
    workgroupBarrier();
    return result;
}

@compute @workgroup_size(256)
fn softmax_xent_wide(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = row_of(wid, groups);
    if (r >= p.rows) {
        return;
    }
    let row = r * p.classes;
    var m = y[row];
    for (var o = lid; o < p.classes; o += LANES) {
        m = max(m, y[row + o]);
    }
    m = combine(lid, m, true);
    var sum = 0.0;
    for (var o = lid; o < p.classes; o += LANES) {
        sum += exp(y[row + o] - m);
    }
    sum = combine(lid, sum, false);
    let label = token_targets[r];
    let w = weight[r];
    let inv = w / sum;
    for (var o = lid; o < p.classes; o += LANES) {
        var d = exp(y[row + o] - m) * inv;
        if (o == label) {
            d -= w;
        }
        dy[row + o] = d;
    }
    if (lid == 0u) {
        row_loss[r] = select(0.0, m + log(sum) - y[row + label], w != 0.0);
    }
}

@compute @workgroup_size(256)
fn squared_error_wide(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = row_of(wid, groups);
    if (r >= p.rows) {
        return;
    }
    let row = r * p.classes;
    let w = weight[r];
    var l = 0.0;
    for (var o = lid; o < p.classes; o += LANES) {
        let e = y[row + o] - dense_targets[row + o];
        l += 0.5 * e * e;
        dy[row + o] = e * w;
    }
    l = combine(lid, l, false);
    if (lid == 0u) {
        row_loss[r] = select(0.0, l, w != 0.0);
    }
}

// The mean: the summed losses (in row_loss[0]: stats bound there) times 1/n.
@compute @workgroup_size(1)
fn mean_loss() {
    row_loss[0] *= weight[p.rows];
}
