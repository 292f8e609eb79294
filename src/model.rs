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

pub use crate::batch::{Batch, Inputs, Targets};
use crate::cell::Cell;
use crate::error::{Error, Result};
pub use crate::step_output::{NamedTensor, StepOutput, result_names};
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

/// What the decoder reads and what the loss compares (PyTorch's usual sequence models).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Head {
    /// `y_t = V out_t + c` at every valid step, against a target per step (next-step models).
    #[default]
    PerStep,
    /// `y = V features + c` with the top layer's last state of each sequence as features
    /// (bidirectional: the forward state after its last step beside the reverse state after
    /// step 0, PyTorch's `cat(h_n[-2], h_n[-1])`), against one label per sequence.
    Last,
    /// `y = V features + c` with the mean of the top layer's outputs over each sequence's valid
    /// steps as features, against one label per sequence.
    Mean,
}

impl Head {
    /// Every head, in the order of [`Head::name`]'s list.
    pub const ALL: [Head; 3] = [Head::PerStep, Head::Last, Head::Mean];

    /// The head as the CLI and the case files name it.
    pub fn name(self) -> &'static str {
        match self {
            Head::PerStep => "per-step",
            Head::Last => "last",
            Head::Mean => "mean",
        }
    }

    /// The head of a [`Head::name`] (`step` too, as the oracle's file names spell it).
    pub fn from_name(name: &str) -> Option<Head> {
        match name {
            "step" => Some(Head::PerStep),
            _ => Head::ALL.into_iter().find(|h| h.name() == name),
        }
    }

    /// Whether the head classifies whole sequences (one label each) rather than every step.
    pub fn is_sequence(self) -> bool {
        self != Head::PerStep
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
    /// Every layer runs a reverse direction too, with its own parameters (`…_reverse`); the
    /// layer's output is then [h_fwd; h_rev], D = 2H wide.
    #[serde(default)]
    pub bidirectional: bool,
    /// What the decoder reads (checkpoints written before heads existed: per step).
    #[serde(default)]
    pub head: Head,
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
        )?;
        if self.bidirectional {
            f.write_str(", bidirectional")?;
        }
        if self.head != Head::PerStep {
            write!(f, ", {} head", self.head.name())?;
        }
        Ok(())
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
            bidirectional: false,
            head: Head::PerStep,
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
            bidirectional: false,
            head: Head::PerStep,
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

    /// The same model with a reverse direction in every layer.
    pub fn bidirectional(self) -> Self {
        Self {
            bidirectional: true,
            ..self
        }
    }

    /// The same model with another head.
    pub fn with_head(self, head: Head) -> Self {
        Self { head, ..self }
    }

    /// One tanh layer, one direction, a decoder per step: the model of the first checkpoints.
    pub fn is_elman(&self) -> bool {
        self.cell == Cell::Rnn && self.layers == 1 && self.is_next_step()
    }

    /// One direction and a decoder per step: the models the GPU step runs.
    pub fn is_next_step(&self) -> bool {
        !self.bidirectional && self.head == Head::PerStep
    }

    /// ND: the directions of every layer (1, or 2 when bidirectional).
    pub fn directions(&self) -> usize {
        1 + self.bidirectional as usize
    }

    /// D = ND·H: the width of a layer's output, which the layer above and the decoder read.
    pub fn features(&self) -> usize {
        self.directions() * self.hidden
    }

    /// ND·L·B·H: one state (h or c) of every layer and direction for B streams, in PyTorch's
    /// order (layer-major, direction-minor).
    pub fn state_len(&self, batch: usize) -> usize {
        self.directions() * self.layers * batch * self.hidden
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
    /// weight and bias of the recurrence uniform in `[-1/√H, 1/√H)`, the decoder's in
    /// `[-1/√D, 1/√D)` with D its fan-in (H, or 2H after a bidirectional layer), drawn in the
    /// parameter table's order.
    pub fn init(config: ModelConfig, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let bound = |n: usize| 1.0 / (n as f32).sqrt();
        let (k, k_decoder) = (bound(config.hidden), bound(config.features()));
        let mut p = Self::zeros(config);
        let decoder = config
            .table()
            .get("decoder.weight")
            .map_or(p.data.len(), |e| e.offset);
        for (i, v) in p.data.iter_mut().enumerate() {
            let k = if i < decoder { k } else { k_decoder };
            *v = rng.random_range(-k..k);
        }
        p
    }
}
