//! The Elman RNN's shapes, parameters, batches and the result of one training step.
//!
//! Dimensions, used throughout the crate:
//! B batch, T timesteps, I input size, H hidden size, O output size (= vocabulary size for text).
//!
//! ```text
//! a_t = x_t U^T + h_{t-1} W^T + b      (B, H)
//! h_t = tanh(a_t)                       (B, H)
//! y_t = h_t V^T + c                     (B, O)
//! ```
//!
//! Parameters live in one contiguous vector laid out by [`Layout`], built from the single
//! `(name, shape)` table [`ModelConfig::param_shapes`]. Gradients and optimizer moments use the
//! same layout, so the optimizer is one flat loop over all of them (on the CPU and on the GPU).

use crate::error::{Error, Result};
use num_traits::Float;
use rand::{RngExt, SeedableRng};

/// What `x_t` and the target of each position are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// `x_t` is a token id in `[0, I)` (one-hot); the target is a token id in `[0, O)`;
    /// the loss is softmax cross-entropy.
    Tokens,
    /// `x_t` is a vector of I floats; the target is a vector of O floats; the loss is
    /// `½‖y_t − target_t‖²`.
    Dense,
}

impl std::fmt::Display for InputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputKind::Tokens => "tokens",
            InputKind::Dense => "dense",
        })
    }
}

/// The sizes of a model: everything that fixes the parameters' shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Token ids or dense vectors.
    pub kind: InputKind,
    /// I: vocabulary size (tokens) or input features (dense).
    pub input: usize,
    /// H: hidden size.
    pub hidden: usize,
    /// O: vocabulary size (tokens) or output features (dense).
    pub output: usize,
}

/// The largest hidden size accepted (W then takes 1 GiB).
pub const MAX_HIDDEN: usize = 16_384;

/// The largest input and output sizes (I, O): 2^20, more than the Unicode code points a text
/// vocabulary can hold. (A matmul over O columns needs O/32 workgroups in one grid dimension,
/// which holds 65,535.)
pub const MAX_FEATURES: usize = 1 << 20;

/// The names of the parameters, in their order in the flat parameter vector.
pub const PARAM_NAMES: [&str; 5] = ["U", "W", "b", "V", "c"];

/// Where one named tensor lies in a flat parameter (or gradient) vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// `U`, `W`, `b`, `V` or `c`.
    pub name: &'static str,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// First element in the flat vector.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

/// The flat layout of the parameters, shared by gradients and optimizer state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// One slot per parameter, in [`PARAM_NAMES`] order.
    pub slots: Vec<Slot>,
    /// Total number of elements.
    pub len: usize,
}

impl Layout {
    /// The slot of a parameter by name. Panics on a name not in [`PARAM_NAMES`] (a programming error).
    pub fn slot(&self, name: &str) -> &Slot {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no parameter named {name}"))
    }
}

impl ModelConfig {
    /// A text model over a vocabulary of `vocab` tokens.
    pub fn tokens(vocab: usize, hidden: usize) -> Self {
        Self {
            kind: InputKind::Tokens,
            input: vocab,
            hidden,
            output: vocab,
        }
    }

    /// A model on dense vectors.
    pub fn dense(input: usize, hidden: usize, output: usize) -> Self {
        Self {
            kind: InputKind::Dense,
            input,
            hidden,
            output,
        }
    }

    /// The single table of parameter names and shapes.
    pub fn param_shapes(&self) -> [(&'static str, Vec<usize>); 5] {
        let (i, h, o) = (self.input, self.hidden, self.output);
        [
            ("U", vec![h, i]),
            ("W", vec![h, h]),
            ("b", vec![h]),
            ("V", vec![o, h]),
            ("c", vec![o]),
        ]
    }

    /// The flat layout built from [`Self::param_shapes`].
    pub fn layout(&self) -> Layout {
        let mut offset = 0;
        let slots = self
            .param_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                let slot = Slot {
                    name,
                    shape,
                    offset,
                    len,
                };
                offset += len;
                slot
            })
            .collect();
        Layout { slots, len: offset }
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout().len
    }

    /// Rejects sizes that make no model, or one too large to hold.
    pub fn validate(&self) -> Result<()> {
        if self.hidden > MAX_HIDDEN {
            return Err(Error::config(
                format!(
                    "hidden size {} is too large: W alone would take {:.1} GiB",
                    self.hidden,
                    (self.hidden as f64).powi(2) * 4.0 / (1u64 << 30) as f64
                ),
                format!("pass a --hidden of at most {MAX_HIDDEN}"),
            ));
        }
        for (what, v) in [
            ("input size (I)", self.input),
            ("output size (O)", self.output),
        ] {
            if v > MAX_FEATURES {
                return Err(Error::config(
                    format!("{what} {v} is too large: unroll handles at most {MAX_FEATURES}"),
                    "use a smaller vocabulary (e.g. --bytes for text) or fewer columns",
                ));
            }
        }
        for (what, v) in [
            ("input size (I)", self.input),
            ("hidden size (H)", self.hidden),
            ("output size (O)", self.output),
        ] {
            if v == 0 {
                return Err(Error::config(
                    format!("{what} is 0"),
                    "give a size of at least 1",
                ));
            }
        }
        Ok(())
    }
}

/// The parameters of a model in one flat vector (layout: [`ModelConfig::layout`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// The sizes.
    pub config: ModelConfig,
    /// `U`, `W`, `b`, `V`, `c` back to back, each row-major.
    pub data: Vec<F>,
}

impl<F: Float> Params<F> {
    /// All-zero parameters.
    pub fn zeros(config: ModelConfig) -> Self {
        Self {
            config,
            data: vec![F::zero(); config.num_params()],
        }
    }

    /// One parameter by name.
    pub fn get(&self, name: &str) -> &[F] {
        let slot = self.config.layout().slot(name).clone();
        &self.data[slot.offset..slot.offset + slot.len]
    }

    /// The same parameters in another float type.
    pub fn cast<G: Float>(&self) -> Params<G> {
        Params {
            config: self.config,
            data: self.data.iter().map(|&v| G::from(v).unwrap()).collect(),
        }
    }
}

impl Params<f32> {
    /// PyTorch's default initialisation for `nn.RNN` and `nn.Linear`: every weight and bias
    /// uniform in `[-1/√H, 1/√H)` (U, W, b) and `[-1/√H, 1/√H)` for V and c, whose fan-in is H too.
    pub fn init(config: ModelConfig, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let k = 1.0 / (config.hidden as f32).sqrt();
        let mut p = Self::zeros(config);
        for v in p.data.iter_mut() {
            *v = rng.random_range(-k..k);
        }
        p
    }
}

/// The inputs `x_t` of a batch, time-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// Token ids, (T, B).
    Tokens(Vec<u32>),
    /// Vectors, (T, B, I).
    Dense(Vec<f32>),
}

/// The targets of a batch, time-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Token ids, (T, B).
    Tokens(Vec<u32>),
    /// Vectors, (T, B, O).
    Dense(Vec<f32>),
}

/// One batch: B sequences of T steps, their targets and the initial hidden state.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// x_1 … x_T.
    pub inputs: Inputs,
    /// The target of each position.
    pub targets: Targets,
    /// h_0, (B, H).
    pub h0: Vec<f32>,
}

impl Batch {
    /// Checks that the batch fits the model: kinds, lengths and token ranges.
    pub fn validate(&self, config: &ModelConfig) -> Result<()> {
        let (b, t) = (self.batch, self.steps);
        if b == 0 || t == 0 {
            return Err(Error::config(
                format!("batch size B={b} and timesteps T={t}: both must be at least 1"),
                "pass --batch and --steps of 1 or more",
            ));
        }
        let n = b * t;
        let shape_err = |what: &str, got: usize, want: usize| {
            Err(Error::config(
                format!("{what} has {got} elements, the model and batch need {want}"),
                "check the batch's shape against B, T and the model's sizes",
            ))
        };
        match (&self.inputs, config.kind) {
            (Inputs::Tokens(x), InputKind::Tokens) => {
                if x.len() != n {
                    return shape_err("inputs (T, B)", x.len(), n);
                }
                if let Some(&bad) = x.iter().find(|&&v| v as usize >= config.input) {
                    return Err(Error::config(
                        format!(
                            "input token {bad} is outside the vocabulary [0, {})",
                            config.input
                        ),
                        "use token ids below the model's input size",
                    ));
                }
            }
            (Inputs::Dense(x), InputKind::Dense) => {
                if x.len() != n * config.input {
                    return shape_err("inputs (T, B, I)", x.len(), n * config.input);
                }
            }
            _ => {
                return Err(Error::config(
                    format!("the inputs are not of the model's kind ({})", config.kind),
                    "build the batch for the model's input kind",
                ));
            }
        }
        match (&self.targets, config.kind) {
            (Targets::Tokens(y), InputKind::Tokens) => {
                if y.len() != n {
                    return shape_err("targets (T, B)", y.len(), n);
                }
                if let Some(&bad) = y.iter().find(|&&v| v as usize >= config.output) {
                    return Err(Error::config(
                        format!(
                            "target token {bad} is outside the vocabulary [0, {})",
                            config.output
                        ),
                        "use token ids below the model's output size",
                    ));
                }
            }
            (Targets::Dense(y), InputKind::Dense) => {
                if y.len() != n * config.output {
                    return shape_err("targets (T, B, O)", y.len(), n * config.output);
                }
            }
            _ => {
                return Err(Error::config(
                    format!("the targets are not of the model's kind ({})", config.kind),
                    "build the batch for the model's input kind",
                ));
            }
        }
        if self.h0.len() != b * config.hidden {
            return shape_err("h0 (B, H)", self.h0.len(), b * config.hidden);
        }
        Ok(())
    }

    /// A random batch for checks and benchmarks: tokens uniform over the vocabulary, or dense
    /// inputs and targets uniform in [-1, 1); h_0 zero unless `random_h0`.
    pub fn random(
        config: &ModelConfig,
        batch: usize,
        steps: usize,
        random_h0: bool,
        seed: u64,
    ) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = batch * steps;
        let (inputs, targets) = match config.kind {
            InputKind::Tokens => (
                Inputs::Tokens(
                    (0..n)
                        .map(|_| rng.random_range(0..config.input as u32))
                        .collect(),
                ),
                Targets::Tokens(
                    (0..n)
                        .map(|_| rng.random_range(0..config.output as u32))
                        .collect(),
                ),
            ),
            InputKind::Dense => (
                Inputs::Dense(
                    (0..n * config.input)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                ),
                Targets::Dense(
                    (0..n * config.output)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                ),
            ),
        };
        let h0 = if random_h0 {
            (0..batch * config.hidden)
                .map(|_| rng.random_range(-0.9..0.9))
                .collect()
        } else {
            vec![0.0; batch * config.hidden]
        };
        Self {
            batch,
            steps,
            inputs,
            targets,
            h0,
        }
    }
}

/// Everything one training step computes, by either path.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput<F> {
    /// The mean loss over the B·T positions.
    pub loss: F,
    /// h_0 … h_T, (T+1, B, H).
    pub hs: Vec<F>,
    /// y_1 … y_T, (T, B, O).
    pub logits: Vec<F>,
    /// dU, dW, db, dV, dc in the parameter layout.
    pub grads: Vec<F>,
    /// ∂L/∂h_0, (B, H).
    pub dh0: Vec<F>,
}

/// A named tensor in f64, for comparisons and dumps.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// `loss`, `hs`, `logits`, `dU`, `dW`, `db`, `dV`, `dc` or `dh0`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The values.
    pub data: Vec<f64>,
}

impl<F: Float> StepOutput<F> {
    /// The step's results by name, in the oracle's layout: `hs` is h_1 … h_T, (T, B, H).
    pub fn tensors(&self, config: &ModelConfig, batch: usize, steps: usize) -> Vec<NamedTensor> {
        let to64 = |v: &[F]| v.iter().map(|x| x.to_f64().unwrap()).collect::<Vec<f64>>();
        let h = config.hidden;
        let mut out = vec![
            NamedTensor {
                name: "loss".into(),
                shape: vec![],
                data: vec![self.loss.to_f64().unwrap()],
            },
            NamedTensor {
                name: "hs".into(),
                shape: vec![steps, batch, h],
                data: to64(&self.hs[batch * h..]),
            },
            NamedTensor {
                name: "logits".into(),
                shape: vec![steps, batch, config.output],
                data: to64(&self.logits),
            },
        ];
        for slot in config.layout().slots {
            out.push(NamedTensor {
                name: format!("d{}", slot.name),
                shape: slot.shape.clone(),
                data: to64(&self.grads[slot.offset..slot.offset + slot.len]),
            });
        }
        out.push(NamedTensor {
            name: "dh0".into(),
            shape: vec![batch, h],
            data: to64(&self.dh0),
        });
        out
    }
}
