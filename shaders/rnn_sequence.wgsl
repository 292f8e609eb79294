// rnn_sequence.wgsl: the whole forward or backward recurrence in one dispatch ("persistent").
//
// Math, as in the per-timestep products of matmul.wgsl:
//   forward_sequence,  t = 0..T-1:   h[t+1, b, j] = tanh(Σ_k h[t, b, k] W^T[k, j] + pre[t, b, j])
//   backward_sequence, t = T-1..0:   dA[t, b, k]  = (Σ_j dA[t+1, b, j] W[j, k] + dh[t, b, k]) ⊙ (1 − h[t+1, b, k]²)
//                                    (the sum left out at t = T-1)
// (tanh is activation.wgsl's tanh_f32, prepended to this file: accurate where the builtin is not.)
// Batch rows are independent in time, so each workgroup owns `rows_per_group` rows and loops over
// t on its own, keeping the state of its rows in workgroup memory (two halves, read one, write the
// other) with a workgroupBarrier() between timesteps. No workgroup ever waits for another: WGSL has
// no grid-wide barrier, and spinning on one across workgroups may deadlock.
//
// Each invocation computes four neighbouring columns of a row, reading the state and the weights
// as vec4s: the weights are a copy with rows padded to H4 = H rounded up to a multiple of 4
// (zeros in the padding; transpose.wgsl makes it), and the state rows are padded the same way.
// The sums run over k (j) in order and the addend comes last, as in matmul.wgsl.
// rows_per_group · H4 ≤ 2048.
//
// Time in chunks: one dispatch runs timesteps [t_begin, t_end) only (forward in increasing t,
// backward in decreasing t), starting from the state the chunk before it left in `out`
// (h_{t_begin}, or dA_{t_end} when t_end < T). The host runs the chunks as consecutive dispatches,
// so that one invocation's loops stay under LOOP_BUDGET (src/gpu/step.rs); the arithmetic is the
// same as in one dispatch. Workgroups form a 2-D grid (group = y · (groups along x) + x) when the
// batch needs more than 65,535 of them.
//
// Bindings (forward | backward):
//   @binding(0) p:   SequenceParams, uniform (dynamic offset)
//   @binding(1) src: array<f32>, read               pre (T, B, H)   | dh (T, B, H)
//   @binding(2) w:   array<vec4<f32>>, read         W^T (H, H4)     | W (H, H4)
//   @binding(3) aux: array<f32>, read               (unused)        | hs (T+1, B, H)
//   @binding(4) out: array<f32>, read_write         hs (T+1, B, H)  | dA (T, B, H)

struct SequenceParams {
    batch: u32,
    hidden: u32,
    hidden4: u32,
    steps: u32,
    rows_per_group: u32,
    t_begin: u32,
    t_end: u32,
    _pad0: u32,
}

// Elements of one half of the state.
const HALF: u32 = 2048u;

@group(0) @binding(0) var<uniform> p: SequenceParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Two halves of HALF elements, as vec4s.
var<workgroup> state: array<vec4<f32>, 1024>;

// Σ_k state[half][r, k] · w[k, 4q..4q+3] over the padded row r of the state.
fn row_times_w(half: u32, r: u32, q: u32) -> vec4<f32> {
    let q4 = p.hidden4 / 4u;
    let base = (half * HALF + r * p.hidden4) / 4u;
    var acc = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < q4; k4++) {
        let s = state[base + k4];
        let k = 4u * k4;
        acc += s.x * w[k * q4 + q];
        acc += s.y * w[(k + 1u) * q4 + q];
        acc += s.z * w[(k + 2u) * q4 + q];
        acc += s.w * w[(k + 3u) * q4 + q];
    }
    return acc;
}

// Writes element (r, j) of a padded state half.
fn set_state(half: u32, r: u32, j: u32, v: f32) {
    let e = half * HALF + r * p.hidden4 + j;
    state[e / 4u][e % 4u] = v;
}

// Zeros both halves of the state, padding included; ends with a barrier.
fn clear_state(lid: u32) {
    for (var e = lid; e < 2u * HALF / 4u; e += 256u) {
        state[e] = vec4<f32>(0.0);
    }
    workgroupBarrier();
}

// The first batch row of this workgroup (may be past B: the workgroup then has nothing to do).
fn first_row(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return (wid.y * groups.x + wid.x) * p.rows_per_group;
}

// Reads `rows` rows of H from out[at..] into state half 0 (the padding stays zero); ends with a
// barrier.
fn load_state(lid: u32, rows: u32, at: u32) {
    let nh = p.hidden;
    for (var idx = lid; idx < rows * nh; idx += 256u) {
        set_state(0u, idx / nh, idx % nh, out[at + idx]);
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn forward_sequence(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let nh = p.hidden;
    let b0 = first_row(wid, groups);
    if (b0 >= p.batch) {
        return;
    }
    let rows = min(p.rows_per_group, p.batch - b0);
    let quads = rows * (p.hidden4 / 4u);
    let row_block = b0 * nh;
    let step = p.batch * nh;
    // Zeros in the padding of both halves, then h_{t_begin} into half 0.
    clear_state(lid);
    load_state(lid, rows, p.t_begin * step + row_block);
    for (var t = p.t_begin; t < p.t_end; t++) {
        let cur = (t - p.t_begin) % 2u;
        for (var idx = lid; idx < quads; idx += 256u) {
            let r = idx / (p.hidden4 / 4u);
            let q = idx % (p.hidden4 / 4u);
            let a = row_times_w(cur, r, q);
            for (var c = 0u; c < 4u; c++) {
                let j = 4u * q + c;
                if (j < nh) {
                    let e = t * step + row_block + r * nh + j;
                    let h = tanh_f32(a[c] + src[e]);
                    set_state(1u - cur, r, j, h);
                    out[e + step] = h;
                }
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn backward_sequence(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let nh = p.hidden;
    let b0 = first_row(wid, groups);
    if (b0 >= p.batch) {
        return;
    }
    let rows = min(p.rows_per_group, p.batch - b0);
    let quads = rows * (p.hidden4 / 4u);
    let row_block = b0 * nh;
    let step = p.batch * nh;
    // dA_{T+1} = 0: the state half read first is all zeros, unless an earlier chunk left dA_{t_end}.
    clear_state(lid);
    if (p.t_end < p.steps) {
        load_state(lid, rows, p.t_end * step + row_block);
    }
    for (var s = 0u; s < p.t_end - p.t_begin; s++) {
        let t = p.t_end - 1u - s;
        let cur = s % 2u;
        for (var idx = lid; idx < quads; idx += 256u) {
            let r = idx / (p.hidden4 / 4u);
            let q = idx % (p.hidden4 / 4u);
            let g = row_times_w(cur, r, q);
            for (var c = 0u; c < 4u; c++) {
                let k = 4u * q + c;
                if (k < nh) {
                    let e = t * step + row_block + r * nh + k;
                    let h = aux[e + step];
                    let d = (g[c] + src[e]) * (1.0 - h * h);
                    set_state(1u - cur, r, k, d);
                    out[e] = d;
                }
            }
        }
        workgroupBarrier();
    }
}
