// cell_lstm.wgsl: the LSTM's pointwise step, gates i, f, g, o (cell.wgsl is prepended; see it
// for the bindings and the products around this step). G = 4; saved per unit: i, f, g, o (S = 4);
// c_t in cs.
//
//   forward:   i, f, g, o = σ, σ, tanh, σ of (a + r), gate by gate
//              c_t = f ⊙ c_{t-1} + i ⊙ g    h_t = o ⊙ tanh(c_t)
//              reads a, cs[prev]; writes cs[next], hs[next], saved
//   backward:  gh = ∂L/∂h_t (from above and through W)    gc = f_{t+1} ⊙ ∂L/∂c_{t+1} (d_direct)
//              gc += gh o (1 − tanh²(c_t))
//              da = dr = (gc g i (1 − i), gc c_{t-1} f (1 − f), gc i (1 − g²), gh tanh(c_t) o (1 − o))
//              d_direct = f ⊙ gc (∂L/∂c_{t-1}; into dc0 at t = 1)
//              reads dh, d_direct, cs[prev], cs[next], saved; writes a, r, d_direct (dc0)

const GATES: u32 = 4u;
const CELL_STATE: bool = true;

fn cell_forward(u: Unit, s: Step, rt: vec4<f32>) {
    let ig = sigmoid(a[s.a + gate(u, 4u, 0u)] + rt.x);
    let f = sigmoid(a[s.a + gate(u, 4u, 1u)] + rt.y);
    let g = tanh_f32(a[s.a + gate(u, 4u, 2u)] + rt.z);
    let o = sigmoid(a[s.a + gate(u, 4u, 3u)] + rt.w);
    let c = f * cs[s.prev + u.i] + ig * g;
    cs[s.next + u.i] = c;
    set_h(s.next + u.i, o * tanh_f32(c));
    saved[s.saved + gate(u, 4u, 0u)] = ig;
    saved[s.saved + gate(u, 4u, 1u)] = f;
    saved[s.saved + gate(u, 4u, 2u)] = g;
    saved[s.saved + gate(u, 4u, 3u)] = o;
}

fn cell_backward(u: Unit, s: Step, through: f32) {
    let ig = saved[s.saved + gate(u, 4u, 0u)];
    let f = saved[s.saved + gate(u, 4u, 1u)];
    let g = saved[s.saved + gate(u, 4u, 2u)];
    let o = saved[s.saved + gate(u, 4u, 3u)];
    let tc = tanh_f32(cs[s.next + u.i]);
    let gh = incoming(u, s, through);
    let gc = direct(u, s) + gh * o * (1.0 - tc * tc);
    let d = vec4<f32>(
        gc * g * ig * (1.0 - ig),
        gc * cs[s.prev + u.i] * f * (1.0 - f),
        gc * ig * (1.0 - g * g),
        gh * tc * o * (1.0 - o),
    );
    for (var k = 0u; k < 4u; k++) {
        a[s.a + gate(u, 4u, k)] = d[k];
        set_r(s.row + gate(u, 4u, k), d[k]);
    }
    let dc_prev = f * gc;
    set_direct(u, dc_prev);
    if (s.first) {
        d0[p.dc0 + s.state + u.i] = dc_prev;
    }
}
