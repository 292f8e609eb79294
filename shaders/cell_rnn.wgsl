// cell_rnn.wgsl: the Elman cell's pointwise step (cell.wgsl is prepended; see it for the
// bindings and the products around this step). G = 1, nothing saved but h_t.
//
//   forward:   h_t = act(a_t + r_t)          act = tanh, or relu where RELU = 1
//              reads a, r, writes hs[next]
//   backward:  da_t = dr_t = (∂L/∂h_t) ⊙ act'(h_t)   (1 − h_t² for tanh; [h_t > 0] for relu)
//              reads dh, dh_next, hs[next]; writes a (da) and r (dr)

override RELU: u32 = 0u;

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = unit(gid, groups);
    if (u.i >= p.batch * p.hidden) {
        return;
    }
    let s = a[p.row + u.i] + r[p.row + u.i];
    var h: f32;
    if (RELU != 0u) {
        h = max(s, 0.0);
    } else {
        h = tanh(s);
    }
    hs[p.next + u.i] = h;
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = unit(gid, groups);
    if (u.i >= p.batch * p.hidden) {
        return;
    }
    let h = hs[p.next + u.i];
    var slope: f32;
    if (RELU != 0u) {
        slope = select(0.0, 1.0, h > 0.0);
    } else {
        slope = 1.0 - h * h;
    }
    let d = incoming(u) * slope;
    a[p.row + u.i] = d;
    r[p.row + u.i] = d;
}
