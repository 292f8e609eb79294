//! The flags of whole-sequence models: a reverse direction, the head, and each sequence's own
//! length (shared by the commands that build such a model).

use clap::{Args, ValueEnum};
use unroll::model::{Head, ModelConfig};

/// What the decoder reads.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum HeadArg {
    /// y_t at every step, against a target per step.
    PerStep,
    /// One y per sequence from the top layer's last state(s), against a label.
    Last,
    /// One y per sequence from the mean of the top layer's outputs, against a label.
    Mean,
}

/// A bidirectional model, its head, and the lengths of a generated batch.
#[derive(Args, Clone)]
pub(crate) struct SequenceArgs {
    /// Run every layer in both directions (`torch.nn.{RNN,GRU,LSTM}(bidirectional=True)`).
    #[arg(long)]
    pub(crate) bidirectional: bool,
    /// What the decoder reads: every step's output, or one vector per sequence (`last`,
    /// `mean`) classified against one label.
    #[arg(long, value_enum, default_value = "per-step")]
    pub(crate) head: HeadArg,
    /// Each sequence's own length, B values in 1..=T separated by commas (e.g. 32,7,1); steps
    /// past it are padding, as in `pack_padded_sequence`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) lengths: Option<Vec<usize>>,
}

impl SequenceArgs {
    /// The flags' ids, for refusing them together.
    pub(crate) const IDS: [&'static str; 3] = ["bidirectional", "head", "lengths"];

    /// The model with the flags' direction and head.
    pub(crate) fn apply(&self, config: ModelConfig) -> ModelConfig {
        let head = match self.head {
            HeadArg::PerStep => Head::PerStep,
            HeadArg::Last => Head::Last,
            HeadArg::Mean => Head::Mean,
        };
        ModelConfig {
            bidirectional: self.bidirectional,
            ..config.with_head(head)
        }
    }
}
