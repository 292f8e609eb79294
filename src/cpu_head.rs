//! The head of the CPU reference ([`crate::cpu`]): the decoder over the top layer's output, the
//! loss, and their gradients, for each [`Head`].
//!
//! ```text
//! per-step: y_t = V out_t + c at each valid (t, b); loss = mean over N = Σ n_b positions of
//!           the cross-entropy against the next token, or ½‖y_t − target_t‖² (dense)
//! last:     features_b = out[n_b − 1, b] (unidirectional), or [out[n_b − 1, b, :H]; out[0, b, H:]]
//! mean:     features_b = (1/n_b) Σ_{t < n_b} out[t, b]
//! last, mean: y_b = V features_b + c; loss = mean over B of the cross-entropy against label_b
//! ```

use crate::batch::{Batch, Targets};
use crate::cpu_layer::{X, add, add_outer, add_transposed, affine, f};
use crate::model::{Head, Params};
use num_traits::Float;

/// What the head computed, kept for its backward pass.
pub(crate) struct HeadOut<F> {
    /// (T, B, O) per step, zero at padded steps; (B, O) for a sequence head.
    pub(crate) logits: Vec<F>,
    /// The decoder's input of a sequence head, (B, D); empty per step.
    pub(crate) features: Vec<F>,
    pub(crate) loss: F,
    /// ∂L/∂logits, the logits' shape.
    dy: Vec<F>,
}

/// Softmax cross-entropy of logits `y` against `label`; writes ∂(scale · loss)/∂y into `d`.
fn cross_entropy<F: Float>(y: &[F], label: usize, scale: F, d: &mut [F]) -> F {
    let m = y.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
    let sum = y.iter().fold(F::zero(), |s, &v| s + (v - m).exp());
    for (o, dv) in d.iter_mut().enumerate() {
        *dv = (y[o] - m).exp() / sum * scale;
    }
    d[label] = d[label] - scale;
    m + sum.ln() - y[label]
}

/// ½‖y − target‖²; writes ∂(scale · loss)/∂y into `d`.
fn squared_error<F: Float>(y: &[F], target: &[f32], scale: F, d: &mut [F]) -> F {
    let mut total = F::zero();
    for (o, dv) in d.iter_mut().enumerate() {
        let e = y[o] - f(target[o]);
        total = total + F::from(0.5).unwrap() * e * e;
        *dv = e * scale;
    }
    total
}

/// The valid positions p = t·B + b of a batch, in order.
fn valid(batch: &Batch) -> impl Iterator<Item = usize> + '_ {
    let nb = batch.batch;
    (0..batch.steps * nb).filter(move |p| p / nb < batch.length(p % nb))
}

/// The sequence head's features of each sequence, (B, D), from the top layer's output.
fn features<F: Float>(head: Head, out: &[F], batch: &Batch, (nh, nd): (usize, usize)) -> Vec<F> {
    let nb = batch.batch;
    let mut feats = vec![F::zero(); nb * nd];
    for b in 0..nb {
        let n = batch.length(b);
        let row = &mut feats[b * nd..(b + 1) * nd];
        let at = |t: usize| &out[(t * nb + b) * nd..][..nd];
        match head {
            Head::Last => {
                row[..nh].copy_from_slice(&at(n - 1)[..nh]);
                row[nh..].copy_from_slice(&at(0)[nh..]);
            }
            Head::Mean => {
                (0..n).for_each(|t| add(row, at(t)));
                let scale = F::one() / F::from(n).unwrap();
                row.iter_mut().for_each(|v| *v = *v * scale);
            }
            Head::PerStep => unreachable!("the per-step head has no features"),
        }
    }
    feats
}

/// The decoder and the loss over the top layer's output `out` (T, B, D).
pub(crate) fn forward<F: Float>(params: &Params<F>, out: &[F], batch: &Batch) -> HeadOut<F> {
    let c = &params.config;
    let (no, nd) = (c.output, c.features());
    let (v, bias) = (params.get("decoder.weight"), params.get("decoder.bias"));
    if c.head == Head::PerStep {
        let n = batch.valid_steps();
        let scale = F::one() / F::from(n).unwrap();
        let mut logits = vec![F::zero(); batch.steps * batch.batch * no];
        let mut dy = logits.clone();
        let mut total = F::zero();
        for p in valid(batch) {
            let y = &mut logits[p * no..(p + 1) * no];
            affine(v, bias, &X::Dense(&out[p * nd..(p + 1) * nd]), y);
            let d = &mut dy[p * no..(p + 1) * no];
            total = total
                + match &batch.targets {
                    Targets::Tokens(ids) => cross_entropy(y, ids[p] as usize, scale, d),
                    Targets::Dense(t) => squared_error(y, &t[p * no..(p + 1) * no], scale, d),
                    Targets::Labels(_) => unreachable!("a validated batch has targets per step"),
                };
        }
        return HeadOut {
            logits,
            features: vec![],
            loss: total * scale,
            dy,
        };
    }
    let Targets::Labels(labels) = &batch.targets else {
        unreachable!("a validated batch of a sequence head has labels")
    };
    let nb = batch.batch;
    let features = features(c.head, out, batch, (c.hidden, nd));
    let scale = F::one() / F::from(nb).unwrap();
    let (mut logits, mut dy) = (vec![F::zero(); nb * no], vec![F::zero(); nb * no]);
    let mut total = F::zero();
    for b in 0..nb {
        let y = &mut logits[b * no..(b + 1) * no];
        affine(v, bias, &X::Dense(&features[b * nd..(b + 1) * nd]), y);
        total = total + cross_entropy(y, labels[b] as usize, scale, &mut dy[b * no..][..no]);
    }
    HeadOut {
        logits,
        features,
        loss: total * scale,
        dy,
    }
}

/// The decoder's gradients (into `grads`) and ∂L/∂out, (T, B, D).
pub(crate) fn backward<F: Float>(
    params: &Params<F>,
    (out, head): (&[F], &HeadOut<F>),
    batch: &Batch,
    grads: &mut [F],
) -> Vec<F> {
    let c = &params.config;
    let table = c.table();
    let (no, nd, nh, nb) = (c.output, c.features(), c.hidden, batch.batch);
    let v = params.get("decoder.weight");
    let mut d_out = vec![F::zero(); batch.steps * nb * nd];
    // (row of dy, the decoder's input) for each decoded row: a position, or a sequence.
    let rows: Vec<(usize, &[F])> = match c.head {
        Head::PerStep => valid(batch).map(|p| (p, &out[p * nd..][..nd])).collect(),
        _ => (0..nb)
            .map(|b| (b, &head.features[b * nd..][..nd]))
            .collect(),
    };
    let mut d_feat = vec![F::zero(); nb * nd];
    for &(r, x) in &rows {
        let dy = &head.dy[r * no..(r + 1) * no];
        add_outer(table.slice_mut(grads, "decoder.weight"), dy, &X::Dense(x));
        add(table.slice_mut(grads, "decoder.bias"), dy);
        let into = match c.head {
            Head::PerStep => &mut d_out[r * nd..][..nd],
            _ => &mut d_feat[r * nd..][..nd],
        };
        add_transposed(v, dy, into);
    }
    for b in (0..nb).filter(|_| c.head.is_sequence()) {
        let (n, df) = (batch.length(b), &d_feat[b * nd..(b + 1) * nd]);
        let at = |t: usize| (t * nb + b) * nd;
        match c.head {
            Head::Last => {
                add(&mut d_out[at(n - 1)..][..nh], &df[..nh]);
                add(&mut d_out[at(0) + nh..at(0) + nd], &df[nh..]);
            }
            Head::Mean => {
                let scale = F::one() / F::from(n).unwrap();
                let share: Vec<F> = df.iter().map(|&g| g * scale).collect();
                (0..n).for_each(|t| add(&mut d_out[at(t)..][..nd], &share));
            }
            Head::PerStep => {}
        }
    }
    d_out
}
