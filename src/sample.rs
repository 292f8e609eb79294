//! Sampling text from a trained model, on the CPU: sampling is sequential and small (one
//! matrix-vector product per layer and character), so the CPU is the right place for it.
//!
//! ```text
//! every layer l:  h_l (and c_l) ← cell(U_l x + b_ih, W_l h_l + b_hh)   x = the token, then h_{l-1}
//! p_t = softmax((V h_top + c) / temperature)    x_{t+1} ~ p_t   (temperature 0: the most likely)
//! ```

use crate::cpu::{X, decode, layer_step};
use crate::error::{Error, Result};
use crate::model::{InputKind, Params};
use rand::{RngExt, SeedableRng};

/// A model's state, advanced one input at a time: inference on the CPU, for sampling text and
/// forecasting series.
pub struct Stepper<'a> {
    params: &'a Params<f32>,
    /// Every layer's h, (L, H).
    h: Vec<f32>,
    /// Every layer's c, (L, H) (zeros unless LSTM).
    c: Vec<f32>,
}

impl<'a> Stepper<'a> {
    /// Starts from a zero state. Refuses a model that cannot run one step at a time: one with a
    /// reverse direction (it reads the sequence from its end) or a sequence head (it decodes
    /// whole sequences).
    pub fn new(params: &'a Params<f32>) -> Result<Self> {
        let c = params.config;
        if !c.is_next_step() {
            return Err(Error::config(
                format!("{c} cannot predict one step at a time"),
                "sample and forecast with a unidirectional model with the per-step head",
            ));
        }
        let n = c.layers * c.hidden;
        Ok(Self {
            params,
            h: vec![0.0; n],
            c: vec![0.0; n],
        })
    }

    /// Advances every layer by one step from layer 0's input x.
    fn advance(&mut self, x: X<'_, f32>) {
        let nh = self.params.config.hidden;
        let (h, c) = (&mut self.h, &mut self.c);
        layer_step(self.params, 0, &x, &mut h[..nh], &mut c[..nh]);
        for l in 1..self.params.config.layers {
            let (below, here) = h.split_at_mut(l * nh);
            let x = X::Dense(&below[(l - 1) * nh..]);
            layer_step(
                self.params,
                l,
                &x,
                &mut here[..nh],
                &mut c[l * nh..(l + 1) * nh],
            );
        }
    }

    /// Feeds a token.
    pub fn feed_token(&mut self, token: u32) {
        self.advance(X::Token(token));
    }

    /// Feeds a dense input x (I values).
    pub fn feed(&mut self, x: &[f32]) {
        self.advance(X::Dense(x));
    }

    /// The outputs y = V h + c of the top layer.
    pub fn output(&self) -> Vec<f32> {
        let nh = self.params.config.hidden;
        decode(self.params, &self.h[self.h.len() - nh..])
    }
}

/// The longest sample (and forecast) accepted, in steps.
pub const MAX_LEN: usize = 10_000_000;

/// Primes the state with `prime`, then draws `len` tokens at `temperature` (0: greedy).
///
/// ```
/// use unroll::{ModelConfig, Params};
/// let params = Params::init(ModelConfig::tokens(5, 8), 3);
/// let tokens = unroll::sample::sample(&params, &[0, 1], 10, 0.8, 42)?;
/// assert_eq!(tokens.len(), 10);
/// assert!(tokens.iter().all(|&t| t < 5));
/// # Ok::<(), unroll::Error>(())
/// ```
pub fn sample(
    params: &Params<f32>,
    prime: &[u32],
    len: usize,
    temperature: f32,
    seed: u64,
) -> Result<Vec<u32>> {
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(Error::config(
            format!("temperature {temperature} is not a number ≥ 0"),
            "pass --temperature 0 (greedy) or a positive value such as 0.8",
        ));
    }
    if len > MAX_LEN {
        return Err(Error::config(
            format!("a sample of {len} characters is too long"),
            format!("pass --len of at most {MAX_LEN}"),
        ));
    }
    if params.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::config(
            "the model's weights hold NaN or inf",
            "sample from a checkpoint of a run that did not diverge",
        ));
    }
    if prime.is_empty() {
        return Err(Error::config(
            "the priming text is empty",
            "pass --prime with at least one character",
        ));
    }
    if params.config.kind != InputKind::Tokens {
        return Err(Error::config(
            "sampling text needs a model of token inputs",
            "use `unroll forecast` for a model of dense inputs",
        ));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = Stepper::new(params)?;
    for &t in prime {
        s.feed_token(t);
    }
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let y = s.output();
        let next = if temperature == 0.0 {
            y.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        } else {
            let m = y.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let p: Vec<f64> = y
                .iter()
                .map(|&v| (((v - m) / temperature) as f64).exp())
                .collect();
            draw(&p, &mut rng).ok_or_else(|| {
                Error::config(
                    "the model's outputs are not finite numbers (its weights hold NaN or inf)",
                    "sample from a checkpoint of a run that did not diverge",
                )
            })?
        } as u32;
        out.push(next);
        s.feed_token(next);
    }
    Ok(out)
}

/// Index i drawn with probability `weights[i] / Σ weights`; `None` if the sum is not a positive
/// number.
fn draw(weights: &[f64], rng: &mut rand::rngs::StdRng) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let mut r = rng.random_range(0.0..total);
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    Some(weights.len() - 1)
}

/// `len` tokens drawn independently from the token frequencies `counts` (a unigram model): the
/// baseline a sample is scored against.
pub fn sample_unigram(counts: &[f64], len: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len.min(MAX_LEN))
        .map_while(|_| draw(counts, &mut rng).map(|i| i as u32))
        .collect()
}
