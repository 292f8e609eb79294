// cell_gru.wgsl: the GRU's pointwise step, gates r, z, n (cell.wgsl is prepended; see it for
// the bindings and the products around this step). G = 3; saved per unit: r, z, n and
// q = W_n h_{t-1} + b_hn (S = 4).
//
//   forward:   r = σ(a_r + r_r)   z = σ(a_z + r_z)   n = tanh(a_n + r ⊙ q)   (q = r_n)
//              h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
//              reads a, r, hs[prev]; writes hs[next], saved
//   backward:  g = ∂L/∂h_t (from above, through W, and z ⊙ g of t+1 around W)
//              dn = g (1 − z) (1 − n²)    dz = g (h_{t-1} − n) z (1 − z)    dr = dn q r (1 − r)
//              da = (dr, dz, dn)    dr_t = (dr, dz, dn ⊙ r)    d_direct = z ⊙ g
//              reads dh, dh_next, d_direct, hs[prev], saved; writes a (da), r (dr_t), d_direct

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = unit(gid, groups);
    if (u.i >= p.batch * p.hidden) {
        return;
    }
    let rg = sigmoid(a[p.row + gate(u, 3u, 0u)] + r[p.row + gate(u, 3u, 0u)]);
    let z = sigmoid(a[p.row + gate(u, 3u, 1u)] + r[p.row + gate(u, 3u, 1u)]);
    let q = r[p.row + gate(u, 3u, 2u)];
    let n = tanh(a[p.row + gate(u, 3u, 2u)] + rg * q);
    hs[p.next + u.i] = (1.0 - z) * n + z * hs[p.prev + u.i];
    saved[p.saved + gate(u, 4u, 0u)] = rg;
    saved[p.saved + gate(u, 4u, 1u)] = z;
    saved[p.saved + gate(u, 4u, 2u)] = n;
    saved[p.saved + gate(u, 4u, 3u)] = q;
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let u = unit(gid, groups);
    if (u.i >= p.batch * p.hidden) {
        return;
    }
    let rg = saved[p.saved + gate(u, 4u, 0u)];
    let z = saved[p.saved + gate(u, 4u, 1u)];
    let n = saved[p.saved + gate(u, 4u, 2u)];
    let q = saved[p.saved + gate(u, 4u, 3u)];
    let g = incoming(u) + direct(u);
    let dn = g * (1.0 - z) * (1.0 - n * n);
    let dz = g * (hs[p.prev + u.i] - n) * z * (1.0 - z);
    let dr = dn * q * rg * (1.0 - rg);
    a[p.row + gate(u, 3u, 0u)] = dr;
    a[p.row + gate(u, 3u, 1u)] = dz;
    a[p.row + gate(u, 3u, 2u)] = dn;
    r[p.row + gate(u, 3u, 0u)] = dr;
    r[p.row + gate(u, 3u, 1u)] = dz;
    r[p.row + gate(u, 3u, 2u)] = dn * rg;
    d_direct[u.i] = z * g;
}
