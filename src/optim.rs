//! Optimizers and gradient clipping, flat over the parameter vector: the CPU implementation here,
//! the GPU one in `shaders/optimizer.wgsl` (same formulas, same names).
//!
//! With t the step (from 1), `lr_t = lr · decay^floor((t−1) / decay_every)` and
//! `g = min(1, clip / ‖g‖) · g` when clipping:
//!
//! ```text
//! SGD:      m = μ m + g;                      p −= lr_t m
//! Adagrad:  v = v + g²;                       p −= lr_t g / (√v + ε)
//! Adam:     m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²
//!           p −= lr_t (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)
//! ```
//!
//! The bias corrections 1 − β^t are kept by the recurrence `b_t = b_{t−1} + (1 − b_{t−1})(1 − β)`
//! rather than computed with pow: a GPU's pow is an approximation, and 1 − β^t (about 1e-3 at
//! t = 1 for β2 = 0.999) magnifies its error. Both paths keep them the same way.

use crate::error::{Error, Result};

/// Which update rule.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum.
    Sgd,
    /// Adagrad, as min-char-rnn trains.
    Adagrad,
    /// Adam.
    Adam,
}

/// The optimizer's settings; `unroll train` takes its flags from them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct OptimizerConfig {
    /// Optimizer.
    #[arg(id = "optimizer", long = "optimizer", value_name = "OPTIMIZER", value_enum, default_value_t = OptimizerConfig::default().kind)]
    pub kind: OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = OptimizerConfig::default().lr, allow_negative_numbers = true)]
    pub lr: f32,
    /// Momentum (SGD).
    #[arg(long, default_value_t = OptimizerConfig::default().momentum)]
    pub momentum: f32,
    /// β1 for Adam.
    #[arg(skip = OptimizerConfig::default().beta1)]
    pub beta1: f32,
    /// β2 for Adam.
    #[arg(skip = OptimizerConfig::default().beta2)]
    pub beta2: f32,
    /// ε for Adagrad and Adam.
    #[arg(skip = OptimizerConfig::default().eps)]
    pub eps: f32,
    /// Clip the gradient's global norm to this (0: off).
    #[arg(long, default_value_t = OptimizerConfig::default().clip, allow_negative_numbers = true)]
    pub clip: f32,
    /// Multiply the learning rate by this every --lr-decay-every steps.
    #[arg(id = "lr_decay", long = "lr-decay", value_name = "LR_DECAY", default_value_t = OptimizerConfig::default().decay)]
    pub decay: f32,
    /// The decay period in steps.
    #[arg(id = "lr_decay_every", long = "lr-decay-every", value_name = "LR_DECAY_EVERY", default_value_t = OptimizerConfig::default().decay_every)]
    pub decay_every: u32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 2e-3,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip: 5.0,
            decay: 1.0,
            decay_every: 1000,
        }
    }
}

impl OptimizerConfig {
    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                format!("learning rate {} is not a positive number", self.lr),
                "pass --lr with a value above 0, e.g. --lr 0.002",
            ));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return Err(Error::config(
                format!("gradient clip {} is not a number ≥ 0", self.clip),
                "pass --clip 0 (no clipping) or a positive norm such as 5",
            ));
        }
        if !(self.decay.is_finite() && self.decay > 0.0 && self.decay <= 1.0)
            || self.decay_every == 0
        {
            return Err(Error::config(
                format!(
                    "learning-rate decay {} every {} steps is not in (0, 1] every ≥ 1 steps",
                    self.decay, self.decay_every
                ),
                "pass --lr-decay in (0, 1] and --lr-decay-every of 1 or more",
            ));
        }
        Ok(())
    }

    /// The learning rate at step t (from 1).
    pub fn lr_at(&self, t: u64) -> f32 {
        self.lr * self.decay.powf(((t - 1) / self.decay_every as u64) as f32)
    }
}

/// The optimizer's state: moments in the parameter layout, the step count and Adam's bias
/// corrections.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// First moment (SGD's velocity, Adam's m).
    pub m: Vec<f32>,
    /// Second moment (Adagrad's sum of squares, Adam's v).
    pub v: Vec<f32>,
    /// Steps taken.
    pub step: u64,
    /// 1 − β1^t and 1 − β2^t.
    pub bias: [f32; 2],
}

impl OptimizerState {
    /// Zero state for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
            bias: [0.0; 2],
        }
    }
}

/// The gradient's global norm, ‖g‖ = sqrt(Σ g_i²), accumulated in f64.
pub fn grad_norm(grads: &[f32]) -> f32 {
    grads
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32
}

/// One update of `params` from `grads`; returns the gradient's norm before clipping.
pub fn update(
    config: &OptimizerConfig,
    params: &mut [f32],
    grads: &[f32],
    state: &mut OptimizerState,
) -> f32 {
    let norm = grad_norm(grads);
    state.step += 1;
    let t = state.step;
    state.bias[0] += (1.0 - state.bias[0]) * (1.0 - config.beta1);
    state.bias[1] += (1.0 - state.bias[1]) * (1.0 - config.beta2);
    let [bias1, bias2] = state.bias;
    let scale = if config.clip > 0.0 {
        (config.clip / norm).min(1.0)
    } else {
        1.0
    };
    let lr = config.lr_at(t);
    let OptimizerState { m, v, .. } = state;
    for i in 0..params.len() {
        let g = grads[i] * scale;
        match config.kind {
            OptimizerKind::Sgd => {
                m[i] = config.momentum * m[i] + g;
                params[i] -= lr * m[i];
            }
            OptimizerKind::Adagrad => {
                v[i] += g * g;
                params[i] -= lr * g / (v[i].sqrt() + config.eps);
            }
            OptimizerKind::Adam => {
                m[i] = config.beta1 * m[i] + (1.0 - config.beta1) * g;
                v[i] = config.beta2 * v[i] + (1.0 - config.beta2) * g * g;
                let m_hat = m[i] / bias1;
                let v_hat = v[i] / bias2;
                params[i] -= lr * m_hat / (v_hat.sqrt() + config.eps);
            }
        }
    }
    norm
}
