//! The CPU reference: one training step of the Elman RNN in plain loops, generic over f32 and f64.
//!
//! This is the yardstick for the GPU path ([`crate::gpu::step`]); it shares nothing with it but
//! the shapes and the parameters. It follows the math line by line and makes no attempt at speed.
//!
//! Dimensions: B batch, T timesteps, I input size, H hidden size, O output size.
//!
//! ```text
//! forward, t = 1..T:   a_t = x_t U^T + h_{t-1} W^T + b,  h_t = tanh(a_t),  y_t = h_t V^T + c
//! loss:                mean over the B·T positions of cross-entropy(softmax(y_t), target_t)
//!                      or ½‖y_t − target_t‖² (dense)
//! backward, t = T..1:  dy_t = ∂L/∂y_t
//!                      dh_t = dy_t V + dA_{t+1} W            (dA_{T+1} = 0)
//!                      dA_t = dh_t ⊙ (1 − h_t²)
//!                      dV += dy_t^T h_t,  dc += Σ_b dy_t
//!                      dW += dA_t^T h_{t-1},  dU += dA_t^T x_t,  db += Σ_b dA_t
//!                      dh_0 = dA_1 W
//! ```

use crate::model::{Batch, Inputs, ModelConfig, Params, StepOutput, Targets};
use num_traits::Float;

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Forward<F> {
    /// h_0 … h_T, (T+1, B, H).
    pub hs: Vec<F>,
    /// y_1 … y_T, (T, B, O).
    pub logits: Vec<F>,
}

fn f<F: Float>(v: f32) -> F {
    F::from(v).unwrap()
}

/// The forward pass: every hidden state and every output.
pub fn forward<F: Float>(params: &Params<F>, batch: &Batch) -> Forward<F> {
    let ModelConfig {
        input: ni,
        hidden: nh,
        output: no,
        ..
    } = params.config;
    let (nb, nt) = (batch.batch, batch.steps);
    let (u, w, b, v, c) = (
        params.get("U"),
        params.get("W"),
        params.get("b"),
        params.get("V"),
        params.get("c"),
    );
    let mut hs = vec![F::zero(); (nt + 1) * nb * nh];
    for (dst, &src) in hs.iter_mut().zip(&batch.h0) {
        *dst = f(src);
    }
    let mut logits = vec![F::zero(); nt * nb * no];
    for t in 0..nt {
        for bi in 0..nb {
            let pos = t * nb + bi;
            let h_prev = (t * nb + bi) * nh;
            let h_cur = ((t + 1) * nb + bi) * nh;
            for j in 0..nh {
                // a = x_t U^T + h_{t-1} W^T + b
                let mut a = b[j];
                match &batch.inputs {
                    Inputs::Tokens(x) => a = a + u[j * ni + x[pos] as usize],
                    Inputs::Dense(x) => {
                        for k in 0..ni {
                            a = a + f::<F>(x[pos * ni + k]) * u[j * ni + k];
                        }
                    }
                }
                for k in 0..nh {
                    a = a + hs[h_prev + k] * w[j * nh + k];
                }
                hs[h_cur + j] = a.tanh();
            }
            // y = h_t V^T + c
            for o in 0..no {
                let mut y = c[o];
                for k in 0..nh {
                    y = y + hs[h_cur + k] * v[o * nh + k];
                }
                logits[pos * no + o] = y;
            }
        }
    }
    Forward { hs, logits }
}

/// The mean loss over the B·T positions and its gradient `dy = ∂L/∂y`, (T, B, O).
pub fn loss<F: Float>(config: &ModelConfig, batch: &Batch, fwd: &Forward<F>) -> (F, Vec<F>) {
    let no = config.output;
    let n = batch.batch * batch.steps;
    let scale = F::one() / F::from(n).unwrap();
    let mut total = F::zero();
    let mut dy = vec![F::zero(); n * no];
    for pos in 0..n {
        let y = &fwd.logits[pos * no..(pos + 1) * no];
        let d = &mut dy[pos * no..(pos + 1) * no];
        match &batch.targets {
            Targets::Tokens(tg) => {
                // softmax cross-entropy: L = log Σ exp(y) − y[target]; dy = softmax(y) − onehot
                let m = y.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
                let sum = y.iter().fold(F::zero(), |a, &v| a + (v - m).exp());
                let target = tg[pos] as usize;
                total = total + (m + sum.ln() - y[target]);
                for o in 0..no {
                    d[o] = (y[o] - m).exp() / sum * scale;
                }
                d[target] = d[target] - scale;
            }
            Targets::Dense(tg) => {
                // L = ½‖y − target‖²; dy = y − target
                for o in 0..no {
                    let e = y[o] - f(tg[pos * no + o]);
                    total = total + F::from(0.5).unwrap() * e * e;
                    d[o] = e * scale;
                }
            }
        }
    }
    (total * scale, dy)
}

/// Backpropagation through time: the gradients of every parameter and of h_0.
pub fn backward<F: Float>(
    params: &Params<F>,
    batch: &Batch,
    fwd: &Forward<F>,
    dy: &[F],
) -> (Vec<F>, Vec<F>) {
    let config = params.config;
    let (ni, nh, no) = (config.input, config.hidden, config.output);
    let (nb, nt) = (batch.batch, batch.steps);
    let layout = config.layout();
    let (w, v) = (params.get("W"), params.get("V"));
    let mut grads = vec![F::zero(); layout.len];
    let off = |name: &str| layout.slot(name).offset;
    let (o_u, o_w, o_b, o_v, o_c) = (off("U"), off("W"), off("b"), off("V"), off("c"));

    // dA_{t+1}, (B, H); zero beyond the last step
    let mut da_next = vec![F::zero(); nb * nh];
    let mut da = vec![F::zero(); nb * nh];
    for t in (0..nt).rev() {
        for bi in 0..nb {
            let pos = t * nb + bi;
            let h_cur = ((t + 1) * nb + bi) * nh;
            let h_prev = (t * nb + bi) * nh;
            let dy_t = &dy[pos * no..(pos + 1) * no];
            // dV += dy_t^T h_t, dc += dy_t
            for o in 0..no {
                for k in 0..nh {
                    grads[o_v + o * nh + k] = grads[o_v + o * nh + k] + dy_t[o] * fwd.hs[h_cur + k];
                }
                grads[o_c + o] = grads[o_c + o] + dy_t[o];
            }
            for k in 0..nh {
                // dh_t = dy_t V + dA_{t+1} W
                let mut dh = F::zero();
                for o in 0..no {
                    dh = dh + dy_t[o] * v[o * nh + k];
                }
                for j in 0..nh {
                    dh = dh + da_next[bi * nh + j] * w[j * nh + k];
                }
                // dA_t = dh_t ⊙ (1 − h_t²)
                let h = fwd.hs[h_cur + k];
                da[bi * nh + k] = dh * (F::one() - h * h);
            }
            for j in 0..nh {
                let d = da[bi * nh + j];
                // dW += dA_t^T h_{t-1}
                for k in 0..nh {
                    grads[o_w + j * nh + k] = grads[o_w + j * nh + k] + d * fwd.hs[h_prev + k];
                }
                // dU += dA_t^T x_t
                match &batch.inputs {
                    Inputs::Tokens(x) => {
                        let col = x[pos] as usize;
                        grads[o_u + j * ni + col] = grads[o_u + j * ni + col] + d;
                    }
                    Inputs::Dense(x) => {
                        for k in 0..ni {
                            grads[o_u + j * ni + k] =
                                grads[o_u + j * ni + k] + d * f(x[pos * ni + k]);
                        }
                    }
                }
                // db += dA_t
                grads[o_b + j] = grads[o_b + j] + d;
            }
        }
        std::mem::swap(&mut da, &mut da_next);
    }
    // dh_0 = dA_1 W (dA_1 is in da_next after the last swap)
    let mut dh0 = vec![F::zero(); nb * nh];
    for bi in 0..nb {
        for k in 0..nh {
            let mut s = F::zero();
            for j in 0..nh {
                s = s + da_next[bi * nh + j] * w[j * nh + k];
            }
            dh0[bi * nh + k] = s;
        }
    }
    (grads, dh0)
}

/// One training step without the update: forward, loss, backward.
pub fn step<F: Float>(params: &Params<F>, batch: &Batch) -> StepOutput<F> {
    let fwd = forward(params, batch);
    let (loss, dy) = loss(&params.config, batch, &fwd);
    let (grads, dh0) = backward(params, batch, &fwd, &dy);
    StepOutput {
        loss,
        hs: fwd.hs,
        logits: fwd.logits,
        grads,
        dh0,
    }
}
