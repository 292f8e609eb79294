//! A model's shapes, its parameters, batches and the result of one training step.
//!
//! Dimensions, used throughout the crate: B batch, T timesteps, I input size, H hidden size,
//! O output size (= vocabulary size for text), L layers, G gates per cell.
//!
//! ```text
//! layer l, t = 1..T:  h_t (and c_t) = cell(U x_t + b_ih, W h_{t-1} + b_hh)   (see crate::cell)
//!                     x_t of layer l+1 = h_t of layer l
//! y_t = V h_t + c     (the top layer's h_t)
//! ```
//!
//! Parameters live in one contiguous vector laid out by the model's parameter table (PyTorch's
//! names, shapes and order; [`crate::param_table::ParamTable`]). Gradients and optimizer moments use the same layout, so the
//! optimizer is one flat loop over all of them (on the CPU and on the GPU).

use crate::cell::Cell;
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
    /// The cell of every layer (checkpoints written before cells existed: the tanh RNN).
    #[serde(default)]
    pub cell: Cell,
    /// L: stacked layers (checkpoints written before layers existed: 1).
    #[serde(default = "one_layer")]
    pub layers: usize,
}

fn one_layer() -> usize {
    1
}

impl std::fmt::Display for ModelConfig {
    /// The model in words: `2 layers of lstm, I=65 H=128 O=65, tokens`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} layer{} of {}, I={} H={} O={}, {}",
            self.layers,
            if self.layers == 1 { "" } else { "s" },
            self.cell.name(),
            self.input,
            self.hidden,
            self.output,
            self.kind
        )
    }
}

/// The most layers accepted.
pub const MAX_LAYERS: usize = 64;

/// The largest hidden size accepted (W then takes 1 GiB).
pub const MAX_HIDDEN: usize = 16_384;

/// The largest input and output sizes (I, O): 2^20, more than the Unicode code points a text
/// vocabulary can hold. (A matmul over O columns needs O/32 workgroups in one grid dimension,
/// which holds 65,535.)
pub const MAX_FEATURES: usize = 1 << 20;

impl ModelConfig {
    /// A text model over a vocabulary of `vocab` tokens.
    pub fn tokens(vocab: usize, hidden: usize) -> Self {
        Self {
            kind: InputKind::Tokens,
            input: vocab,
            hidden,
            output: vocab,
            cell: Cell::Rnn,
            layers: 1,
        }
    }

    /// A model on dense vectors.
    pub fn dense(input: usize, hidden: usize, output: usize) -> Self {
        Self {
            kind: InputKind::Dense,
            input,
            hidden,
            output,
            cell: Cell::Rnn,
            layers: 1,
        }
    }

    /// The same sizes with `layers` layers of `cell`.
    pub fn with_cell(self, cell: Cell, layers: usize) -> Self {
        Self {
            cell,
            layers,
            ..self
        }
    }

    /// The one Elman layer with tanh that the fused GPU fast path runs.
    pub fn is_elman(&self) -> bool {
        self.cell == Cell::Rnn && self.layers == 1
    }

    /// L·B·H: one state (h or c) of every layer for B streams.
    pub fn state_len(&self, batch: usize) -> usize {
        self.layers * batch * self.hidden
    }

    /// The carried state of B streams: every layer's h, then (LSTM) every layer's c.
    pub fn carry_len(&self, batch: usize) -> usize {
        self.state_len(batch) * (1 + self.cell.has_cell_state() as usize)
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.table().len
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
        if self.layers > MAX_LAYERS {
            return Err(Error::config(
                format!("{} layers are more than unroll stacks", self.layers),
                format!("pass a --layers of at most {MAX_LAYERS}"),
            ));
        }
        for (what, v) in [
            ("input size (I)", self.input),
            ("hidden size (H)", self.hidden),
            ("output size (O)", self.output),
            ("number of layers (L)", self.layers),
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

/// The parameters of a model in one flat vector (layout: [`ModelConfig::table`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// The sizes.
    pub config: ModelConfig,
    /// Every parameter of the table back to back, each row-major.
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

    /// One parameter by its name in the table (`rnn.weight_ih_l0`, …, `decoder.bias`).
    pub fn get(&self, name: &str) -> &[F] {
        self.config.table().slice(&self.data, name)
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
    /// PyTorch's default initialisation for `nn.RNN`, `nn.GRU`, `nn.LSTM` and `nn.Linear`: every
    /// weight and bias uniform in `[-1/√H, 1/√H)` (the decoder's fan-in is H too).
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

/// One batch: B sequences of T steps, their targets and every layer's initial state.
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
    /// h_0 of every layer, (L, B, H).
    pub h0: Vec<f32>,
    /// c_0 of every layer, (L, B, H) (LSTM; empty otherwise).
    pub c0: Vec<f32>,
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
        let state = config.state_len(b);
        if self.h0.len() != state {
            return shape_err("h0 (L, B, H)", self.h0.len(), state);
        }
        let c0 = if config.cell.has_cell_state() {
            state
        } else {
            0
        };
        if self.c0.len() != c0 {
            return shape_err("c0 (L, B, H)", self.c0.len(), c0);
        }
        Ok(())
    }

    /// A random batch for checks and benchmarks: tokens uniform over the vocabulary, or dense
    /// inputs and targets uniform in [-1, 1); h_0 (and c_0) zero unless `random_h0`.
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
        let n = config.state_len(batch);
        let mut state = |on: bool| -> Vec<f32> {
            match on {
                true if random_h0 => (0..n).map(|_| rng.random_range(-0.9..0.9)).collect(),
                true => vec![0.0; n],
                false => vec![],
            }
        };
        let h0 = state(true);
        let c0 = state(config.cell.has_cell_state());
        Self {
            batch,
            steps,
            inputs,
            targets,
            h0,
            c0,
        }
    }
}

/// Everything one training step computes, by either path.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput<F> {
    /// The mean loss over the B·T positions.
    pub loss: F,
    /// The top layer's h_1 … h_T, (T, B, H).
    pub output: Vec<F>,
    /// Every layer's h_T, (L, B, H).
    pub h_n: Vec<F>,
    /// Every layer's c_T, (L, B, H) (LSTM; empty otherwise).
    pub c_n: Vec<F>,
    /// y_1 … y_T, (T, B, O).
    pub logits: Vec<F>,
    /// ∂L/∂θ in the table's layout, (P).
    pub grads: Vec<F>,
    /// ∂L/∂h_0, (L, B, H).
    pub dh0: Vec<F>,
    /// ∂L/∂c_0, (L, B, H) (LSTM; empty otherwise).
    pub dc0: Vec<F>,
}

/// A named tensor in f64, for comparisons and dumps.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// `loss`, `output`, `h_n`, `c_n`, `logits`, `grad.h0`, `grad.c0` or `grad.<parameter>`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The values.
    pub data: Vec<f64>,
}

impl<F: Float> StepOutput<F> {
    /// The step's results under the names PyTorch's oracle uses (`tests/fixtures/cells/`).
    pub fn tensors(&self, config: &ModelConfig, batch: usize, steps: usize) -> Vec<NamedTensor> {
        let (nh, no, nl) = (config.hidden, config.output, config.layers);
        let t = |name: &str, shape: Vec<usize>, v: &[F]| NamedTensor {
            name: name.into(),
            shape,
            data: v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect(),
        };
        let mut all = vec![
            t("loss", vec![], &[self.loss]),
            t("output", vec![steps, batch, nh], &self.output),
            t("h_n", vec![nl, batch, nh], &self.h_n),
            t("logits", vec![steps, batch, no], &self.logits),
            t("grad.h0", vec![nl, batch, nh], &self.dh0),
        ];
        if config.cell.has_cell_state() {
            all.push(t("c_n", vec![nl, batch, nh], &self.c_n));
            all.push(t("grad.c0", vec![nl, batch, nh], &self.dc0));
        }
        for e in config.table().entries {
            let g = &self.grads[e.offset..e.offset + e.len];
            all.push(t(&format!("grad.{}", e.name), e.shape.clone(), g));
        }
        all
    }
}

/// The names [`StepOutput::tensors`] gives a model's results, in order.
pub fn result_names(config: &ModelConfig) -> Vec<String> {
    let mut names: Vec<String> = ["loss", "output", "h_n", "logits", "grad.h0"]
        .into_iter()
        .map(String::from)
        .collect();
    if config.cell.has_cell_state() {
        names.extend(["c_n".to_string(), "grad.c0".to_string()]);
    }
    names.extend(
        config
            .table()
            .entries
            .iter()
            .map(|e| format!("grad.{}", e.name)),
    );
    names
}
