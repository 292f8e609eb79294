//! The CPU reference for stacked layers of any [`Cell`](crate::cell::Cell), in one or both
//! directions, over sequences of equal or different lengths, with any [`Head`](crate::model::Head):
//! one training step in plain loops, generic over f32 and f64, following PyTorch's `nn.RNN` /
//! `nn.GRU` / `nn.LSTM` (with `pack_padded_sequence`) line by line. It shares nothing with the GPU
//! path but the parameter table ([`crate::param_table::ParamTable`]).
//!
//! Dimensions: B batch, T timesteps, I input, H hidden, O output, L layers, G gates, ND
//! directions, D = ND·H.
//!
//! ```text
//! forward, k = 0..L, each direction d:  h (and c) over the valid steps     (crate::cpu_layer)
//!                                       out_k[t] = [h_fwd(t); h_rev(t)] (D), 0 at padded t
//!                                       x_t of layer k+1 = out_k[t] (after dropout, training)
//! head:                                 logits, loss, ∂L/∂out_top            (crate::cpu_head)
//! backward, k = L−1..0, each direction: the parameters' gradients, ∂L/∂h_0 (and c_0),
//!                                       ∂L/∂out_{k−1} = Σ_d U_d^T da_d
//! ```

use crate::cpu_cells::{CellOut, cell_forward};
use crate::cpu_head::{self as head, HeadOut};
pub(crate) use crate::cpu_layer::X;
use crate::cpu_layer::{InputAt, Pass, PassOf, affine, f};
use crate::dropout::Dropout;
use crate::model::{Batch, InputKind, Inputs, ModelConfig, Params, StepOutput};
use crate::param_table::LayerParams;
use num_traits::Float;

/// One layer's forward results: its directions' passes and its output as the layer above reads
/// it.
struct Layer<F> {
    passes: Vec<Pass<F>>,
    /// out_k, (T, B, D): after dropout when training with it, below the top.
    out: Vec<F>,
}

/// The forward pass of every layer and the head.
struct Forward<F> {
    layers: Vec<Layer<F>>,
    head: HeadOut<F>,
}

/// The inputs of a batch in F, for layer 0 (dense).
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
) -> impl Fn(usize, usize) -> X<'a, F> + 'a {
    let (nb, ni, kind) = (batch.batch, config.input, config.kind);
    move |t, b| match (&batch.inputs, kind) {
        (Inputs::Tokens(ids), InputKind::Tokens) => X::Token(ids[t * nb + b]),
        _ => X::Dense(&dense[(t * nb + b) * ni..(t * nb + b + 1) * ni]),
    }
}

/// x_t of layer k > 0: layer k−1's output at t, D wide.
fn output_at<'a, F: Float>(
    below: &'a [F],
    (nb, nd): (usize, usize),
) -> impl Fn(usize, usize) -> X<'a, F> + 'a {
    move |t, b| X::Dense(&below[(t * nb + b) * nd..(t * nb + b + 1) * nd])
}

/// Scales layer k's output (or the gradient flowing into it) by its dropout mask.
fn apply_dropout<F: Float>(v: &mut [F], k: usize, (nb, nd): (usize, usize), d: &Dropout) {
    for (i, x) in v.iter_mut().enumerate() {
        let (r, j) = (i / nd, i % nd);
        *x = *x * f(d.scale(k, r / nb, r % nb, j));
    }
}

fn pass_of<'a, F>(p: &'a Params<F>, layer: &'a LayerParams, batch: &'a Batch) -> PassOf<'a, F> {
    PassOf {
        config: &p.config,
        layer,
        params: &p.data,
        batch,
    }
}

/// Layer k forward, both directions, reading its input through `x_at`.
fn layer_forward<F: Float>(
    params: &Params<F>,
    (k, batch): (usize, &Batch),
    x_at: &InputAt<'_, F>,
    dropout: Option<&Dropout>,
) -> Layer<F> {
    let config = &params.config;
    let (nb, nd) = (batch.batch, config.features());
    let mut out = vec![F::zero(); batch.steps * nb * nd];
    let mut passes = Vec::new();
    for layer in config.table().directions_of(k) {
        let of = pass_of(params, layer, batch);
        let pass = of.forward(x_at);
        of.write_output(&pass, &mut out);
        passes.push(pass);
    }
    if let Some(d) = dropout.filter(|_| k + 1 < config.layers) {
        apply_dropout(&mut out, k, (nb, nd), d);
    }
    Layer { passes, out }
}

fn forward_all<F: Float>(
    params: &Params<F>,
    batch: &Batch,
    dropout: Option<&Dropout>,
) -> Forward<F> {
    let config = &params.config;
    let (nb, nd) = (batch.batch, config.features());
    let dense = dense_inputs::<F>(batch);
    let x0 = input_at(config, batch, &dense);
    let mut layers: Vec<Layer<F>> = Vec::with_capacity(config.layers);
    for k in 0..config.layers {
        let layer = match layers.last() {
            None => layer_forward(params, (k, batch), &x0, dropout),
            Some(below) => {
                let x_at = output_at(&below.out, (nb, nd));
                layer_forward(params, (k, batch), &x_at, dropout)
            }
        };
        layers.push(layer);
    }
    let head = head::forward(params, &layers[config.layers - 1].out, batch);
    Forward { layers, head }
}

/// Layer k backward, both directions, from ∂L/∂out_k: its parameters' gradients into `grads`,
/// its directions' ∂L/∂h_0 and ∂L/∂c_0 into `d0`; returns ∂L/∂out_{k−1} (empty for k = 0).
fn layer_backward<F: Float>(
    params: &Params<F>,
    (k, layer, batch): (usize, &Layer<F>, &Batch),
    (d_out, x_at): (&[F], &InputAt<'_, F>),
    grads: &mut [F],
    (dh0, dc0): (&mut [F], &mut [F]),
) -> Vec<F> {
    let table = params.config.table();
    let mut dx = vec![F::zero(); if k > 0 { d_out.len() } else { 0 }];
    for (lp, pass) in table.directions_of(k).zip(&layer.passes) {
        let of = pass_of(params, lp, batch);
        let want_dx = (k > 0).then_some(&mut dx[..]);
        let (dh, dc) = of.backward(pass, (d_out, x_at), grads, want_dx);
        let at = lp.state * dh.len();
        dh0[at..at + dh.len()].copy_from_slice(&dh);
        dc0[at..at + dc.len()].copy_from_slice(&dc);
    }
    dx
}

/// Every layer's and direction's last state, (ND·L, B, H).
fn last_states<F: Float>(layers: &[Layer<F>], cell_state: bool, bh: usize) -> Vec<F> {
    let passes = layers.iter().flat_map(|l| &l.passes);
    passes
        .flat_map(|p| {
            let s = if cell_state { &p.cs } else { &p.hs };
            s[s.len() - bh..].to_vec()
        })
        .collect()
}

/// The forward pass and the loss alone (evaluation): the loss, the logits, and every layer's
/// last state, as a [`StepOutput`] without gradients.
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
        loss: fw.head.loss,
        h_n: last_states(&fw.layers, false, bh),
        c_n: if lstm {
            last_states(&fw.layers, true, bh)
        } else {
            vec![]
        },
        output: fw
            .layers
            .into_iter()
            .last()
            .map(|l| l.out)
            .unwrap_or_default(),
        logits: fw.head.logits,
        features: fw.head.features,
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
    let (nb, nd, nl) = (batch.batch, config.features(), config.layers);
    let fw = forward_all(params, batch, dropout);
    let mut grads = vec![F::zero(); table.len];
    let top = (&fw.layers[nl - 1].out[..], &fw.head);
    let mut d_out = head::backward(params, top, batch, &mut grads);
    let dense = dense_inputs::<F>(batch);
    let x0 = input_at(config, batch, &dense);
    let mut dh0 = vec![F::zero(); config.state_len(nb)];
    let mut dc0 = dh0.clone();
    for k in (0..nl).rev() {
        let at = (k, &fw.layers[k], batch);
        let d0 = (&mut dh0[..], &mut dc0[..]);
        let mut dx = match k {
            0 => layer_backward(params, at, (&d_out, &x0), &mut grads, d0),
            _ => {
                let x_at = output_at(&fw.layers[k - 1].out, (nb, nd));
                layer_backward(params, at, (&d_out, &x_at), &mut grads, d0)
            }
        };
        if let Some(d) = dropout.filter(|_| k > 0) {
            apply_dropout(&mut dx, k - 1, (nb, nd), d);
        }
        d_out = dx;
    }
    let lstm = config.cell.has_cell_state();
    StepOutput {
        grads,
        dh0,
        dc0: if lstm { dc0 } else { vec![] },
        ..results(fw, config, nb)
    }
}

/// One timestep of layer `l`'s forward direction for one stream (inference): h (and c)
/// advanced in place from the layer's input x.
pub(crate) fn layer_step<F: Float>(
    params: &Params<F>,
    l: usize,
    x: &X<'_, F>,
    h: &mut [F],
    c: &mut [F],
) {
    let config = &params.config;
    let table = config.table();
    let p = table.layer(l, 0);
    let gh = config.cell.gates() * config.hidden;
    let (mut a, mut r) = (vec![F::zero(); gh], vec![F::zero(); gh]);
    let data = &params.data;
    affine(p.weight_ih.of(data), p.bias_ih.of(data), x, &mut a);
    affine(
        p.weight_hh.of(data),
        p.bias_hh.of(data),
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
