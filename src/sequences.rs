//! Labelled sequences, one class each, made into batches for a sequence head.
//!
//! - Sources: a `.ts` file ([`crate::ts_file`]: C channels a step), or `label<TAB>text` lines
//!   (one character a step, tokens of a character vocabulary).
//! - A held-out fraction is taken from each class alike (stratified), drawn by a seed.
//! - Dense channels are normalised by the training split's mean and deviation per channel.
//! - Batches gather sequences of similar lengths (buckets): each batch is T = its longest
//!   sequence's steps, and the others are padding that no state or loss sees. The padded share,
//!   Σ (T_k·B_k − Σ n_b) / Σ T_k·B_k over the batches, is what is computed for nothing.

use crate::batch::{Batch, Inputs, Targets};
use crate::data::Vocab;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::ts_file::LabelledSet;
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// The steps of each sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Steps {
    /// C values a step, time-major (`data[i][t * C + c]`).
    Dense {
        /// C.
        channels: usize,
        /// One vector per sequence.
        data: Vec<Vec<f32>>,
    },
    /// One token a step.
    Tokens(Vec<Vec<u32>>),
}

/// Sequences and their classes.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledSequences {
    /// The class names; a label is an index into them.
    pub classes: Vec<String>,
    /// The sequences' steps.
    pub steps: Steps,
    /// Each sequence's class.
    pub labels: Vec<usize>,
}

/// Each channel's mean and standard deviation over a training split's steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelStats {
    /// Mean of each channel.
    pub mean: Vec<f64>,
    /// Standard deviation of each channel (1 where a channel is constant).
    pub std: Vec<f64>,
}

impl From<LabelledSet> for LabelledSequences {
    fn from(set: LabelledSet) -> Self {
        let labels = set.sequences.iter().map(|s| s.label).collect();
        let data = set.sequences.into_iter().map(|s| s.values).collect();
        Self {
            classes: set.classes,
            steps: Steps::Dense {
                channels: set.channels,
                data,
            },
            labels,
        }
    }
}

/// Class names in a stable order: numerically where every one is an integer, else sorted.
fn class_order(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    }
    names
}

impl LabelledSequences {
    /// `label<TAB>text` lines (blank lines skipped), the text one token a character of `vocab`.
    /// The classes are the labels that occur, sorted (as numbers where every one is an
    /// integer), unless `classes` gives them (a validation file read against its training
    /// file's).
    pub fn from_text(text: &str, vocab: &Vocab, classes: Option<&[String]>) -> Result<Self> {
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let (label, body) = line.split_once('\t').ok_or_else(|| {
                Error::config(
                    format!("line {}: no tab between a label and a text", i + 1),
                    "write one `label<TAB>text` line per sequence",
                )
            })?;
            if body.is_empty() {
                return Err(Error::config(
                    format!("line {}: the text of label `{label}` is empty", i + 1),
                    "give every sequence at least one character",
                ));
            }
            let tokens = vocab.encode(body.as_bytes()).map_err(|e| {
                Error::config(
                    format!("line {}: {e}", i + 1),
                    "use the training text's characters",
                )
            })?;
            rows.push((label.to_string(), tokens));
        }
        if rows.is_empty() {
            return Err(Error::config(
                "no `label<TAB>text` line",
                "give at least one sequence",
            ));
        }
        let classes = match classes {
            Some(c) => c.to_vec(),
            None => class_order(rows.iter().map(|(l, _)| l.clone()).collect()),
        };
        let mut labels = Vec::with_capacity(rows.len());
        for (label, _) in &rows {
            let k = classes.iter().position(|c| c == label).ok_or_else(|| {
                Error::config(
                    format!(
                        "label `{label}` is not one of the classes ({})",
                        classes.join(" ")
                    ),
                    "validate on the classes the model was trained on",
                )
            })?;
            labels.push(k);
        }
        let steps = Steps::Tokens(rows.into_iter().map(|(_, t)| t).collect());
        Ok(Self {
            classes,
            steps,
            labels,
        })
    }

    /// The number of sequences.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no sequence.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The longest sequence's steps.
    pub fn max_len(&self) -> usize {
        (0..self.len()).map(|i| self.length(i)).max().unwrap_or(0)
    }

    /// n_i: sequence i's steps.
    pub fn length(&self, i: usize) -> usize {
        match &self.steps {
            Steps::Dense { channels, data } => data[i].len() / channels,
            Steps::Tokens(t) => t[i].len(),
        }
    }

    /// The sequences `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Self {
        let steps = match &self.steps {
            Steps::Dense { channels, data } => Steps::Dense {
                channels: *channels,
                data: idx.iter().map(|&i| data[i].clone()).collect(),
            },
            Steps::Tokens(t) => Steps::Tokens(idx.iter().map(|&i| t[i].clone()).collect()),
        };
        Self {
            classes: self.classes.clone(),
            steps,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// At most `n` of the sequences, drawn by `seed`, in the set's order: the whole set where it
    /// holds no more.
    pub fn sample(&self, n: usize, seed: u64) -> Self {
        if self.len() <= n {
            return self.clone();
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        idx.truncate(n);
        idx.sort_unstable();
        self.subset(&idx)
    }

    /// (training, held-out): `fraction` of each class's sequences held out (rounded, at least
    /// one of a class of two or more), drawn by `seed`; both in the file's order.
    pub fn split_stratified(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(Error::config(
                format!("a held-out fraction of {fraction}"),
                "pass a fraction between 0 and 1, such as 0.2, or a validation file",
            ));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut held = vec![false; self.len()];
        for k in 0..self.classes.len() {
            let mut of: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == k).collect();
            of.shuffle(&mut rng);
            // At least one of a class of two held out, and at least one kept for training.
            let n = ((of.len() as f64 * fraction).round() as usize).max((of.len() >= 2) as usize);
            let n = n.min(of.len().saturating_sub(1));
            of.iter().take(n).for_each(|&i| held[i] = true);
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| held[i]);
        if val.is_empty() {
            return Err(Error::config(
                "the held-out fraction holds no sequence",
                "raise the fraction, or pass a validation file",
            ));
        }
        Ok((self.subset(&train), self.subset(&val)))
    }

    /// Each channel's mean and deviation over every step of every sequence (dense only).
    pub fn channel_stats(&self) -> Option<ChannelStats> {
        let Steps::Dense { channels, data } = &self.steps else {
            return None;
        };
        let c = *channels;
        let (mut sum, mut sq, mut n) = (vec![0.0f64; c], vec![0.0f64; c], 0usize);
        for v in data.iter().flat_map(|s| s.chunks(c)) {
            for (k, &x) in v.iter().enumerate() {
                sum[k] += x as f64;
            }
            n += 1;
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
        for v in data.iter().flat_map(|s| s.chunks(c)) {
            for (k, &x) in v.iter().enumerate() {
                sq[k] += (x as f64 - mean[k]).powi(2);
            }
        }
        let std = sq
            .iter()
            .map(|s| (s / n.max(1) as f64).sqrt())
            .map(|s| if s > 1e-12 { s } else { 1.0 })
            .collect();
        Some(ChannelStats { mean, std })
    }

    /// Scales every dense channel to `(x − mean) / std`.
    pub fn normalize(&mut self, stats: &ChannelStats) {
        if let Steps::Dense { channels, data } = &mut self.steps {
            for v in data.iter_mut().flat_map(|s| s.chunks_mut(*channels)) {
                for (k, x) in v.iter_mut().enumerate() {
                    *x = ((*x as f64 - stats.mean[k]) / stats.std[k]) as f32;
                }
            }
        }
    }

    /// The batch of sequences `idx`: T their longest, padded steps zero, one label each,
    /// h_0 (and c_0) zero.
    pub fn batch(&self, idx: &[usize], config: &ModelConfig) -> Batch {
        let (nb, nt) = (
            idx.len(),
            idx.iter().map(|&i| self.length(i)).max().unwrap_or(1),
        );
        let inputs = match &self.steps {
            Steps::Dense { channels, data } => {
                let c = *channels;
                let mut x = vec![0.0; nt * nb * c];
                for (b, &i) in idx.iter().enumerate() {
                    for (t, step) in data[i].chunks(c).enumerate() {
                        x[(t * nb + b) * c..][..c].copy_from_slice(step);
                    }
                }
                Inputs::Dense(x)
            }
            Steps::Tokens(tokens) => {
                let mut x = vec![0; nt * nb];
                for (b, &i) in idx.iter().enumerate() {
                    tokens[i]
                        .iter()
                        .enumerate()
                        .for_each(|(t, &v)| x[t * nb + b] = v);
                }
                Inputs::Tokens(x)
            }
        };
        let state = vec![0.0; config.state_len(nb)];
        Batch {
            batch: nb,
            steps: nt,
            inputs,
            targets: Targets::Labels(idx.iter().map(|&i| self.labels[i] as u32).collect()),
            h0: state.clone(),
            c0: if config.cell.has_cell_state() {
                state
            } else {
                vec![]
            },
            lengths: Some(idx.iter().map(|&i| self.length(i)).collect()),
        }
    }

    /// Batches of at most `batch` sequences of similar lengths: the sequences sorted by length
    /// (ties in an order drawn by `seed`) and cut in runs of `batch`, the runs in an order drawn
    /// by `seed`.
    pub fn buckets(&self, batch: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rng);
        order.sort_by_key(|&i| self.length(i));
        let mut runs: Vec<Vec<usize>> = order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect();
        runs.shuffle(&mut rng);
        runs
    }

    /// The share of the steps of `batches` that are padding.
    pub fn padded_share(&self, batches: &[Vec<usize>]) -> f64 {
        self.padding(batches).share(|steps| steps)
    }

    /// The shapes of `batches`, for the padding an engine computes with them.
    pub fn padding(&self, batches: &[Vec<usize>]) -> Padding {
        let shapes = batches.iter().map(|run| {
            let lengths = run.iter().map(|&i| self.length(i));
            (lengths.clone().max().unwrap_or(0), run.len(), lengths.sum())
        });
        Padding(shapes.collect())
    }
}

/// Each batch's (T: its longest sequence, B, Σ n_b): what its padding is.
#[derive(Clone, Debug, PartialEq)]
pub struct Padding(Vec<(usize, usize, usize)>);

impl Padding {
    /// The share of the steps computed that are padding, where an engine computes a batch of
    /// T steps at `computed(T)` ≥ T (a GPU step's T is rounded up; the CPU computes T).
    pub fn share(&self, computed: impl Fn(usize) -> usize) -> f64 {
        let all: usize = self.0.iter().map(|&(t, b, _)| computed(t) * b).sum();
        let valid: usize = self.0.iter().map(|&(_, _, n)| n).sum();
        1.0 - valid as f64 / all.max(1) as f64
    }
}
