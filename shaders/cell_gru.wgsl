// cell_gru.wgsl: the GRU's pointwise step, gates r, z, n (cell.wgsl is prepended; see it for
// the bindings and the products around this step). G = 3; saved per unit: r, z, n and
// q = W_n h_{t-1} + b_hn (S = 4).
//
//   forward:   r = σ(a_r + r_r)   z = σ(a_z + r_z)   n = tanh(a_n + r ⊙ q)   (q = r_n)
//              h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
//              reads a, hs[prev]; writes hs[next], saved
//   backward:  g = ∂L/∂h_t (from above, through W, and z ⊙ g of t+1 around W)
//              dn = g (1 − z) (1 − n²)    dz = g (h_{t-1} − n) z (1 − z)    dr = dn q r (1 − r)
//              da = (dr, dz, dn)    dr_t = (dr, dz, dn ⊙ r)    d_direct = z ⊙ g
//              reads dh, d_direct, hs[prev], saved; writes a (da), r (dr_t), d_direct

const GATES: u32 = 3u;
const CELL_STATE: bool = false;

fn cell_forward(u: Unit, s: Step, rt: vec4<f32>) {
    let rg = sigmoid(a[s.a + gate(u, 3u, 0u)] + rt.x);
    let z = sigmoid(a[s.a + gate(u, 3u, 1u)] + rt.y);
    let q = rt.z;
    let n = tanh_f32(a[s.a + gate(u, 3u, 2u)] + rg * q);
    set_h(s.next + u.i, (1.0 - z) * n + z * h_at(s.prev + u.i));
    saved[s.saved + gate(u, 4u, 0u)] = rg;
    saved[s.saved + gate(u, 4u, 1u)] = z;
    saved[s.saved + gate(u, 4u, 2u)] = n;
    saved[s.saved + gate(u, 4u, 3u)] = q;
}

fn cell_backward(u: Unit, s: Step, through: f32) {
    let rg = saved[s.saved + gate(u, 4u, 0u)];
    let z = saved[s.saved + gate(u, 4u, 1u)];
    let n = saved[s.saved + gate(u, 4u, 2u)];
    let q = saved[s.saved + gate(u, 4u, 3u)];
    let g = incoming(u, s, through) + direct(u, s);
    let dn = g * (1.0 - z) * (1.0 - n * n);
    let dz = g * (h_at(s.prev + u.i) - n) * z * (1.0 - z);
    let dr = dn * q * rg * (1.0 - rg);
    a[s.a + gate(u, 3u, 0u)] = dr;
    a[s.a + gate(u, 3u, 1u)] = dz;
    a[s.a + gate(u, 3u, 2u)] = dn;
    set_r(s.row + gate(u, 3u, 0u), dr);
    set_r(s.row + gate(u, 3u, 1u), dz);
    set_r(s.row + gate(u, 3u, 2u), dn * rg);
    set_direct(u, z * g);
}
