//! The flags of whole-sequence models: a reverse direction, the head, and each sequence's own
//! length (shared by the commands that build such a model).

use crate::args_given::Given;
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

/// A bidirectional model and its head.
#[derive(Args, Clone)]
pub(crate) struct SequenceArgs {
    /// Run every layer in both directions (`torch.nn.{RNN,GRU,LSTM}(bidirectional=True)`).
    #[arg(long)]
    pub(crate) bidirectional: bool,
    /// What the decoder reads: every step's output (`per-step`, the default of next-step
    /// models), or one vector per sequence classified against one label (`last`, the default
    /// of --task classify; `mean`).
    #[arg(long, value_enum)]
    pub(crate) head: Option<HeadArg>,
}

/// Each sequence's own length, for a generated batch.
#[derive(Args, Clone)]
pub(crate) struct LengthsArg {
    /// Each sequence's own length, B values in 1..=T separated by commas (e.g. 32,7,1); steps
    /// past it are padding, as in `pack_padded_sequence`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) lengths: Option<Vec<usize>>,
}

impl SequenceArgs {
    /// The flags' ids, for refusing them together.
    pub(crate) const IDS: [&'static str; 2] = ["bidirectional", "head"];

    /// The head asked for, if any.
    pub(crate) fn head(&self) -> Option<Head> {
        self.head.map(|h| match h {
            HeadArg::PerStep => Head::PerStep,
            HeadArg::Last => Head::Last,
            HeadArg::Mean => Head::Mean,
        })
    }

    /// The model with the flags' direction and head (per step unless given).
    pub(crate) fn apply(&self, config: ModelConfig) -> ModelConfig {
        ModelConfig {
            bidirectional: self.bidirectional,
            ..config.with_head(self.head().unwrap_or_default())
        }
    }

    /// `train`'s rules: a reverse direction, a head and a validation file are a classifier's;
    /// a classifier has a sequence head, batches as long as their longest sequence, no sample.
    pub(crate) fn check_train(&self, given: &Given<'_>, classify: bool) -> anyhow::Result<()> {
        given.refuse(
            &[Self::IDS.as_slice(), &["val"]].concat(),
            classify,
            "--bidirectional, --head and --val are for --task classify (whole sequences; a \
             next-step model reads one direction and predicts every step)",
        )?;
        given.refuse(
            &["seq_len", "sample_len"],
            !classify,
            "a classifier's batches are as long as their longest sequence, and it prints no \
             sample",
        )?;
        if classify && self.head() == Some(Head::PerStep) {
            anyhow::bail!(
                "--head per-step does not apply to --task classify: a classifier has one label \
                 per sequence\n  hint: pass --head last (the default) or --head mean"
            );
        }
        Ok(())
    }
}

/// `unroll predict`'s flags.
#[derive(Args)]
pub(crate) struct PredictArgs {
    /// The checkpoint of a classifier (`train --task classify`: model.safetensors or
    /// best.safetensors).
    #[arg(long)]
    pub(crate) checkpoint: std::path::PathBuf,
    /// The labelled sequences to classify: a `.ts` file, or `label<TAB>text` lines.
    #[arg(long)]
    pub(crate) data: std::path::PathBuf,
    /// The CSV to write: one row per sequence, its true and predicted class and every class's
    /// probability (a new file, or one `unroll predict` wrote).
    #[arg(long, default_value = "predictions.csv")]
    pub(crate) out: std::path::PathBuf,
    /// The most bytes --data may hold (the file is read into memory whole).
    #[arg(long, default_value_t = unroll::data::DEFAULT_MAX_BYTES)]
    pub(crate) max_bytes: u64,
    /// cpu (default: the reference path) or gpu.
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) device: crate::args_device::Device,
    #[command(flatten)]
    pub(crate) adapter: crate::args_device::AdapterArgs,
}
