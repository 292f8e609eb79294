// cell_rnn.wgsl: the Elman cell's pointwise step (cell.wgsl is prepended; see it for the
// bindings and the products around this step). G = 1, nothing saved but h_t.
//
//   forward:   h_t = act(a_t + r_t)          act = tanh, or relu where RELU = 1
//              reads a, writes hs[next]
//   backward:  da_t = dr_t = (∂L/∂h_t) ⊙ act'(h_t)   (1 − h_t² for tanh; [h_t > 0] for relu)
//              reads dh, hs[next]; writes a (da) and r (dr)

const GATES: u32 = 1u;
const CELL_STATE: bool = false;
override RELU: u32 = 0u;

fn cell_forward(u: Unit, s: Step, rg: vec4<f32>) {
    let x = a[s.a + u.i] + rg.x;
    var h: f32;
    if (RELU != 0u) {
        h = max(x, 0.0);
    } else {
        h = tanh_f32(x);
    }
    set_h(s.next + u.i, h);
}

fn cell_backward(u: Unit, s: Step, through: f32) {
    let h = h_at(s.next + u.i);
    var slope: f32;
    if (RELU != 0u) {
        slope = select(0.0, 1.0, h > 0.0);
    } else {
        slope = 1.0 - h * h;
    }
    let d = incoming(u, s, through) * slope;
    a[s.a + u.i] = d;
    set_r(s.row + u.i, d);
}
