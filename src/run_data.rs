//! The data of a run: text or series, split into training streams and validation chunks, and
//! what a checkpoint keeps to read it the same way again.

use crate::config::{Task, TrainConfig};
use crate::data::{Corpus, Streams, builtin_corpus, read_data};
use crate::dataset::Validation;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::run_input::{Data, Encoding};
use crate::series;

/// The bytes of per-position buffers (outputs, and four of H: pre, hs, dh, dA) an evaluation
/// chunk may add beyond the training step's: wider chunks mean fewer dispatches and waits to
/// score the whole held-out part.
const EVAL_CHUNK_BYTES: usize = 64 << 20;

/// Streams for the validation tail: at least B (when the tail has them) and up to 64, as many as
/// keep a chunk's buffers within [`EVAL_CHUNK_BYTES`], and no more than the tail holds.
fn val_batch(
    len: usize,
    batch: usize,
    seq_len: usize,
    outputs: usize,
    hidden: usize,
) -> Result<usize> {
    let fit = EVAL_CHUNK_BYTES / (seq_len * (outputs + 4 * hidden) * 4).max(1);
    let b = (len / (seq_len + 1)).min(batch.max(fit.min(64)));
    if b == 0 {
        return Err(Error::config(
            format!(
                "the validation data has {len} positions: too few for one chunk of {} (seq-len + 1)",
                seq_len + 1
            ),
            "raise --val-fraction, use more data, or a smaller --seq-len",
        ));
    }
    Ok(b)
}

/// Reads the run's data (the checkpoint's encoding when resuming) and splits it into training
/// chunks and a validation part.
pub(crate) fn load_data(cfg: &TrainConfig, max_bytes: u64, enc: Encoding) -> Result<Data> {
    let Encoding {
        vocab,
        normalization,
        classes,
    } = enc;
    match cfg.task {
        Task::Classify => crate::run_classify::load(cfg, max_bytes, (vocab, classes)),
        Task::Text => {
            let text = match &cfg.data {
                Some(path) => read_data(path, max_bytes)?,
                None => builtin_corpus(20_000, cfg.seed).into_bytes(),
            };
            let resumed = vocab.is_some();
            let corpus =
                Corpus::new(&text, vocab, cfg.bytes, cfg.val_fraction).map_err(|e| {
                    match (resumed, e) {
                        (true, Error::Config { problem, .. }) => Error::config(
                            format!("the data does not fit the checkpoint's vocabulary: {problem}"),
                            "resume with the data the checkpoint was trained on",
                        ),
                        (_, e) => e,
                    }
                })?;
            let streams = Streams::new(&corpus.train, cfg.batch, cfg.seq_len, "training")?;
            let vb = val_batch(
                corpus.val.len(),
                cfg.batch,
                cfg.seq_len,
                corpus.vocab.len(),
                cfg.hidden,
            )?;
            let val_streams = Streams::new(&corpus.val, vb, cfg.seq_len, "validation")?;
            let chunks = match cfg.val_chunks {
                0 => val_streams.chunks_per_epoch(),
                n => val_streams.chunks_per_epoch().min(n),
            };
            let val = (0..chunks).map(|k| val_streams.chunk(k)).collect();
            let n = corpus.vocab.len();
            Ok(Data {
                config: ModelConfig::tokens(n, cfg.hidden).with_cell(cfg.cell, cfg.layers),
                positions_per_chunk: (cfg.batch * cfg.seq_len) as f64,
                steps: cfg.seq_len,
                train: Box::new(streams),
                val: Validation::Streams(val),
                train_split: None,
                classes: None,
                padding: None,
                baseline: corpus.unigram_entropy(),
                unigram: corpus.unigram_counts(),
                vocab: Some(corpus.vocab),
                normalization: None,
            })
        }
        Task::Series => {
            let s = series::load(cfg, normalization, max_bytes)?;
            Ok(Data {
                config: ModelConfig::dense(s.inputs, cfg.hidden, s.outputs)
                    .with_cell(cfg.cell, cfg.layers),
                baseline: s.naive_val_loss,
                positions_per_chunk: (cfg.batch * cfg.seq_len) as f64,
                steps: cfg.seq_len,
                train: Box::new(s.train),
                val: Validation::Streams(s.val),
                train_split: None,
                classes: None,
                padding: None,
                unigram: vec![],
                vocab: None,
                normalization: Some(s.normalization),
            })
        }
    }
}
