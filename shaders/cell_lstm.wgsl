// cell_lstm.wgsl: the LSTM's pointwise step, gates i, f, g, o (cell.wgsl is prepended; see it
// for the bindings and the products around this step). G = 4; saved per unit: i, f, g, o (S = 4);
// c_t in cs.
//
//   forward:   i, f, g, o = σ, σ, tanh, σ of (a + r), gate by gate
//              c_t = f ⊙ c_{t-1} + i ⊙ g    h_t = o ⊙ tanh(c_t)
//              reads a, r, cs[prev]; writes cs[next], hs[next], saved
//   backward:  gh = ∂L/∂h_t (from above and through W)    gc = f_{t+1} ⊙ ∂L/∂c_{t+1} (d_direct)
//              gc += gh o (1 − tanh²(c_t))
//              da = dr = (gc g i (1 − i), gc c_{t-1} f (1 − f), gc i (1 − g²), gh tanh(c_t) o (1 − o))
//              d_direct = f ⊙ gc (∂L/∂c_{t-1}; into dc0 at t = 1)
//              reads dh, dh_next, d_direct, cs[prev], cs[next], saved; writes a, r, d_direct (dc0)

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = unit(gid, groups);
    if (u.i >= p.batch * p.hidden) {
        return;
    }
    let ig = sigmoid(a[p.row + gate(u, 4u, 0u)] + r[p.row + gate(u, 4u, 0u)]);
    let f = sigmoid(a[p.row + gate(u, 4u, 1u)] + r[p.row + gate(u, 4u, 1u)]);
    let g = tanh(a[p.row + gate(u, 4u, 2u)] + r[p.row + gate(u, 4u, 2u)]);
    let o = sigmoid(a[p.row + gate(u, 4u, 3u)] + r[p.row + gate(u, 4u, 3u)]);
    let c = f * cs[p.prev + u.i] + ig * g;
    cs[p.next + u.i] = c;
    hs[p.next + u.i] = o * tanh(c);
    saved[p.saved + gate(u, 4u, 0u)] = ig;
    saved[p.saved + gate(u, 4u, 1u)] = f;
    saved[p.saved + gate(u, 4u, 2u)] = g;
    saved[p.saved + gate(u, 4u, 3u)] = o;
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = unit(gid, groups);
    if (u.i >= p.batch * p.hidden) {
        return;
    }
    let ig = saved[p.saved + gate(u, 4u, 0u)];
    let f = saved[p.saved + gate(u, 4u, 1u)];
    let g = saved[p.saved + gate(u, 4u, 2u)];
    let o = saved[p.saved + gate(u, 4u, 3u)];
    let tc = tanh(cs[p.next + u.i]);
    let gh = incoming(u);
    let gc = direct(u) + gh * o * (1.0 - tc * tc);
    let d = vec4<f32>(
        gc * g * ig * (1.0 - ig),
        gc * cs[p.prev + u.i] * f * (1.0 - f),
        gc * ig * (1.0 - g * g),
        gh * tc * o * (1.0 - o),
    );
    for (var k = 0u; k < 4u; k++) {
        a[p.row + gate(u, 4u, k)] = d[k];
        r[p.row + gate(u, 4u, k)] = d[k];
    }
    let dc_prev = f * gc;
    d_direct[u.i] = dc_prev;
    if (p.first_step != 0u) {
        dc0[p.state + u.i] = dc_prev;
    }
}
