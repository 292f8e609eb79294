//! The configuration of a training run, as its checkpoints store it: a leaf module of plain
//! data, which the training loop, the checkpoint and the data readers all use.

use crate::cell::Cell;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::optim::OptimizerConfig;
use std::path::PathBuf;

/// The largest `--batch` and `--seq-len` accepted (each alone).
pub const MAX_BATCH_OR_SEQ_LEN: usize = 1 << 24;
/// The most positions (B·T) a step may hold.
pub const MAX_ROWS: usize = 1 << 28;

/// What the model learns from.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Next-character prediction on text.
    Text,
    /// Next-step prediction on numeric series from CSV.
    Series,
    /// One class per sequence: labelled sequences of a `.ts` file (UEA/UCR) or of
    /// `label<TAB>text` lines.
    Classify,
}

/// Where the training runs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The GPU path (default).
    Gpu,
    /// The CPU reference: slow, and bitwise repeatable.
    Cpu,
}

/// The configuration of a run, stored in its checkpoints; `unroll train` takes its flags from it
/// (the cell and depth from the CLI's cell flags, which set `cell` and `layers`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct TrainConfig {
    /// text: next-character prediction; series: next-step prediction on a CSV; classify: one
    /// class per sequence.
    #[arg(long, value_enum, default_value_t = TrainConfig::default().task)]
    pub task: Task,
    /// The data: a text file, a CSV for --task series, a `.ts` file or `label<TAB>text` lines
    /// for --task classify (default: the built-in data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Classify: the validation (test) split, of --data's kind (default: a stratified
    /// --val-fraction of --data).
    #[serde(default)]
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Text: use the 256 byte values as the vocabulary (any file, UTF-8 or not).
    #[arg(long)]
    pub bytes: bool,
    /// Series: input columns, by name or 0-based index (default: all).
    #[serde(default)]
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Series: target columns (default: the input columns).
    #[serde(default)]
    #[arg(
        id = "target",
        long = "target",
        value_name = "TARGET",
        value_delimiter = ','
    )]
    pub targets: Vec<String>,
    /// Hidden size H.
    #[arg(long, default_value_t = TrainConfig::default().hidden)]
    pub hidden: usize,
    /// The cell of every layer (runs before cells existed: the tanh RNN).
    #[serde(default)]
    #[arg(skip)]
    pub cell: Cell,
    /// L: stacked layers (runs before layers existed: 1).
    #[serde(default = "one")]
    #[arg(skip = 1usize)]
    pub layers: usize,
    /// Every layer in both directions (set from the CLI's --bidirectional).
    #[serde(default)]
    #[arg(skip)]
    pub bidirectional: bool,
    /// What the decoder reads (set from the CLI's --head; classification: `last` unless given).
    #[serde(default)]
    #[arg(skip)]
    pub head: crate::model::Head,
    /// Dropout on the output of every layer but the top one, in training (as PyTorch's
    /// `dropout`; needs --layers 2 or more).
    #[serde(default)]
    #[arg(long, default_value_t = TrainConfig::default().dropout)]
    pub dropout: f32,
    /// Parallel streams B.
    #[arg(long, default_value_t = TrainConfig::default().batch)]
    pub batch: usize,
    /// Timesteps per chunk T (truncated BPTT length).
    #[arg(long, default_value_t = TrainConfig::default().seq_len)]
    pub seq_len: usize,
    /// Training steps in all (with --resume: the total to reach).
    #[arg(long, default_value_t = TrainConfig::default().iters)]
    pub iters: u64,
    /// The optimizer.
    #[command(flatten)]
    pub optim: OptimizerConfig,
    /// Fraction of the data held out (from its end) for validation.
    #[arg(long, default_value_t = TrainConfig::default().val_fraction, allow_negative_numbers = true)]
    pub val_fraction: f64,
    /// Evaluate on the whole validation data every N steps (one loss read back per chunk; such a
    /// step reports its training loss too).
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    pub eval_every: u64,
    /// Report the training loss every N steps (read back from the GPU; other training steps do
    /// not wait for it).
    #[arg(long, default_value_t = TrainConfig::default().log_every)]
    pub log_every: u64,
    /// Write a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: u64,
    /// End the run after N evaluations in a row that did not lower the best validation loss
    /// (0: run every step). The best model is kept either way (best.safetensors).
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub early_stop: u64,
    /// Evaluate on at most this many chunks of the validation data (0: all of it).
    #[serde(default)]
    #[arg(skip)]
    pub val_chunks: usize,
    /// Seed of the initial parameters and of the built-in data.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Characters of the sample printed at the end (text).
    #[arg(long, default_value_t = TrainConfig::default().sample_len)]
    pub sample_len: usize,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            task: Task::Text,
            data: None,
            val: None,
            bytes: false,
            columns: vec![],
            targets: vec![],
            hidden: 128,
            cell: Cell::Rnn,
            layers: 1,
            bidirectional: false,
            head: crate::model::Head::PerStep,
            dropout: 0.0,
            batch: 32,
            seq_len: 32,
            iters: 1500,
            optim: OptimizerConfig::default(),
            val_fraction: 0.1,
            eval_every: 100,
            log_every: 10,
            checkpoint_every: 500,
            early_stop: 0,
            val_chunks: 0,
            seed: 1,
            sample_len: 300,
        }
    }
}

impl TrainConfig {
    /// The run's dropout, where it has any.
    pub fn dropout(&self) -> Option<crate::dropout::DropoutSpec> {
        (self.dropout > 0.0).then_some(crate::dropout::DropoutSpec {
            p: self.dropout,
            seed: self.seed,
        })
    }

    /// Rejects settings that cannot train, each with what to do instead.
    pub fn validate(&self) -> Result<()> {
        let positive = |what: &str, flag: &str, v: u64| {
            if v == 0 {
                Err(Error::config(
                    format!("{what} is 0"),
                    format!("pass {flag} of 1 or more"),
                ))
            } else {
                Ok(())
            }
        };
        positive("the hidden size", "--hidden", self.hidden as u64)?;
        positive("the batch size", "--batch", self.batch as u64)?;
        positive("the sequence length", "--seq-len", self.seq_len as u64)?;
        for (what, flag, v) in [
            ("the batch size", "--batch", self.batch),
            ("the sequence length", "--seq-len", self.seq_len),
        ] {
            if v > MAX_BATCH_OR_SEQ_LEN {
                return Err(Error::config(
                    format!("{what} {v} is too large"),
                    format!("pass {flag} of at most {MAX_BATCH_OR_SEQ_LEN}"),
                ));
            }
        }
        if self.batch * self.seq_len > MAX_ROWS {
            return Err(Error::config(
                format!(
                    "a batch of {} streams of {} timesteps is {} positions per step, more than {MAX_ROWS}",
                    self.batch,
                    self.seq_len,
                    self.batch * self.seq_len
                ),
                "lower --batch or --seq-len",
            ));
        }
        positive("the number of steps", "--iters", self.iters)?;
        positive("--log-every", "--log-every", self.log_every)?;
        positive("--eval-every", "--eval-every", self.eval_every)?;
        ModelConfig::tokens(1, self.hidden)
            .with_cell(self.cell, self.layers)
            .validate()?;
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return Err(Error::config(
                format!("dropout {} is not a probability in [0, 1)", self.dropout),
                "pass --dropout between 0 (off) and 1, e.g. 0.2",
            ));
        }
        if self.dropout > 0.0 && self.layers < 2 {
            return Err(Error::config(
                "dropout acts between stacked layers, and this model has one",
                "pass --layers 2 or more with --dropout, or leave --dropout out",
            ));
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return Err(Error::config(
                format!(
                    "validation fraction {} leaves no training or no validation data",
                    self.val_fraction
                ),
                "pass --val-fraction strictly between 0 and 1, e.g. 0.1",
            ));
        }
        self.optim.validate()
    }
}
