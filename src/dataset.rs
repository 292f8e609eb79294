//! The one data seam: what the training loop, the evaluation and [`crate::Trainer`] read, the
//! same for every task.
//!
//! A [`Dataset`] cuts its data into chunks, a pass (epoch) at a time. A chunk is either
//! - streams ([`Chunk::Streams`]): T steps of B long streams, each chunk continuing the one
//!   before it, the carried state zeroed at the start of a pass (text, series: truncated BPTT);
//! - whole sequences ([`Chunk::Sequences`]): a batch of B labelled sequences of their own
//!   lengths, each starting from a zero state (classification).
//!
//! Its validation part ([`Validation`]) is scored the same way: the mean loss, and the accuracy
//! where each sequence has a class.

use crate::batch::{Batch, Targets};
use crate::engine::Engine;
use crate::error::Result;
use crate::gpu::StepStats;
use crate::model::{Inputs, ModelConfig};

/// One training step's data.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    /// T steps of B streams, time-major, continuing the chunk before.
    Streams {
        /// x_t of each stream.
        inputs: Inputs,
        /// The target of each position.
        targets: Targets,
    },
    /// B whole sequences with their lengths and labels, from a zero state.
    Sequences(Batch),
}

/// A training set cut into chunks.
pub trait Dataset {
    /// Chunks in one pass.
    fn chunks_per_epoch(&self) -> usize;
    /// Chunk `k` of pass `epoch` (a pass may order its chunks by its number).
    fn chunk(&self, epoch: u64, k: usize) -> Chunk;
    /// Where each stream's chunk `k` starts, for a checkpoint (empty where nothing carries).
    fn positions(&self, _k: usize) -> Vec<u64> {
        vec![]
    }
}

impl Dataset for crate::data::Streams {
    fn chunks_per_epoch(&self) -> usize {
        crate::data::Streams::chunks_per_epoch(self)
    }
    fn chunk(&self, _epoch: u64, k: usize) -> Chunk {
        let (inputs, targets) = crate::data::Streams::chunk(self, k);
        Chunk::Streams { inputs, targets }
    }
    fn positions(&self, k: usize) -> Vec<u64> {
        crate::data::Streams::positions(self, k)
    }
}

impl Dataset for crate::series::SeriesStreams {
    fn chunks_per_epoch(&self) -> usize {
        crate::series::SeriesStreams::chunks_per_epoch(self)
    }
    fn chunk(&self, _epoch: u64, k: usize) -> Chunk {
        let (inputs, targets) = crate::series::SeriesStreams::chunk(self, k);
        Chunk::Streams { inputs, targets }
    }
    fn positions(&self, k: usize) -> Vec<u64> {
        crate::series::SeriesStreams::positions(self, k)
    }
}

/// Labelled sequences in batches of similar lengths, reordered every pass.
pub struct SequenceBatches {
    set: crate::sequences::LabelledSequences,
    config: ModelConfig,
    batch: usize,
    seed: u64,
    /// The last pass's batches, and its number (drawn once a pass, not once a step).
    pass: std::sync::Mutex<Option<(u64, Vec<Vec<usize>>)>>,
}

impl SequenceBatches {
    /// Batches of at most `batch` sequences of `set` for a model of `config` (a sequence head).
    pub fn new(
        set: crate::sequences::LabelledSequences,
        config: ModelConfig,
        batch: usize,
        seed: u64,
    ) -> Self {
        Self {
            set,
            config,
            batch,
            seed,
            pass: Default::default(),
        }
    }

    /// Pass `epoch`'s batches.
    fn buckets(&self, epoch: u64) -> Vec<Vec<usize>> {
        self.set.buckets(self.batch, self.seed.wrapping_add(epoch))
    }

    /// The share of a pass's steps that are padding.
    pub fn padded_share(&self) -> f64 {
        self.padding().share(|steps| steps)
    }

    /// The shapes of a pass's batches, for the padding an engine computes with them.
    pub fn padding(&self) -> crate::sequences::Padding {
        self.set.padding(&self.buckets(0))
    }

    /// Every batch once, in a fixed order (a validation set's).
    pub fn all(&self) -> Vec<Batch> {
        self.buckets(0)
            .iter()
            .map(|b| self.set.batch(b, &self.config))
            .collect()
    }
}

impl Dataset for SequenceBatches {
    fn chunks_per_epoch(&self) -> usize {
        self.set.len().div_ceil(self.batch.max(1))
    }
    fn chunk(&self, epoch: u64, k: usize) -> Chunk {
        let mut pass = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        if pass.as_ref().is_none_or(|(e, _)| *e != epoch) {
            *pass = Some((epoch, self.buckets(epoch)));
        }
        let (_, runs) = pass.as_ref().expect("the pass was just drawn");
        Chunk::Sequences(self.set.batch(&runs[k], &self.config))
    }
}

/// One step of an engine on a chunk: streams continue the state the last chunk left (zero when
/// `reset`), sequences start from zero.
pub fn train_on(
    engine: &mut dyn Engine,
    chunk: &Chunk,
    reset: bool,
    report: bool,
) -> Result<Option<StepStats>> {
    match chunk {
        Chunk::Streams { inputs, targets } => engine.train_step(inputs, targets, reset, report),
        Chunk::Sequences(batch) => engine.train_sequences(batch, report),
    }
}

/// A validation part and how it scores.
pub enum Validation {
    /// Chunks of streams, the state carried through them.
    Streams(Vec<(Inputs, Targets)>),
    /// Batches of labelled sequences.
    Sequences(Vec<Batch>),
}

/// What an evaluation found.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The mean loss: over the chunks (streams), over the sequences (classification).
    pub loss: f32,
    /// The share of sequences whose most likely class is their label (classification).
    pub accuracy: Option<f64>,
    /// `counts[label][predicted]` (classification).
    pub confusion: Vec<Vec<u64>>,
}

impl Validation {
    /// B of the stream chunks (0 for sequences): what an engine's evaluation is built for.
    pub fn stream_batch(&self, steps: usize, input: usize) -> usize {
        match self {
            Validation::Streams(chunks) => match chunks.first() {
                Some((Inputs::Tokens(x), _)) => x.len() / steps,
                Some((Inputs::Dense(x), _)) => x.len() / steps / input,
                None => 0,
            },
            Validation::Sequences(_) => 0,
        }
    }

    /// Scores the engine's current model.
    pub fn evaluate(&self, engine: &mut dyn Engine) -> Result<Score> {
        match self {
            Validation::Streams(chunks) => Ok(Score {
                loss: engine.evaluate(chunks)?,
                accuracy: None,
                confusion: vec![],
            }),
            Validation::Sequences(batches) => {
                let mut s = Classified::default();
                for b in batches {
                    s.add(&engine.predict(b)?, b);
                }
                Ok(s.score())
            }
        }
    }
}

/// Losses and predictions summed over batches.
#[derive(Default)]
struct Classified {
    loss: f64,
    n: usize,
    confusion: Vec<Vec<u64>>,
}

impl Classified {
    /// A batch's logits (B, O) against its labels.
    fn add(&mut self, logits: &[f32], batch: &Batch) {
        let Targets::Labels(labels) = &batch.targets else {
            return;
        };
        let no = logits.len() / labels.len().max(1);
        if self.confusion.is_empty() {
            self.confusion = vec![vec![0; no]; no];
        }
        for (row, &label) in logits.chunks(no).zip(labels) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let sum: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            self.loss += m + sum.ln() - row[label as usize] as f64;
            let best = (0..no).fold(0, |a, k| if row[k] > row[a] { k } else { a });
            self.confusion[label as usize][best] += 1;
            self.n += 1;
        }
    }

    fn score(self) -> Score {
        let right: u64 = (0..self.confusion.len())
            .map(|k| self.confusion[k][k])
            .sum();
        Score {
            loss: (self.loss / self.n.max(1) as f64) as f32,
            accuracy: Some(right as f64 / self.n.max(1) as f64),
            confusion: self.confusion,
        }
    }
}
