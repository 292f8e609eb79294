// rnn_sequence.wgsl: the whole forward or backward recurrence in one dispatch ("persistent").
//
// Math, as in the per-timestep products of matmul.wgsl:
//   forward_sequence,  t = 0..T-1:   h[t+1, b, j] = tanh(pre[t, b, j] + Σ_k h[t, b, k] W^T[k, j])
//   backward_sequence, t = T-1..0:   dA[t, b, k]  = (dh[t, b, k] + Σ_j dA[t+1, b, j] W[j, k]) ⊙ (1 − h[t+1, b, k]²)
//                                    (the sum left out at t = T-1)
// Batch rows are independent in time, so each workgroup owns `rows_per_group` rows and loops over
// t on its own, keeping the state of its rows in workgroup memory (two halves, read one, write the
// other) with a workgroupBarrier() between timesteps. No workgroup ever waits for another: WGSL has
// no grid-wide barrier, and spinning on one across workgroups may deadlock.
// The sums run over k (j) in order and the addend comes last, as in matmul.wgsl.
// rows_per_group · H ≤ 2048.
//
// Bindings (forward | backward):
//   @binding(0) p:   SequenceParams, uniform (dynamic offset)
//   @binding(1) src: array<f32>, read        pre (T, B, H)      | dh (T, B, H)
//   @binding(2) w:   array<f32>, read        W^T (H, H)         | W (H, H) at w_offset
//   @binding(3) aux: array<f32>, read        (unused)           | hs (T+1, B, H)
//   @binding(4) out: array<f32>, read_write  hs (T+1, B, H)     | dA (T, B, H)

struct SequenceParams {
    batch: u32,
    hidden: u32,
    steps: u32,
    rows_per_group: u32,
    w_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const HALF: u32 = 2048u;

@group(0) @binding(0) var<uniform> p: SequenceParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> state: array<f32, 4096>;

@compute @workgroup_size(256)
fn forward_sequence(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let nh = p.hidden;
    let b0 = wid.x * p.rows_per_group;
    let n = min(p.rows_per_group, p.batch - b0) * nh;
    let row_block = b0 * nh;
    let step = p.batch * nh;
    for (var idx = lid; idx < n; idx += 256u) {
        state[idx] = out[row_block + idx];
    }
    workgroupBarrier();
    for (var t = 0u; t < p.steps; t++) {
        let cur = (t % 2u) * HALF;
        let nxt = HALF - cur;
        for (var idx = lid; idx < n; idx += 256u) {
            let r = idx / nh;
            let j = idx % nh;
            var a = 0.0;
            for (var k = 0u; k < nh; k++) {
                a += state[cur + r * nh + k] * w[k * nh + j];
            }
            let h = tanh(a + src[t * step + row_block + idx]);
            state[nxt + idx] = h;
            out[(t + 1u) * step + row_block + idx] = h;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn backward_sequence(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let nh = p.hidden;
    let b0 = wid.x * p.rows_per_group;
    let n = min(p.rows_per_group, p.batch - b0) * nh;
    let row_block = b0 * nh;
    let step = p.batch * nh;
    for (var s = 0u; s < p.steps; s++) {
        let t = p.steps - 1u - s;
        let cur = (s % 2u) * HALF;
        let nxt = HALF - cur;
        for (var idx = lid; idx < n; idx += 256u) {
            let r = idx / nh;
            let k = idx % nh;
            var g = 0.0;
            if (s > 0u) {
                for (var j = 0u; j < nh; j++) {
                    g += state[cur + r * nh + j] * w[p.w_offset + j * nh + k];
                }
            }
            g += src[t * step + row_block + idx];
            let h = aux[(t + 1u) * step + row_block + idx];
            let d = g * (1.0 - h * h);
            state[nxt + idx] = d;
            out[t * step + row_block + idx] = d;
        }
        workgroupBarrier();
    }
}
