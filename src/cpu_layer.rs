//! One direction of one layer of the CPU reference ([`crate::cpu`]), forward and backward, over
//! a batch whose sequences may each have their own length n_b ≤ T.
//!
//! ```text
//! step s = 0..T of a direction reads time t = s (forward) or t = n_b − 1 − s (reverse);
//! steps s ≥ n_b are padding: the state passes through unchanged (PyTorch's packed sequences).
//! forward:  a = U x_t + b_ih,  r = W h_s + b_hh,  h_{s+1} (and c_{s+1}) = cell(a, r, h_s, c_s)
//! backward, s = T−1..0 (valid steps only):
//!   dh = ∂L/∂out_t (this direction's H columns) + the carry from s+1
//!   dU += da ⊗ x_t,  db_ih += da,  dW += dr ⊗ h_s,  db_hh += dr,  ∂L/∂x_t += U^T da
//!   carry to s−1 = W^T dr (+ dh ⊙ z for a GRU; dc ⊙ f for an LSTM's c)
//! ```

use crate::batch::Batch;
use crate::cpu_cells::{CellGrad, CellOut, CellSaved, cell_backward, cell_forward};
use crate::model::ModelConfig;
use crate::param_table::LayerParams;
use num_traits::Float;

pub(crate) fn f<F: Float>(v: f32) -> F {
    F::from(v).unwrap()
}

/// A layer's input at (t, b): a token id (layer 0 of a token model) or a dense vector.
pub(crate) enum X<'a, F> {
    Token(u32),
    Dense(&'a [F]),
}

/// The accessor of a layer's input x_t of sequence b.
pub(crate) type InputAt<'x, F> = dyn Fn(usize, usize) -> X<'x, F> + 'x;

/// The time step s of a direction reads, or `None` where s is padding for a sequence of n steps.
pub(crate) fn time(direction: usize, s: usize, n: usize) -> Option<usize> {
    (s < n).then(|| if direction == 0 { s } else { n - 1 - s })
}

/// One direction's forward results, indexed by step s, kept for its backward pass.
pub(crate) struct Pass<F> {
    /// h_0 … h_T by step, (T+1, B, H): h_T is the state after each sequence's last step.
    pub(crate) hs: Vec<F>,
    /// c_0 … c_T by step, (T+1, B, H) (LSTM).
    pub(crate) cs: Vec<F>,
    /// The gates after their activations, (T, B, G·H): RNN h'; GRU r, z, n; LSTM i, f, g, o.
    gates: Vec<F>,
    /// GRU: W_n h + b_hn, (T, B, H).
    hn: Vec<F>,
}

/// The model, the direction's parameters and the batch a pass runs over.
pub(crate) struct PassOf<'a, F> {
    pub(crate) config: &'a ModelConfig,
    pub(crate) layer: &'a LayerParams,
    pub(crate) params: &'a [F],
    pub(crate) batch: &'a Batch,
}

/// `out[j] = bias[j] + Σ_k m[j, k] · x[k]` over the rows of m (rows × width).
pub(crate) fn affine<F: Float>(m: &[F], bias: &[F], x: &X<'_, F>, out: &mut [F]) {
    let width = m.len() / bias.len();
    for (j, o) in out.iter_mut().enumerate() {
        let row = &m[j * width..(j + 1) * width];
        *o = bias[j]
            + match x {
                X::Token(tok) => row[*tok as usize],
                X::Dense(v) => row
                    .iter()
                    .zip(v.iter())
                    .fold(F::zero(), |s, (&a, &b)| s + a * b),
            };
    }
}

/// `out[k] += Σ_j m[j, k] · v[j]`: the transposed product that carries a gradient back.
pub(crate) fn add_transposed<F: Float>(m: &[F], v: &[F], out: &mut [F]) {
    let width = out.len();
    for (j, &vj) in v.iter().enumerate() {
        for (o, &mjk) in out.iter_mut().zip(&m[j * width..(j + 1) * width]) {
            *o = *o + mjk * vj;
        }
    }
}

/// `m[j, k] += v[j] · x[k]` (or `m[j, tok] += v[j]` for a token).
pub(crate) fn add_outer<F: Float>(m: &mut [F], v: &[F], x: &X<'_, F>) {
    let width = m.len() / v.len();
    for (j, &vj) in v.iter().enumerate() {
        let row = &mut m[j * width..(j + 1) * width];
        match x {
            X::Token(tok) => row[*tok as usize] = row[*tok as usize] + vj,
            X::Dense(xs) => {
                for (d, &xk) in row.iter_mut().zip(xs.iter()) {
                    *d = *d + vj * xk;
                }
            }
        }
    }
}

pub(crate) fn add<F: Float>(acc: &mut [F], v: &[F]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = *a + x;
    }
}

impl<F: Float> PassOf<'_, F> {
    /// The direction's initial state (h_0 or c_0 of the batch), as (T+1, B, H) by step.
    fn initial(&self, state: &[f32]) -> Vec<F> {
        let (nb, nt, nh) = (self.batch.batch, self.batch.steps, self.config.hidden);
        let mut s = vec![F::zero(); (nt + 1) * nb * nh];
        let first = self.layer.state * nb * nh;
        for (d, &x) in s.iter_mut().zip(state.iter().skip(first).take(nb * nh)) {
            *d = f(x);
        }
        s
    }

    /// The forward pass over all T steps, reading the input through `x_at(t, b)`.
    pub(crate) fn forward(&self, x_at: &InputAt<'_, F>) -> Pass<F> {
        let (nb, nt, nh) = (self.batch.batch, self.batch.steps, self.config.hidden);
        let gh = self.config.cell.gates() * nh;
        let p = self.layer;
        let (u, w) = (p.weight_ih.of(self.params), p.weight_hh.of(self.params));
        let (b_ih, b_hh) = (p.bias_ih.of(self.params), p.bias_hh.of(self.params));
        let mut pass = Pass {
            hs: self.initial(&self.batch.h0),
            cs: self.initial(&self.batch.c0),
            gates: vec![F::zero(); nt * nb * gh],
            hn: vec![F::zero(); nt * nb * nh],
        };
        let (mut a, mut r) = (vec![F::zero(); gh], vec![F::zero(); gh]);
        for s in 0..nt {
            for b in 0..nb {
                let (prev, next) = ((s * nb + b) * nh, ((s + 1) * nb + b) * nh);
                let (h_old, h_new) = pass.hs.split_at_mut(next);
                let (c_old, c_new) = pass.cs.split_at_mut(next);
                let Some(t) = time(p.direction, s, self.batch.length(b)) else {
                    h_new[..nh].copy_from_slice(&h_old[prev..prev + nh]);
                    c_new[..nh].copy_from_slice(&c_old[prev..prev + nh]);
                    continue;
                };
                affine(u, b_ih, &x_at(t, b), &mut a);
                affine(w, b_hh, &X::Dense(&h_old[prev..prev + nh]), &mut r);
                let pos = s * nb + b;
                let out = CellOut {
                    gates: &mut pass.gates[pos * gh..(pos + 1) * gh],
                    hn: &mut pass.hn[pos * nh..(pos + 1) * nh],
                    h: &mut h_new[..nh],
                    c: &mut c_new[..nh],
                };
                let (h, c) = (&h_old[prev..prev + nh], &c_old[prev..prev + nh]);
                cell_forward(self.config.cell, &a, &r, h, c, out);
            }
        }
        pass
    }

    /// Writes the pass's states into its H columns of the layer's output `out` (T, B, D) at
    /// every valid time step.
    pub(crate) fn write_output(&self, pass: &Pass<F>, out: &mut [F]) {
        let (nb, nt, nh) = (self.batch.batch, self.batch.steps, self.config.hidden);
        let (nd, col) = (self.config.features(), self.layer.direction * nh);
        for s in 0..nt {
            for b in 0..nb {
                if let Some(t) = time(self.layer.direction, s, self.batch.length(b)) {
                    let h = &pass.hs[((s + 1) * nb + b) * nh..][..nh];
                    out[(t * nb + b) * nd + col..][..nh].copy_from_slice(h);
                }
            }
        }
    }

    /// The backward pass: accumulates the direction's parameter gradients into `grads` and its
    /// input's gradient into `dx` (T, B, I_k) when given, from `d_out` (T, B, D), ∂L/∂ of the
    /// layer's output; returns ∂L/∂h_0 and ∂L/∂c_0 of the direction, (B, H) each.
    pub(crate) fn backward(
        &self,
        pass: &Pass<F>,
        (d_out, x_at): (&[F], &InputAt<'_, F>),
        grads: &mut [F],
        mut dx: Option<&mut [F]>,
    ) -> (Vec<F>, Vec<F>) {
        let (nb, nt, nh) = (self.batch.batch, self.batch.steps, self.config.hidden);
        let (cell, gh, nd) = (
            self.config.cell,
            self.config.cell.gates() * nh,
            self.config.features(),
        );
        let (p, ni) = (self.layer, self.layer.input());
        let (u, w) = (p.weight_ih.of(self.params), p.weight_hh.of(self.params));
        let (mut dh_next, mut dc_next) = (vec![F::zero(); nb * nh], vec![F::zero(); nb * nh]);
        let (mut da, mut dr) = (vec![F::zero(); gh], vec![F::zero(); gh]);
        let (mut dh_direct, mut dc_prev) = (vec![F::zero(); nh], vec![F::zero(); nh]);
        let (mut du, mut dw) = (vec![F::zero(); gh * ni], vec![F::zero(); gh * nh]);
        let (mut db_ih, mut db_hh) = (vec![F::zero(); gh], vec![F::zero(); gh]);
        for s in (0..nt).rev() {
            for b in 0..nb {
                let Some(t) = time(p.direction, s, self.batch.length(b)) else {
                    continue;
                };
                let pos = s * nb + b;
                let (prev, next) = (pos * nh, ((s + 1) * nb + b) * nh);
                let from_out = &d_out[(t * nb + b) * nd + p.direction * nh..][..nh];
                let dh: Vec<F> = (0..nh).map(|j| from_out[j] + dh_next[b * nh + j]).collect();
                dh_direct.iter_mut().for_each(|v| *v = F::zero());
                let saved = CellSaved {
                    gates: &pass.gates[pos * gh..(pos + 1) * gh],
                    hn: &pass.hn[pos * nh..(pos + 1) * nh],
                    h: &pass.hs[prev..prev + nh],
                    c: &pass.cs[prev..prev + nh],
                    c_new: &pass.cs[next..next + nh],
                };
                let out = CellGrad {
                    da: &mut da,
                    dr: &mut dr,
                    dh_prev: &mut dh_direct,
                    dc_prev: &mut dc_prev,
                };
                cell_backward(cell, (&dh, &dc_next[b * nh..(b + 1) * nh]), saved, out);
                add_outer(&mut du, &da, &x_at(t, b));
                add(&mut db_ih, &da);
                add_outer(&mut dw, &dr, &X::Dense(&pass.hs[prev..prev + nh]));
                add(&mut db_hh, &dr);
                if let Some(dx) = dx.as_deref_mut() {
                    add_transposed(u, &da, &mut dx[(t * nb + b) * ni..][..ni]);
                }
                let carry = &mut dh_next[b * nh..(b + 1) * nh];
                carry.copy_from_slice(&dh_direct);
                add_transposed(w, &dr, carry);
                if cell.has_cell_state() {
                    dc_next[b * nh..(b + 1) * nh].copy_from_slice(&dc_prev);
                }
            }
        }
        for (e, g) in [
            (&p.weight_ih, du),
            (&p.weight_hh, dw),
            (&p.bias_ih, db_ih),
            (&p.bias_hh, db_hh),
        ] {
            add(e.of_mut(grads), &g);
        }
        (dh_next, dc_next)
    }
}
