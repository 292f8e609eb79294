//! What a run reads: its data as the training loop and the engine take it ([`Data`]), and the
//! encoding a resumed run reads it with ([`Encoding`]). Text and series are loaded by
//! [`crate::run_data`], labelled sequences by `run_classify`.

pub(crate) use crate::checkpoint::Classes;
use crate::data::Vocab;
use crate::dataset::{Dataset, Validation};
use crate::model::ModelConfig;
use crate::series::Normalization;

/// The data of a run: where chunks come from, and what the checkpoint must remember to read
/// the same data the same way.
pub(crate) struct Data {
    pub(crate) config: ModelConfig,
    pub(crate) train: Box<dyn Dataset>,
    pub(crate) val: Validation,
    /// Classification: the training split in batches, scored beside the validation split at
    /// every evaluation (its loss and accuracy, the model as it stands then).
    pub(crate) train_split: Option<Validation>,
    pub(crate) vocab: Option<Vocab>,
    pub(crate) normalization: Option<Normalization>,
    /// Classification: the class names and (dense) the channels' statistics.
    pub(crate) classes: Option<Classes>,
    pub(crate) baseline: f64,
    /// Text: how often each token occurs in the training part (the unigram model's sample
    /// scores the closing sample of the built-in corpus).
    pub(crate) unigram: Vec<f64>,
    /// Positions (valid steps) of one training chunk, for tokens/s.
    pub(crate) positions_per_chunk: f64,
    /// T of the engine: --seq-len for streams, the longest sequence for classification.
    pub(crate) steps: usize,
    /// Classification: the shapes of a pass's training batches (their padding).
    pub(crate) padding: Option<crate::sequences::Padding>,
}

/// What a resumed run reads its data with: the checkpoint's vocabulary, column statistics or
/// classes.
#[derive(Default)]
pub(crate) struct Encoding {
    pub(crate) vocab: Option<Vocab>,
    pub(crate) normalization: Option<Normalization>,
    pub(crate) classes: Option<Classes>,
}
