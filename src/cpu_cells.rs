//! The CPU twins of the cells' pointwise kernels (`shaders/cell_*.wgsl`): one timestep of a
//! cell forward and backward for one stream, in plain loops, generic over f32 and f64. The layer
//! loop ([`crate::cpu`]) computes a = U x + b_ih and r = W h + b_hh around them.
//!
//! ```text
//! rnn:  h' = act(a + r)
//! gru:  r_g = σ(a_r + r_r)  z = σ(a_z + r_z)  n = tanh(a_n + r_g ⊙ r_n)  h' = (1 − z) ⊙ n + z ⊙ h
//! lstm: i, f, g, o = σ, σ, tanh, σ of (a + r)  c' = f ⊙ c + i ⊙ g  h' = o ⊙ tanh(c')
//! ```

use crate::cell::Cell;
use num_traits::Float;

pub(crate) fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// One cell step: from a = U x + b_ih and r = W h + b_hh, the gates, h' and c'.
pub(crate) fn cell_forward<F: Float>(
    cell: Cell,
    a: &[F],
    r: &[F],
    h: &[F],
    c: &[F],
    out: CellOut<'_, F>,
) {
    let nh = h.len();
    for j in 0..nh {
        match cell {
            Cell::Rnn | Cell::RnnRelu => {
                let s = a[j] + r[j];
                let v = if cell == Cell::Rnn {
                    s.tanh()
                } else {
                    s.max(F::zero())
                };
                out.gates[j] = v;
                out.h[j] = v;
            }
            Cell::Gru => {
                let rg = sigmoid(a[j] + r[j]);
                let z = sigmoid(a[nh + j] + r[nh + j]);
                let n = (a[2 * nh + j] + rg * r[2 * nh + j]).tanh();
                out.gates[j] = rg;
                out.gates[nh + j] = z;
                out.gates[2 * nh + j] = n;
                out.hn[j] = r[2 * nh + j];
                out.h[j] = (F::one() - z) * n + z * h[j];
            }
            Cell::Lstm => {
                let i = sigmoid(a[j] + r[j]);
                let fg = sigmoid(a[nh + j] + r[nh + j]);
                let g = (a[2 * nh + j] + r[2 * nh + j]).tanh();
                let o = sigmoid(a[3 * nh + j] + r[3 * nh + j]);
                let c_new = fg * c[j] + i * g;
                out.gates[j] = i;
                out.gates[nh + j] = fg;
                out.gates[2 * nh + j] = g;
                out.gates[3 * nh + j] = o;
                out.c[j] = c_new;
                out.h[j] = o * c_new.tanh();
            }
        }
    }
}

/// Where one cell step writes.
pub(crate) struct CellOut<'a, F> {
    pub(crate) gates: &'a mut [F],
    pub(crate) hn: &'a mut [F],
    pub(crate) h: &'a mut [F],
    pub(crate) c: &'a mut [F],
}

/// The gradients at one cell step: da, dr (G·H each) and the parts of the carry to t-1 that do
/// not go through W (a GRU's z path into dh_prev, an LSTM's dc_prev).
pub(crate) struct CellGrad<'a, F> {
    pub(crate) da: &'a mut [F],
    pub(crate) dr: &'a mut [F],
    pub(crate) dh_prev: &'a mut [F],
    pub(crate) dc_prev: &'a mut [F],
}

/// What the forward pass kept of one cell step: the gates after their activations, a GRU's
/// W_n h + b_hn, the step's h and c, and its c'.
pub(crate) struct CellSaved<'a, F> {
    pub(crate) gates: &'a [F],
    pub(crate) hn: &'a [F],
    pub(crate) h: &'a [F],
    pub(crate) c: &'a [F],
    pub(crate) c_new: &'a [F],
}

/// One cell step backward. `dh` is ∂L/∂h', `dc` ∂L/∂c' from t+1 (LSTM).
pub(crate) fn cell_backward<F: Float>(
    cell: Cell,
    (dh, dc): (&[F], &[F]),
    saved: CellSaved<'_, F>,
    out: CellGrad<'_, F>,
) {
    let CellSaved {
        gates,
        hn,
        h,
        c,
        c_new,
    } = saved;
    let nh = dh.len();
    let one = F::one();
    for j in 0..nh {
        match cell {
            Cell::Rnn | Cell::RnnRelu => {
                let v = gates[j];
                let d = if cell == Cell::Rnn {
                    dh[j] * (one - v * v)
                } else if v > F::zero() {
                    dh[j]
                } else {
                    F::zero()
                };
                out.da[j] = d;
                out.dr[j] = d;
            }
            Cell::Gru => {
                let (rg, z, n) = (gates[j], gates[nh + j], gates[2 * nh + j]);
                let dn = dh[j] * (one - z) * (one - n * n);
                let dz = dh[j] * (h[j] - n) * z * (one - z);
                let drg = dn * hn[j] * rg * (one - rg);
                out.da[j] = drg;
                out.da[nh + j] = dz;
                out.da[2 * nh + j] = dn;
                out.dr[j] = drg;
                out.dr[nh + j] = dz;
                out.dr[2 * nh + j] = dn * rg;
                out.dh_prev[j] = dh[j] * z;
            }
            Cell::Lstm => {
                let (i, fg, g, o) = (
                    gates[j],
                    gates[nh + j],
                    gates[2 * nh + j],
                    gates[3 * nh + j],
                );
                let tc = c_new[j].tanh();
                let dcn = dc[j] + dh[j] * o * (one - tc * tc);
                let d = [
                    dcn * g * i * (one - i),
                    dcn * c[j] * fg * (one - fg),
                    dcn * i * (one - g * g),
                    dh[j] * tc * o * (one - o),
                ];
                for (q, dq) in d.into_iter().enumerate() {
                    out.da[q * nh + j] = dq;
                    out.dr[q * nh + j] = dq;
                }
                out.dc_prev[j] = dcn * fg;
            }
        }
    }
}
