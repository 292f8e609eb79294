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
// phase reads them. No workgroup waits for another (WGSL has no grid-wide barrier). The host
// splits T into chunks, consecutive dispatches, so that one invocation's loops stay under
// LOOP_BUDGET (src/gpu/plan.rs); the state between chunks is in hs, cs, dh_next and d_direct.
// rows_per_group · G·H ≤ ROWS. Workgroups form a 2-D grid when the batch needs more than
// 65,535 of them.
//
// Bindings, after cell.wgsl's 0 … 9:
//   @binding(10) wt:     array<f32>, read         W_hh^T (H, wt_stride) at p.wt     (forward)
//   @binding(11) params: array<f32>, read         W_hh (G·H, H) at p.w, b_hh at p.bias
//   @binding(12) dh0:    array<f32>, read_write   (L, B, H) ∂L/∂h_0 of every layer  (backward)

@group(0) @binding(10) var<storage, read> wt: array<f32>;
@group(0) @binding(11) var<storage, read> params: array<f32>;
@group(0) @binding(12) var<storage, read_write> dh0: array<f32>;

// Elements of the rows a workgroup keeps (16 KiB).
const ROWS: u32 = 4096u;

var<workgroup> rows_in: array<f32, ROWS>;

// The first batch row of this workgroup (may be past B: the workgroup then has nothing to do).
fn first_row(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return (wid.y * groups.x + wid.x) * p.rows_per_group;
}

// Copies `n` elements from src_at.. of `which` (0: hs, 1: r) into rows_in; ends with a barrier.
fn load_rows(lid: u32, which: u32, at: u32, n: u32) {
    for (var e = lid; e < n; e += 256u) {
        if (which == 0u) {
            rows_in[e] = hs[at + e];
        } else {
            rows_in[e] = r[at + e];
        }
    }
    workgroupBarrier();
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
    let b0 = first_row(wid, groups);
    if (b0 >= p.batch) {
        return;
    }
    let nh = p.hidden;
    let gh = p.gates * nh;
    let rows = min(p.rows_per_group, p.batch - b0);
    for (var t = p.t_begin; t < p.t_end; t++) {
        let s = step_at(t);
        load_rows(lid, 0u, s.prev + b0 * nh, rows * nh);
        for (var e = lid; e < rows * gh; e += 256u) {
            let row = e / gh;
            let n = e % gh;
            var acc = 0.0;
            for (var k = 0u; k < nh; k++) {
                acc += rows_in[row * nh + k] * wt[p.wt + k * p.wt_stride + n];
            }
            r[s.row + b0 * gh + e] = acc + params[p.bias + n];
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
    let b0 = first_row(wid, groups);
    if (b0 >= p.batch) {
        return;
    }
    let nh = p.hidden;
    let gh = p.gates * nh;
    let rows = min(p.rows_per_group, p.batch - b0);
    for (var i = p.t_end - p.t_begin; i > 0u; i--) {
        let t = p.t_begin + i - 1u;
        let s = step_at(t);
        for (var e = lid; e < rows * nh; e += 256u) {
            cell_backward(unit_at(b0 * nh + e), s);
        }
        phase_barrier();
        load_rows(lid, 1u, s.row + b0 * gh, rows * gh);
        for (var e = lid; e < rows * nh; e += 256u) {
            let row = e / nh;
            let k = e % nh;
            var acc = 0.0;
            for (var n = 0u; n < gh; n++) {
                acc += rows_in[row * gh + n] * params[p.w + n * nh + k];
            }
            let u = b0 * nh + e;
            if (s.first) {
                if (p.direct_to_h != 0u) {
                    acc += d_direct[u];
                }
                dh0[s.state + u] = acc;
            } else {
                dh_next[u] = acc;
            }
        }
        phase_barrier();
    }
}
