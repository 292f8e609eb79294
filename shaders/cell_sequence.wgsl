// cell_sequence.wgsl: the persistent recurrence of any cell. One dispatch runs timesteps
// [t_begin, t_end) of one layer, forward or backward, instead of two dispatches per timestep.
// Appended after cell.wgsl and a cell's file, whose cell_forward and cell_backward it calls.
//
// Math, per timestep, as the per-step kernels and the products around them compute it:
//   forward_sequence,  t = t_begin … t_end−1:
//       r_t = h_t W^T + b_hh       (the sum over k in order, the bias last)
//       cell_forward                (h_{t+1}, c_{t+1}, the saved gates)
//   backward_sequence, t = t_end−1 … t_begin:
//       cell_backward               (da_t, dr_t, d_direct)
//       dh_next = dr_t W            (the sum over G·H in order; at t = 0 into dh0, plus
//                                    d_direct where it reaches h)
// Batch rows are independent in time, so each workgroup owns `rows_per_group` rows and loops
// over t on its own: the rows of h_t (forward) or dr_t (backward) go into workgroup memory, the
// product reads them from there, and storage barriers order each phase's writes before the next
// phase reads them. No workgroup waits for another (WGSL has no grid-wide barrier). Each
// invocation of a product computes four neighbouring columns of a row, reading four elements of
// the row at once from workgroup memory and the weights as vec4s, from copies padded to multiples
// of 4 in both dimensions (zeros in the padding; transpose.wgsl makes them). The host splits T into chunks, consecutive dispatches, so that one invocation's
// loops stay under LOOP_BUDGET on a software adapter (src/gpu/plan.rs); the state between chunks
// is in hs, cs, dh_next and d_direct. rows_per_group · G·H ≤ ROWS. Workgroups form a 2-D grid
// when the batch needs more than 65,535 of them.
//
// Bindings, after cell.wgsl's 0 … 9:
//   @binding(10) wt:     array<vec4<f32>>, read   W_hh^T (H4, G4) at p.wt, W_hh (G4, H4) at p.w
//                                                 (G4, H4: G·H and H rounded up to multiples of 4;
//                                                 zeros in the padding rows and columns)
//   @binding(11) params: array<f32>, read         b_hh at p.bias
//   @binding(12) dh0:    array<f32>, read_write   (L, B, H) ∂L/∂h_0 of every layer  (backward)

@group(0) @binding(10) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> params: array<f32>;
@group(0) @binding(12) var<storage, read_write> dh0: array<f32>;

// Elements of the rows a workgroup keeps (16 KiB), as vec4s: rows padded to H4 or G4.
const ROWS: u32 = 4096u;

var<workgroup> rows_in: array<vec4<f32>, 1024>;

// This workgroup's batch rows: the first and how many (none where the batch ends before it).
fn own_rows(wid: vec3<u32>, groups: vec3<u32>) -> vec2<u32> {
    let b0 = (wid.y * groups.x + wid.x) * p.rows_per_group;
    if (b0 >= p.batch) {
        return vec2<u32>(b0, 0u);
    }
    return vec2<u32>(b0, min(p.rows_per_group, p.batch - b0));
}

// Copies `rows` rows of `width` elements from hs (from_r false) or r (true) at `at` into
// rows_in, each padded with zeros to a multiple of 4; ends with a barrier.
fn load_rows(lid: u32, from_r: bool, at: u32, rows: u32, width: u32) {
    let padded = (width + 3u) / 4u * 4u;
    for (var e = lid; e < rows * padded; e += 256u) {
        let row = e / padded;
        let k = e % padded;
        var v = 0.0;
        if (k < width) {
            if (from_r) {
                v = r[at + row * width + k];
            } else {
                v = hs[at + row * width + k];
            }
        }
        rows_in[e / 4u][e % 4u] = v;
    }
    workgroupBarrier();
}

// Σ_k rows_in[row, k] · w[k, 4q..4q+3] over a row of `len4` vec4s, w at vec4 `base` with rows of
// `quads` vec4s: the sum runs over k in order.
fn row_times(row: u32, len4: u32, base: u32, quads: u32, q: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < len4; k4++) {
        let x = rows_in[row * len4 + k4];
        let w = base + 4u * k4 * quads + q;
        acc += x.x * wt[w];
        acc += x.y * wt[w + quads];
        acc += x.z * wt[w + 2u * quads];
        acc += x.w * wt[w + 3u * quads];
    }
    return acc;
}

// Orders every write of a phase (storage and workgroup memory) before the next phase.
fn phase_barrier() {
    storageBarrier();
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn forward_sequence(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let own = own_rows(wid, groups);
    let b0 = own.x;
    let rows = own.y;
    if (rows == 0u) {
        return;
    }
    let nh = p.hidden;
    let gh = p.gates * nh;
    // W_hh^T is (H4, G4): `quads` vec4s a row.
    let quads = (gh + 3u) / 4u;
    for (var t = p.t_begin; t < p.t_end; t++) {
        let s = step_at(t);
        load_rows(lid, false, s.prev + b0 * nh, rows, nh);
        for (var e = lid; e < rows * quads; e += 256u) {
            let row = e / quads;
            let q = e % quads;
            let acc = row_times(row, (nh + 3u) / 4u, p.wt / 4u, quads, q);
            for (var c = 0u; c < 4u; c++) {
                let n = 4u * q + c;
                if (n < gh) {
                    r[s.row + (b0 + row) * gh + n] = acc[c] + params[p.bias + n];
                }
            }
        }
        phase_barrier();
        for (var e = lid; e < rows * nh; e += 256u) {
            cell_forward(unit_at(b0 * nh + e), s);
        }
        phase_barrier();
    }
}

@compute @workgroup_size(256)
fn backward_sequence(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let own = own_rows(wid, groups);
    let b0 = own.x;
    let rows = own.y;
    if (rows == 0u) {
        return;
    }
    let nh = p.hidden;
    let gh = p.gates * nh;
    // W_hh padded is (G4, H4): `quads` vec4s a row.
    let quads = (nh + 3u) / 4u;
    for (var i = p.t_end - p.t_begin; i > 0u; i--) {
        let t = p.t_begin + i - 1u;
        let s = step_at(t);
        for (var e = lid; e < rows * nh; e += 256u) {
            cell_backward(unit_at(b0 * nh + e), s);
        }
        phase_barrier();
        load_rows(lid, true, s.row + b0 * gh, rows, gh);
        for (var e = lid; e < rows * quads; e += 256u) {
            let row = e / quads;
            let q = e % quads;
            let acc = row_times(row, (gh + 3u) / 4u, p.w / 4u, quads, q);
            for (var c = 0u; c < 4u; c++) {
                let k = 4u * q + c;
                if (k < nh) {
                    let u = (b0 + row) * nh + k;
                    var g = acc[c];
                    if (s.first && p.direct_to_h != 0u) {
                        g += d_direct[u];
                    }
                    if (s.first) {
                        dh0[s.state + u] = g;
                    } else {
                        dh_next[u] = g;
                    }
                }
            }
        }
        phase_barrier();
    }
}
