//! The CPU reference for stacked layers of any [`Cell`](crate::cell::Cell): one training step in plain loops,
//! generic over f32 and f64, following PyTorch's `nn.RNN` / `nn.GRU` / `nn.LSTM` line by line.
//! It shares nothing with the GPU path but the parameter table ([`crate::param_table::ParamTable`]).
//!
//! Dimensions: B batch, T timesteps, I input, H hidden, O output, L layers, G gates.
//!
//! ```text
//! forward, l = 0..L, t = 1..T:  a = U x_t + b_ih,  r = W h_{t-1} + b_hh   (G·H each)
//!                               h_t (and c_t) from a and r by the cell (see crate::cell)
//!                               x_t of layer l+1 = h_t of layer l
//! output:                       y_t = V h_t^(L-1) + c;  loss = mean over the T·B positions
//! backward, l = L-1..0, t = T..1:
//!   dh = ∂L/∂h_t (from y_t, or from layer l+1's input) + the carry from t+1
//!   da, dr = ∂L/∂a, ∂L/∂r by the cell (equal but for a GRU's n gate: dr_n = da_n ⊙ r)
//!   dU += da ⊗ x_t,  db_ih += da,  dW += dr ⊗ h_{t-1},  db_hh += dr
//!   ∂L/∂x_t = U^T da (layer l-1's dh),  carry to t-1 = W^T dr (+ dh ⊙ z for a GRU; dc ⊙ f for an LSTM's c)
//! ```

use crate::cpu_cells::{CellGrad, CellOut, cell_backward, cell_forward};
use crate::dropout::Dropout;
use crate::model::{Batch, InputKind, Inputs, ModelConfig, Params, StepOutput, Targets};
use crate::param_table::ParamTable;
use num_traits::Float;

fn f<F: Float>(v: f32) -> F {
    F::from(v).unwrap()
}

/// One layer's forward results, kept for its backward pass.
struct Layer<F> {
    /// h_0 … h_T, (T+1, B, H).
    hs: Vec<F>,
    /// c_0 … c_T, (T+1, B, H) (LSTM).
    cs: Vec<F>,
    /// The gates after their activations, (T, B, G·H): RNN h'; GRU r, z, n; LSTM i, f, g, o.
    gates: Vec<F>,
    /// GRU: W_n h + b_hn, (T, B, H).
    hn: Vec<F>,
    /// h_1 … h_T as the layer above reads them: after dropout when training with it, (T, B, H).
    out: Vec<F>,
}

/// The layer's input at (t, b): a token id (layer 0 of a token model) or a dense vector.
pub(crate) enum X<'a, F> {
    Token(u32),
    Dense(&'a [F]),
}

/// `out[j] = bias[j] + Σ_k m[j, k] · x[k]` over the rows of m (rows × width).
fn affine<F: Float>(m: &[F], bias: &[F], x: &X<'_, F>, out: &mut [F]) {
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

/// The forward pass of layer `l` over all T, reading its input through `x_at(t, b)`.
fn layer_forward<'x, F: Float + 'x>(
    config: &ModelConfig,
    table: &ParamTable,
    params: &[F],
    l: usize,
    batch: &Batch,
    x_at: &dyn Fn(usize, usize) -> X<'x, F>,
) -> Layer<F> {
    let (nb, nt, nh) = (batch.batch, batch.steps, config.hidden);
    let gh = config.cell.gates() * nh;
    let name = |p: &str| format!("rnn.{p}_l{l}");
    let (u, w) = (
        table.slice(params, &name("weight_ih")),
        table.slice(params, &name("weight_hh")),
    );
    let (b_ih, b_hh) = (
        table.slice(params, &name("bias_ih")),
        table.slice(params, &name("bias_hh")),
    );
    let state = |v: &[f32]| -> Vec<F> {
        let mut s = vec![F::zero(); (nt + 1) * nb * nh];
        for (d, &x) in s.iter_mut().zip(v.iter().skip(l * nb * nh).take(nb * nh)) {
            *d = f(x);
        }
        s
    };
    let mut layer = Layer {
        hs: state(&batch.h0),
        cs: state(&batch.c0),
        gates: vec![F::zero(); nt * nb * gh],
        hn: vec![F::zero(); nt * nb * nh],
        out: vec![],
    };
    let (mut a, mut r) = (vec![F::zero(); gh], vec![F::zero(); gh]);
    for t in 0..nt {
        for b in 0..nb {
            let (prev, next) = ((t * nb + b) * nh, ((t + 1) * nb + b) * nh);
            affine(u, b_ih, &x_at(t, b), &mut a);
            affine(w, b_hh, &X::Dense(&layer.hs[prev..prev + nh]), &mut r);
            let (h_old, h_new) = layer.hs.split_at_mut(next);
            let (c_old, c_new) = layer.cs.split_at_mut(next);
            let pos = t * nb + b;
            cell_forward(
                config.cell,
                &a,
                &r,
                &h_old[prev..prev + nh],
                &c_old[prev..prev + nh],
                CellOut {
                    gates: &mut layer.gates[pos * gh..(pos + 1) * gh],
                    hn: &mut layer.hn[pos * nh..(pos + 1) * nh],
                    h: &mut h_new[..nh],
                    c: &mut c_new[..nh],
                },
            );
        }
    }
    layer
}

/// `out[k] += Σ_j m[j, k] · v[j]`: the transposed product that carries a gradient back.
fn add_transposed<F: Float>(m: &[F], v: &[F], out: &mut [F]) {
    let width = out.len();
    for (j, &vj) in v.iter().enumerate() {
        for (o, &mjk) in out.iter_mut().zip(&m[j * width..(j + 1) * width]) {
            *o = *o + mjk * vj;
        }
    }
}

/// `m[j, k] += v[j] · x[k]` (or `m[j, tok] += v[j]` for a token).
fn add_outer<F: Float>(m: &mut [F], v: &[F], x: &X<'_, F>) {
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

fn add<F: Float>(acc: &mut [F], v: &[F]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = *a + x;
    }
}

/// Layer `l` backward over all T: accumulates its parameters' gradients into `grads`, returns
/// ∂L/∂x_t (T, B, I_l) when `want_dx`, and writes ∂L/∂h_0, ∂L/∂c_0 of the layer.
#[allow(clippy::too_many_arguments)]
fn layer_backward<'x, F: Float + 'x>(
    config: &ModelConfig,
    table: &ParamTable,
    params: &[F],
    grads: &mut [F],
    l: usize,
    layer: &Layer<F>,
    dh_in: &[F],
    x_at: &dyn Fn(usize, usize) -> X<'x, F>,
    want_dx: bool,
    dh0: &mut [F],
    dc0: &mut [F],
) -> Vec<F> {
    let (nb, nh) = (dh0.len() / config.hidden, config.hidden);
    let nt = dh_in.len() / (nb * nh);
    let gh = config.cell.gates() * nh;
    let ni = config.layer_input(l);
    let name = |p: &str| format!("rnn.{p}_l{l}");
    let (u, w) = (
        table.slice(params, &name("weight_ih")),
        table.slice(params, &name("weight_hh")),
    );
    let mut dx = vec![F::zero(); if want_dx { nt * nb * ni } else { 0 }];
    let (mut dh_next, mut dc_next) = (vec![F::zero(); nb * nh], vec![F::zero(); nb * nh]);
    let (mut da, mut dr) = (vec![F::zero(); gh], vec![F::zero(); gh]);
    let (mut dh_direct, mut dc_prev) = (vec![F::zero(); nh], vec![F::zero(); nh]);
    let (mut du, mut dw) = (vec![F::zero(); gh * ni], vec![F::zero(); gh * nh]);
    let (mut db_ih, mut db_hh) = (vec![F::zero(); gh], vec![F::zero(); gh]);
    for t in (0..nt).rev() {
        for b in 0..nb {
            let pos = t * nb + b;
            let (prev, next) = (pos * nh, ((t + 1) * nb + b) * nh);
            let dh: Vec<F> = (0..nh)
                .map(|j| dh_in[pos * nh + j] + dh_next[b * nh + j])
                .collect();
            dh_direct.iter_mut().for_each(|v| *v = F::zero());
            cell_backward(
                config.cell,
                &dh,
                &dc_next[b * nh..(b + 1) * nh],
                &layer.gates[pos * gh..(pos + 1) * gh],
                &layer.hn[pos * nh..(pos + 1) * nh],
                &layer.hs[prev..prev + nh],
                &layer.cs[prev..prev + nh],
                &layer.cs[next..next + nh],
                CellGrad {
                    da: &mut da,
                    dr: &mut dr,
                    dh_prev: &mut dh_direct,
                    dc_prev: &mut dc_prev,
                },
            );
            let x = x_at(t, b);
            add_outer(&mut du, &da, &x);
            add(&mut db_ih, &da);
            add_outer(&mut dw, &dr, &X::Dense(&layer.hs[prev..prev + nh]));
            add(&mut db_hh, &dr);
            if want_dx {
                add_transposed(u, &da, &mut dx[pos * ni..(pos + 1) * ni]);
            }
            let carry = &mut dh_next[b * nh..(b + 1) * nh];
            carry.copy_from_slice(&dh_direct);
            add_transposed(w, &dr, carry);
            if config.cell.has_cell_state() {
                dc_next[b * nh..(b + 1) * nh].copy_from_slice(&dc_prev);
            }
        }
    }
    for (p, g) in [
        ("weight_ih", du),
        ("weight_hh", dw),
        ("bias_ih", db_ih),
        ("bias_hh", db_hh),
    ] {
        add(table.slice_mut(grads, &name(p)), &g);
    }
    dh0.copy_from_slice(&dh_next);
    dc0.copy_from_slice(&dc_next);
    dx
}

/// The loss and ∂L/∂y of the outputs: mean cross-entropy over the positions (tokens), or the
/// mean of ½‖y − target‖² (dense).
fn loss_and_grad<F: Float>(logits: &[F], targets: &Targets, no: usize) -> (F, Vec<F>) {
    let n = logits.len() / no;
    let scale = F::one() / F::from(n).unwrap();
    let mut dy = vec![F::zero(); logits.len()];
    let mut total = F::zero();
    for p in 0..n {
        let y = &logits[p * no..(p + 1) * no];
        let d = &mut dy[p * no..(p + 1) * no];
        match targets {
            Targets::Tokens(ids) => {
                let m = y.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
                let sum = y.iter().fold(F::zero(), |s, &v| s + (v - m).exp());
                let label = ids[p] as usize;
                total = total + (m + sum.ln() - y[label]);
                for (o, dv) in d.iter_mut().enumerate() {
                    *dv = (y[o] - m).exp() / sum * scale;
                }
                d[label] = d[label] - scale;
            }
            Targets::Dense(v) => {
                for (o, dv) in d.iter_mut().enumerate() {
                    let e = y[o] - f(v[p * no + o]);
                    total = total + F::from(0.5).unwrap() * e * e;
                    *dv = e * scale;
                }
            }
        }
    }
    (total * scale, dy)
}

/// The forward pass of every layer, the outputs and the loss.
struct Forward<F> {
    layers: Vec<Layer<F>>,
    logits: Vec<F>,
    loss: F,
    dy: Vec<F>,
}

/// The inputs of a batch in F, for layer 0 (dense), and the accessor of layer 0's x_t.
fn dense_inputs<F: Float>(batch: &Batch) -> Vec<F> {
    match &batch.inputs {
        Inputs::Dense(x) => x.iter().map(|&v| f(v)).collect(),
        Inputs::Tokens(_) => vec![],
    }
}

/// x_t of layer 0 at (t, b): a token or a row of the dense inputs.
fn input_at<'a, F: Float>(
    config: &ModelConfig,
    batch: &'a Batch,
    dense: &'a [F],
) -> impl Fn(usize, usize) -> X<'a, F> {
    let (nb, ni, kind) = (batch.batch, config.input, config.kind);
    move |t, b| match (&batch.inputs, kind) {
        (Inputs::Tokens(ids), InputKind::Tokens) => X::Token(ids[t * nb + b]),
        _ => X::Dense(&dense[(t * nb + b) * ni..(t * nb + b + 1) * ni]),
    }
}

/// x_t of layer l > 0: layer l−1's h_t.
fn hidden_at<'a, F: Float>(
    below: &'a Layer<F>,
    nb: usize,
    nh: usize,
) -> impl Fn(usize, usize) -> X<'a, F> + 'a {
    move |t, b| X::Dense(&below.out[(t * nb + b) * nh..(t * nb + b + 1) * nh])
}

/// Layer l's output as the layer above reads it: h_1 … h_T, each unit scaled by its dropout
/// mask when training with dropout.
fn layer_output<F: Float>(
    hs: &[F],
    l: usize,
    nb: usize,
    nh: usize,
    dropout: Option<&Dropout>,
) -> Vec<F> {
    let mut out = hs[nb * nh..].to_vec();
    if let Some(d) = dropout {
        for (i, v) in out.iter_mut().enumerate() {
            let (r, j) = (i / nh, i % nh);
            *v = *v * f(d.scale(l, r / nb, r % nb, j));
        }
    }
    out
}

/// ∂L/∂h of layer l from ∂L/∂x of the layer above: the same mask as the forward pass.
fn drop_gradient<F: Float>(
    dx: &mut [F],
    l: usize,
    nb: usize,
    nh: usize,
    dropout: Option<&Dropout>,
) {
    if let Some(d) = dropout {
        for (i, v) in dx.iter_mut().enumerate() {
            let (r, j) = (i / nh, i % nh);
            *v = *v * f(d.scale(l, r / nb, r % nb, j));
        }
    }
}

fn forward_all<F: Float>(
    params: &Params<F>,
    batch: &Batch,
    dropout: Option<&Dropout>,
) -> Forward<F> {
    let config = &params.config;
    let table = config.table();
    let (nb, nt, nh, no) = (batch.batch, batch.steps, config.hidden, config.output);
    let dense = dense_inputs::<F>(batch);
    let x0 = input_at(config, batch, &dense);
    let mut layers: Vec<Layer<F>> = Vec::with_capacity(config.layers);
    for l in 0..config.layers {
        let mut layer = match layers.last() {
            None => layer_forward(config, &table, &params.data, l, batch, &x0),
            Some(below) => {
                let at = hidden_at(below, nb, nh);
                layer_forward(config, &table, &params.data, l, batch, &at)
            }
        };
        let top = l + 1 == config.layers;
        layer.out = layer_output(&layer.hs, l, nb, nh, if top { None } else { dropout });
        layers.push(layer);
    }
    let top = &layers[config.layers - 1].out;
    let (v, c) = (params.get("decoder.weight"), params.get("decoder.bias"));
    let mut logits = vec![F::zero(); nt * nb * no];
    for p in 0..nt * nb {
        let h = X::Dense(&top[p * nh..(p + 1) * nh]);
        affine(v, c, &h, &mut logits[p * no..(p + 1) * no]);
    }
    let (loss, dy) = loss_and_grad(&logits, &batch.targets, no);
    Forward {
        layers,
        logits,
        loss,
        dy,
    }
}

/// Every layer's last state, (L, B, H).
fn last_states<F: Float>(layers: &[Layer<F>], cell_state: bool, bh: usize) -> Vec<F> {
    layers
        .iter()
        .flat_map(|ly| {
            let s = if cell_state { &ly.cs } else { &ly.hs };
            s[s.len() - bh..].to_vec()
        })
        .collect()
}

/// The forward pass and the loss alone (evaluation): the loss, the logits, and every layer's
/// h_T (and c_T), as a [`StepOutput`] without gradients.
pub fn forward<F: Float>(params: &Params<F>, batch: &Batch) -> StepOutput<F> {
    results(
        forward_all(params, batch, None),
        &params.config,
        batch.batch,
    )
}

/// A forward pass's results as a [`StepOutput`], its gradients empty.
fn results<F: Float>(fw: Forward<F>, c: &ModelConfig, nb: usize) -> StepOutput<F> {
    let bh = nb * c.hidden;
    let lstm = c.cell.has_cell_state();
    StepOutput {
        loss: fw.loss,
        output: fw.layers[c.layers - 1].out.clone(),
        h_n: last_states(&fw.layers, false, bh),
        c_n: if lstm {
            last_states(&fw.layers, true, bh)
        } else {
            vec![]
        },
        logits: fw.logits,
        grads: vec![],
        dh0: vec![],
        dc0: vec![],
    }
}

/// One training step: forward, loss, backward.
pub fn step<F: Float>(params: &Params<F>, batch: &Batch) -> StepOutput<F> {
    step_with(params, batch, None)
}

/// One training step with dropout between the layers (see [`crate::dropout`]).
pub fn step_with<F: Float>(
    params: &Params<F>,
    batch: &Batch,
    dropout: Option<&Dropout>,
) -> StepOutput<F> {
    let config = &params.config;
    let table = config.table();
    let (nb, nt, nh, no, nl) = (
        batch.batch,
        batch.steps,
        config.hidden,
        config.output,
        config.layers,
    );
    let fw = forward_all(params, batch, dropout);
    let top = &fw.layers[nl - 1].out;
    let v = params.get("decoder.weight");
    // Backward: the decoder, then the layers from the top.
    let mut grads = vec![F::zero(); table.len];
    let mut dh_top = vec![F::zero(); nt * nb * nh];
    {
        let dv = table.slice_mut(&mut grads, "decoder.weight");
        for p in 0..nt * nb {
            let dy = &fw.dy[p * no..(p + 1) * no];
            add_outer(dv, dy, &X::Dense(&top[p * nh..(p + 1) * nh]));
            add_transposed(v, dy, &mut dh_top[p * nh..(p + 1) * nh]);
        }
        let dc = table.slice_mut(&mut grads, "decoder.bias");
        for p in 0..nt * nb {
            add(dc, &fw.dy[p * no..(p + 1) * no]);
        }
    }
    let dense = dense_inputs::<F>(batch);
    let x0 = input_at(config, batch, &dense);
    let mut dh0 = vec![F::zero(); nl * nb * nh];
    let mut dc0 = vec![F::zero(); nl * nb * nh];
    let mut dh_in = dh_top;
    for l in (0..nl).rev() {
        let bh = nb * nh;
        let (h0_l, c0_l) = (
            &mut dh0[l * bh..(l + 1) * bh],
            &mut dc0[l * bh..(l + 1) * bh],
        );
        let p = &params.data;
        let ly = &fw.layers[l];
        dh_in = if l == 0 {
            let g = &mut grads;
            layer_backward(config, &table, p, g, 0, ly, &dh_in, &x0, false, h0_l, c0_l)
        } else {
            let at = hidden_at(&fw.layers[l - 1], nb, nh);
            let g = &mut grads;
            let mut dx = layer_backward(config, &table, p, g, l, ly, &dh_in, &at, true, h0_l, c0_l);
            drop_gradient(&mut dx, l - 1, nb, nh, dropout);
            dx
        };
    }
    let lstm = config.cell.has_cell_state();
    StepOutput {
        grads,
        dh0,
        dc0: if lstm { dc0 } else { vec![] },
        ..results(fw, config, nb)
    }
}

/// One timestep of layer `l` for one stream (inference): h (and c) advanced in place from the
/// layer's input x.
pub(crate) fn layer_step<F: Float>(
    params: &Params<F>,
    l: usize,
    x: &X<'_, F>,
    h: &mut [F],
    c: &mut [F],
) {
    let config = &params.config;
    let gh = config.cell.gates() * config.hidden;
    let name = |p: &str| format!("rnn.{p}_l{l}");
    let (mut a, mut r) = (vec![F::zero(); gh], vec![F::zero(); gh]);
    affine(
        params.get(&name("weight_ih")),
        params.get(&name("bias_ih")),
        x,
        &mut a,
    );
    affine(
        params.get(&name("weight_hh")),
        params.get(&name("bias_hh")),
        &X::Dense(h),
        &mut r,
    );
    let (mut h_new, mut c_new) = (h.to_vec(), c.to_vec());
    let (mut gates, mut hn) = (vec![F::zero(); gh], vec![F::zero(); config.hidden]);
    let out = CellOut {
        gates: &mut gates,
        hn: &mut hn,
        h: &mut h_new,
        c: &mut c_new,
    };
    cell_forward(config.cell, &a, &r, h, c, out);
    h.copy_from_slice(&h_new);
    c.copy_from_slice(&c_new);
}

/// The outputs y = V h + c of the top layer's h (inference).
pub(crate) fn decode<F: Float>(params: &Params<F>, h: &[F]) -> Vec<F> {
    let mut y = vec![F::zero(); params.config.output];
    affine(
        params.get("decoder.weight"),
        params.get("decoder.bias"),
        &X::Dense(h),
        &mut y,
    );
    y
}
