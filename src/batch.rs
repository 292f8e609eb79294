//! One batch: B sequences of T steps (each its own length, where they differ), their inputs,
//! their targets (per step, or one label per sequence) and every layer's initial state.

use crate::error::{Error, Result};
use crate::model::{InputKind, ModelConfig};
use rand::{RngExt, SeedableRng};

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
    /// One class in `[0, O)` per sequence, (B): the targets of a sequence head.
    Labels(Vec<u32>),
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
    /// h_0 of every layer and direction, (ND·L, B, H).
    pub h0: Vec<f32>,
    /// c_0 of every layer and direction, (ND·L, B, H) (LSTM; empty otherwise).
    pub c0: Vec<f32>,
    /// Each sequence's own length n_b in 1..=T, (B); `None`: every sequence is T long. Steps
    /// t ≥ n_b are padding: they update no state and count in no loss, whatever they hold.
    pub lengths: Option<Vec<usize>>,
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
        self.validate_lengths()?;
        match (&self.targets, config.kind) {
            (Targets::Labels(y), _) if config.head.is_sequence() => {
                if y.len() != b {
                    return shape_err("labels (B)", y.len(), b);
                }
                if let Some(&bad) = y.iter().find(|&&v| v as usize >= config.output) {
                    return Err(Error::config(
                        format!(
                            "label {bad} is outside the model's classes [0, {})",
                            config.output
                        ),
                        "use labels below the model's output size",
                    ));
                }
            }
            (_, _) if config.head.is_sequence() => {
                return Err(Error::config(
                    format!(
                        "the {} head needs one label per sequence, and the batch holds targets per step",
                        config.head.name()
                    ),
                    "give the batch labels (B), or build the model with the per-step head",
                ));
            }
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
            return shape_err("h0 (ND·L, B, H)", self.h0.len(), state);
        }
        let c0 = if config.cell.has_cell_state() {
            state
        } else {
            0
        };
        if self.c0.len() != c0 {
            return shape_err("c0 (ND·L, B, H)", self.c0.len(), c0);
        }
        Ok(())
    }

    /// n_b: sequence b's own length.
    pub fn length(&self, b: usize) -> usize {
        self.lengths.as_ref().map_or(self.steps, |l| l[b])
    }

    /// Σ n_b: the valid steps of the batch.
    pub fn valid_steps(&self) -> usize {
        (0..self.batch).map(|b| self.length(b)).sum()
    }

    fn validate_lengths(&self) -> Result<()> {
        let Some(lengths) = &self.lengths else {
            return Ok(());
        };
        if lengths.len() != self.batch {
            return Err(Error::config(
                format!(
                    "{} lengths for a batch of {} sequences",
                    lengths.len(),
                    self.batch
                ),
                "give one length per sequence",
            ));
        }
        if let Some((b, &n)) = lengths
            .iter()
            .enumerate()
            .find(|&(_, &n)| n == 0 || n > self.steps)
        {
            return Err(Error::config(
                format!(
                    "sequence {b} has length {n}, outside 1..={} (T)",
                    self.steps
                ),
                "give every sequence at least one step and at most T",
            ));
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
        let targets = match config.head.is_sequence() {
            true => Targets::Labels(
                (0..batch)
                    .map(|_| rng.random_range(0..config.output as u32))
                    .collect(),
            ),
            false => targets,
        };
        Self {
            batch,
            steps,
            inputs,
            targets,
            h0,
            c0,
            lengths: None,
        }
    }

    /// The same batch, sequence b being `lengths[b]` steps long.
    pub fn with_lengths(self, lengths: Vec<usize>) -> Self {
        Self {
            lengths: Some(lengths),
            ..self
        }
    }
}
