//! The data of a classification run: labelled sequences from a `.ts` file or `label<TAB>text`
//! lines, a validation file or a stratified held-out fraction, dense channels normalised by the
//! training split, and batches of similar lengths.

use crate::checkpoint::Classes;
use crate::config::TrainConfig;
use crate::data::{Vocab, read_data};
use crate::dataset::{SequenceBatches, Validation};
use crate::error::{Error, Result};
use crate::model::{Head, ModelConfig};
use crate::run_input::Data;
use crate::sequences::{LabelledSequences, Steps};
use std::path::Path;

/// The training sequences an evaluation scores: all of them where the training split holds no
/// more than this or than the validation split, else a fixed draw of the larger of the two.
const TRAINING_SCORED: usize = 1024;

/// Reads the training file (and the validation file) as the checkpoint's vocabulary and
/// classes say, where resuming.
pub(crate) fn load(
    cfg: &TrainConfig,
    max_bytes: u64,
    (vocab, classes): (Option<Vocab>, Option<Classes>),
) -> Result<Data> {
    let path = cfg.data.as_deref().ok_or_else(|| {
        Error::config(
            "--task classify has no built-in data",
            "pass --data FILE: a .ts file (UEA/UCR archive) or `label<TAB>text` lines",
        )
    })?;
    let names = classes.as_ref().map(|c| c.names.clone());
    let (set, vocab) = read(path, max_bytes, vocab, names.as_deref(), cfg.bytes)?;
    let (mut train, mut val) = match &cfg.val {
        Some(v) => {
            let (val, _) = read(v, max_bytes, vocab.clone(), Some(&set.classes), cfg.bytes)?;
            (set, val)
        }
        None => set.split_stratified(cfg.val_fraction, cfg.seed)?,
    };
    let channels = match classes.as_ref().map(|c| c.channels.clone()) {
        Some(stats) => stats,
        None => train.channel_stats(),
    };
    if let Some(stats) = &channels {
        check_channels(&train, stats)?;
        train.normalize(stats);
        val.normalize(stats);
    }
    let config = model(cfg, &train, vocab.as_ref())?;
    let baseline = frequency_loss(&train, &val);
    let batches = SequenceBatches::new(train.clone(), config, cfg.batch, cfg.seed);
    // An evaluation scores the training split too, or a fixed draw from it, so that its cost
    // does not grow with the training split.
    let scored = train.sample(val.len().max(TRAINING_SCORED), cfg.seed);
    let train_batches = SequenceBatches::new(scored, config, cfg.batch, cfg.seed).all();
    let valid: usize = (0..train.len()).map(|i| train.length(i)).sum();
    let val_batches = SequenceBatches::new(val, config, cfg.batch, cfg.seed).all();
    Ok(Data {
        config,
        positions_per_chunk: valid as f64
            / crate::dataset::Dataset::chunks_per_epoch(&batches) as f64,
        padding: Some(batches.padding()),
        steps: train
            .max_len()
            .max(val_batches.iter().map(|b| b.steps).max().unwrap_or(1)),
        train: Box::new(batches),
        val: Validation::Sequences(val_batches),
        train_split: Some(Validation::Sequences(train_batches)),
        vocab,
        normalization: None,
        classes: Some(Classes {
            names: train.classes.clone(),
            channels,
        }),
        baseline,
        unigram: vec![],
    })
}

/// A file of labelled sequences read as a trained classifier reads it: with its vocabulary
/// (text) and its classes.
pub(crate) fn read_labelled(
    path: &Path,
    max_bytes: u64,
    vocab: Option<Vocab>,
    classes: Option<&[String]>,
) -> Result<LabelledSequences> {
    let is_ts = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ts"));
    if is_ts == vocab.is_some() {
        return Err(Error::file(
            path,
            match is_ts {
                true => {
                    "is a .ts file of channels, and the model reads text\n  hint: pass \
                         `label<TAB>text` lines"
                }
                false => {
                    "is not a .ts file, and the model reads channels\n  hint: pass a \
                          .ts file of the model's channels"
                }
            },
        ));
    }
    Ok(read(path, max_bytes, vocab, classes, false)?.0)
}

/// A `.ts` file, or `label<TAB>text` lines of any other name.
fn read(
    path: &Path,
    max_bytes: u64,
    vocab: Option<Vocab>,
    classes: Option<&[String]>,
    bytes: bool,
) -> Result<(LabelledSequences, Option<Vocab>)> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ts"))
    {
        let set: LabelledSequences = crate::ts_file::read(path, max_bytes)?.into();
        if let Some(want) = classes.filter(|want| *want != set.classes.as_slice()) {
            return Err(Error::file(
                path,
                format!(
                    "declares the classes {}, and the model's are {}\n  hint: validate on a file \
                     of the same problem",
                    set.classes.join(" "),
                    want.join(" ")
                ),
            ));
        }
        return Ok((set, None));
    }
    let raw = read_data(path, max_bytes)?;
    let text = String::from_utf8_lossy(&raw);
    let vocab = match (vocab, bytes) {
        (Some(v), _) => v,
        (None, true) => Vocab::Bytes,
        (None, false) => Vocab::from_text(&texts_of(&text)),
    };
    let set = LabelledSequences::from_text(&text, &vocab, classes)
        .map_err(|e| Error::file(path, e.to_string()))?;
    Ok((set, Some(vocab)))
}

/// The texts of `label<TAB>text` lines, for their vocabulary.
fn texts_of(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.split_once('\t').map(|(_, t)| t.trim_end_matches('\r')))
        .collect()
}

/// The checkpoint's channel statistics must fit the data.
pub(crate) fn check_channels(
    set: &LabelledSequences,
    stats: &crate::sequences::ChannelStats,
) -> Result<()> {
    match &set.steps {
        Steps::Dense { channels, .. } if *channels != stats.mean.len() => Err(Error::config(
            format!(
                "the data has {channels} channels, the model {}",
                stats.mean.len()
            ),
            "use data of the model's channels",
        )),
        _ => Ok(()),
    }
}

/// The classifier: I = the channels (dense) or the vocabulary (text), O = the classes, the head
/// `last` unless another sequence head is asked for.
fn model(cfg: &TrainConfig, set: &LabelledSequences, vocab: Option<&Vocab>) -> Result<ModelConfig> {
    let no = set.classes.len();
    let config = match (&set.steps, vocab) {
        (Steps::Dense { channels, .. }, _) => ModelConfig::dense(*channels, cfg.hidden, no),
        (Steps::Tokens(_), Some(v)) => ModelConfig {
            output: no,
            ..ModelConfig::tokens(v.len(), cfg.hidden)
        },
        (Steps::Tokens(_), None) => unreachable!("text sequences come with their vocabulary"),
    };
    let head = match cfg.head {
        Head::PerStep => Head::Last,
        head => head,
    };
    let config = ModelConfig {
        bidirectional: cfg.bidirectional,
        ..config.with_cell(cfg.cell, cfg.layers).with_head(head)
    };
    config.validate()?;
    Ok(config)
}

/// The validation loss of predicting every sequence's class by the training split's class
/// frequencies (each count one more, so that no class has none): the loss to beat.
fn frequency_loss(train: &LabelledSequences, val: &LabelledSequences) -> f64 {
    let mut counts = vec![1.0f64; train.classes.len()];
    train.labels.iter().for_each(|&l| counts[l] += 1.0);
    let total: f64 = counts.iter().sum();
    let nll: f64 = val.labels.iter().map(|&l| -(counts[l] / total).ln()).sum();
    nll / val.len().max(1) as f64
}
