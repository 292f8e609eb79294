// rnn_sequence.wgsl: the whole forward or backward recurrence in one dispatch ("persistent").
//
// Math, as in the per-timestep products of matmul.wgsl:
//   forward_sequence,  t = 0..T-1:   h[t+1, b, j] = tanh(Σ_k h[t, b, k] W^T[k, j] + pre[t, b, j])
//   backward_sequence, t = T-1..0:   dA[t, b, k]  = (Σ_j dA[t+1, b, j] W[j, k] + dh[t, b, k]) ⊙ (1 − h[t+1, b, k]²)
//                                    (the sum left out at t = T-1)
// Batch rows are independent in time, so each workgroup owns `rows_per_group` rows and loops over
// t on its own, keeping the state of its rows in workgroup memory (two halves, read one, write the
// other) with a workgroupBarrier() between timesteps. No workgroup ever waits for another: WGSL has
// no grid-wide barrier, and spinning on one across workgroups may deadlock.
//
// A "quad" is four neighbouring columns of one row, computed together from vec4 loads: the weights
// are a copy with rows padded to H4 = H rounded up to a multiple of 4 (zeros in the padding;
// transpose.wgsl makes it), and the state rows are padded the same way.
//   forward_sequence, backward_sequence: each invocation computes whole quads, the sum over k in
//              order. A software adapter runs a workgroup on one CPU thread, so this is its form.
//   *_split:   `split` invocations share a quad, each summing one contiguous slice of k into
//              `partial`; after a barrier the quad's first invocation adds the slices in order.
//              A hardware GPU runs the lanes in parallel, so a timestep's dependent chain of
//              multiply-adds is `split` times shorter. The host sets split · quads ≤ WG.
// The addend comes last, as in matmul.wgsl. rows_per_group · H4 ≤ 2048.
//
// Bindings (forward | backward):
//   @binding(0) p:   SequenceParams, uniform (dynamic offset)
//   @binding(1) src: array<f32>, read               pre (T, B, H)   | dh (T, B, H)
//   @binding(2) w:   array<vec4<f32>>, read         W^T (H4, H4)    | W (H4, H4)
//   @binding(3) aux: array<f32>, read               (unused)        | hs (T+1, B, H)
//   @binding(4) out: array<f32>, read_write         hs (T+1, B, H)  | dA (T, B, H)
// Workgroup memory: 32 KiB (the state's two halves, and one partial sum per invocation).

struct SequenceParams {
    batch: u32,
    hidden: u32,
    hidden4: u32,
    steps: u32,
    rows_per_group: u32,
    split: u32,
    _pad0: u32,
    _pad1: u32,
}

// Invocations per workgroup: 256, or 1024 on a hardware GPU.
override WG: u32 = 256u;

// Elements of one half of the state.
const HALF: u32 = 2048u;

@group(0) @binding(0) var<uniform> p: SequenceParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Two halves of HALF elements, as vec4s.
var<workgroup> state: array<vec4<f32>, 1024>;
// One partial sum per invocation (the *_split entry points).
var<workgroup> partial: array<vec4<f32>, 1024>;

// Σ_k state[half][r, k] · w[k, 4q..4q+3] over the k-blocks [k4_begin, k4_end) of row r.
fn row_times_w(half: u32, r: u32, q: u32, k4_begin: u32, k4_end: u32) -> vec4<f32> {
    let q4 = p.hidden4 / 4u;
    let base = (half * HALF + r * p.hidden4) / 4u;
    var acc = vec4<f32>(0.0);
    for (var k4 = k4_begin; k4 < k4_end; k4++) {
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
    for (var e = lid; e < 2u * HALF / 4u; e += WG) {
        state[e] = vec4<f32>(0.0);
    }
    workgroupBarrier();
}

// The product of every quad of the workgroup's rows with the weights, for the state
// half `cur`, each quad's slices summed by `split` invocations; quad i's sum ends in
// partial[i · split]. Returns after a barrier.
fn split_products(lid: u32, cur: u32, quads: u32) {
    let q4 = p.hidden4 / 4u;
    let chunk = (q4 + p.split - 1u) / p.split;
    if (lid < quads * p.split) {
        let quad = lid / p.split;
        let s = lid % p.split;
        let begin = min(q4, s * chunk);
        partial[lid] = row_times_w(cur, quad / q4, quad % q4, begin, min(q4, begin + chunk));
    }
    workgroupBarrier();
    if (lid < quads) {
        var acc = vec4<f32>(0.0);
        for (var s = 0u; s < p.split; s++) {
            acc += partial[lid * p.split + s];
        }
        // Slot lid · split is read by invocation lid alone, which has read it already.
        partial[lid * p.split] = acc;
    }
    workgroupBarrier();
}

// Finishes quad i of the forward step t: h = tanh(a + pre), into the state's other half and hs.
fn forward_quad(t: u32, cur: u32, i: u32, a: vec4<f32>, b0: u32) {
    let nh = p.hidden;
    let q4 = p.hidden4 / 4u;
    let r = i / q4;
    for (var c = 0u; c < 4u; c++) {
        let j = 4u * (i % q4) + c;
        if (j < nh) {
            let e = (t * p.batch + b0 + r) * nh + j;
            let h = tanh(a[c] + src[e]);
            set_state(1u - cur, r, j, h);
            out[e + p.batch * nh] = h;
        }
    }
}

// Finishes quad i of the backward step t: dA = (g + dh) ⊙ (1 − h²), into the state and dA.
fn backward_quad(t: u32, cur: u32, i: u32, g: vec4<f32>, b0: u32) {
    let nh = p.hidden;
    let q4 = p.hidden4 / 4u;
    let r = i / q4;
    for (var c = 0u; c < 4u; c++) {
        let k = 4u * (i % q4) + c;
        if (k < nh) {
            let e = (t * p.batch + b0 + r) * nh + k;
            let h = aux[e + p.batch * nh];
            let d = (g[c] + src[e]) * (1.0 - h * h);
            set_state(1u - cur, r, k, d);
            out[e] = d;
        }
    }
}

// Zeros the state, then copies h_0 of the workgroup's rows into half 0.
fn load_h0(lid: u32, b0: u32, rows: u32) {
    let nh = p.hidden;
    clear_state(lid);
    for (var idx = lid; idx < rows * nh; idx += WG) {
        set_state(0u, idx / nh, idx % nh, out[b0 * nh + idx]);
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn forward_sequence(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q4 = p.hidden4 / 4u;
    let b0 = wid.x * p.rows_per_group;
    let quads = min(p.rows_per_group, p.batch - b0) * q4;
    load_h0(lid, b0, quads / q4);
    for (var t = 0u; t < p.steps; t++) {
        let cur = t % 2u;
        for (var i = lid; i < quads; i += WG) {
            forward_quad(t, cur, i, row_times_w(cur, i / q4, i % q4, 0u, q4), b0);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn forward_sequence_split(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q4 = p.hidden4 / 4u;
    let b0 = wid.x * p.rows_per_group;
    let quads = min(p.rows_per_group, p.batch - b0) * q4;
    load_h0(lid, b0, quads / q4);
    for (var t = 0u; t < p.steps; t++) {
        let cur = t % 2u;
        split_products(lid, cur, quads);
        if (lid < quads) {
            forward_quad(t, cur, lid, partial[lid * p.split], b0);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn backward_sequence(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q4 = p.hidden4 / 4u;
    let b0 = wid.x * p.rows_per_group;
    let quads = min(p.rows_per_group, p.batch - b0) * q4;
    // dA_{T+1} = 0: the state half read first is all zeros.
    clear_state(lid);
    for (var s = 0u; s < p.steps; s++) {
        let cur = s % 2u;
        for (var i = lid; i < quads; i += WG) {
            backward_quad(p.steps - 1u - s, cur, i, row_times_w(cur, i / q4, i % q4, 0u, q4), b0);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn backward_sequence_split(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let q4 = p.hidden4 / 4u;
    let b0 = wid.x * p.rows_per_group;
    let quads = min(p.rows_per_group, p.batch - b0) * q4;
    clear_state(lid);
    for (var s = 0u; s < p.steps; s++) {
        let cur = s % 2u;
        split_products(lid, cur, quads);
        if (lid < quads) {
            backward_quad(p.steps - 1u - s, cur, lid, partial[lid * p.split], b0);
        }
        workgroupBarrier();
    }
}
