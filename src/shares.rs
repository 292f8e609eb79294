//! How a data-parallel run divides its B streams: N ranks (processes over MPI, or devices in one
//! process), each running K micro-batches (`--accumulate K`) of b = B / (N·K) streams. Share
//! (r, j), rank r's micro-batch j, owns the contiguous streams `[(r·K + j)·b, (r·K + j + 1)·b)`,
//! so the run sees the same data whatever N and K are, and a checkpoint's carried state (all B
//! streams, in stream order) re-partitions for any N and K that divide B.
//!
//! The gradient of a step is the mean over shares, summed in one fixed order:
//! `G_r = (…(g_r0 + g_r1) + …) + g_r,K−1` on each rank, then `(…(G_0 + G_1) + …) + G_N−1`, then
//! divided by N·K: the same bits on every run, whichever MPI or collective algorithm carries it.

use crate::error::{Error, Result};
use crate::model::{Inputs, ModelConfig, Targets};
use std::ops::Range;

/// The partition of a run's streams into ranks and micro-batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    /// B, every stream of the run.
    pub batch: usize,
    /// N, the ranks.
    pub ranks: usize,
    /// K, the micro-batches each rank sums before an update.
    pub accumulate: usize,
}

impl Shares {
    /// N ranks of K micro-batches over B streams; B must be a multiple of N·K.
    pub fn new(batch: usize, ranks: usize, accumulate: usize) -> Result<Self> {
        let parts = ranks.max(1) * accumulate.max(1);
        if ranks == 0 || accumulate == 0 || batch == 0 || !batch.is_multiple_of(parts) {
            let what = match (ranks, accumulate) {
                (1, k) => format!("{k} micro-batches (--accumulate {k})"),
                (n, 1) => format!("{n} ranks"),
                (n, k) => format!("{n} ranks of {k} micro-batches"),
            };
            let near = (batch / parts.max(1)).max(1) * parts.max(1);
            let divisors: Vec<String> = (1..=batch.min(1 << 16))
                .filter(|d| batch.is_multiple_of(*d))
                .map(|d| d.to_string())
                .collect();
            return Err(Error::config(
                format!("a batch of {batch} streams does not divide into {what}"),
                format!(
                    "use a batch size that is a multiple of {parts}, e.g. --batch {near}; or ranks \
                     and micro-batches whose product divides {batch} ({})",
                    divisors.join(", ")
                ),
            ));
        }
        Ok(Self {
            batch,
            ranks,
            accumulate,
        })
    }

    /// Whether the whole batch runs as one step on one device (no read-back, no reduction).
    pub fn is_whole(&self) -> bool {
        self.ranks == 1 && self.accumulate == 1
    }

    /// b, the streams of one micro-batch.
    pub fn micro(&self) -> usize {
        self.batch / (self.ranks * self.accumulate)
    }

    /// The streams of one rank, K·b.
    pub fn per_rank(&self) -> usize {
        self.batch / self.ranks
    }

    /// The streams of share (rank, j).
    pub fn streams(&self, rank: usize, j: usize) -> Range<usize> {
        let start = (rank * self.accumulate + j) * self.micro();
        start..start + self.micro()
    }
}

/// One micro-batch as its rank's engine runs it: the slot of its carried state, and the run's
/// index of its first stream (which keys its dropout masks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Its place among the rank's K micro-batches.
    pub slot: usize,
    /// The run's index of its stream 0.
    pub first_stream: usize,
}

impl Shares {
    /// Share (rank, j) as its engine runs it.
    pub fn share(&self, rank: usize, j: usize) -> Share {
        Share {
            slot: j,
            first_stream: self.streams(rank, j).start,
        }
    }
}

/// What the comparison of a data-parallel run's ranks found
/// (`crate::data_parallel::DataParallel::synchronize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// N, the ranks compared.
    pub ranks: usize,
    /// Ranks whose parameters or optimizer state differed from rank 0's (and now equal them).
    pub differed: usize,
}

/// The streams `range` of a time-major chunk of `batch` streams: inputs (T, B) or (T, B, I),
/// targets (T, B) or (T, B, O).
pub fn slice_chunk(
    config: &ModelConfig,
    (inputs, targets): (&Inputs, &Targets),
    batch: usize,
    range: Range<usize>,
) -> (Inputs, Targets) {
    let cols = |v: &[f32], width: usize| -> Vec<f32> {
        v.chunks(batch * width)
            .flat_map(|row| &row[range.start * width..range.end * width])
            .copied()
            .collect()
    };
    let ids = |v: &[u32]| -> Vec<u32> {
        v.chunks(batch)
            .flat_map(|row| &row[range.clone()])
            .copied()
            .collect()
    };
    let x = match inputs {
        Inputs::Tokens(v) => Inputs::Tokens(ids(v)),
        Inputs::Dense(v) => Inputs::Dense(cols(v, config.input)),
    };
    let y = match targets {
        Targets::Tokens(v) => Targets::Tokens(ids(v)),
        Targets::Dense(v) => Targets::Dense(cols(v, config.output)),
        Targets::Labels(v) => Targets::Labels(v[range.clone()].to_vec()),
    };
    (x, y)
}

/// Where share j of k shares (b streams each) lies in a carried state of k·b streams: one range
/// of values per state tensor (every layer's h, then every layer's c), each (k·b, H) in stream
/// order. The same rule places a micro-batch in its rank's state and a rank in the run's.
pub fn carry_ranges(config: &ModelConfig, b: usize, k: usize, j: usize) -> Vec<Range<usize>> {
    let tensors = config.carry_len(1) / config.hidden.max(1);
    let block = b * config.hidden;
    (0..tensors)
        .map(|t| {
            let start = (t * k + j) * block;
            start..start + block
        })
        .collect()
}

/// Refuses a carried state of `got` values where the model and batch carry `want`: the one rule
/// of every engine's `set_hidden`.
pub fn check_carry_len(got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::config(
        format!("a carried state of {got} values for this model and batch ({want})"),
        "resume with the batch size the checkpoint was trained with",
    ))
}

/// Share j's carried state, out of the state of k shares.
pub fn carry_of(config: &ModelConfig, all: &[f32], b: usize, k: usize, j: usize) -> Vec<f32> {
    carry_ranges(config, b, k, j)
        .into_iter()
        .flat_map(|r| all[r].iter().copied())
        .collect()
}

/// Writes share j's carried state into the state of k shares.
pub fn set_carry_of(
    config: &ModelConfig,
    all: &mut [f32],
    part: &[f32],
    b: usize,
    k: usize,
    j: usize,
) {
    let mut at = 0;
    for r in carry_ranges(config, b, k, j) {
        let n = r.len();
        all[r].copy_from_slice(&part[at..at + n]);
        at += n;
    }
}

/// The element-wise sum of `sum` and then `rest`, in their order, `sum = (…(sum + p_1) + …) +
/// p_n−1`, then `sum /= divisor`: the one reduction every data-parallel path uses.
pub fn add_in_order<'a>(sum: &mut [f32], rest: impl Iterator<Item = &'a [f32]>, divisor: usize) {
    for p in rest {
        for (s, v) in sum.iter_mut().zip(p.iter()) {
            *s += v;
        }
    }
    let d = divisor as f32;
    sum.iter_mut().for_each(|s| *s /= d);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::Cell;

    #[test]
    fn shares_cover_the_streams_once_in_order() {
        let s = Shares::new(12, 2, 3).unwrap();
        assert_eq!(s.micro(), 2);
        let all: Vec<usize> = (0..2)
            .flat_map(|r| (0..3).flat_map(move |j| s.streams(r, j)))
            .collect();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
        let e = Shares::new(10, 4, 1).unwrap_err().to_string();
        assert!(e.contains("10 streams") && e.contains("--batch 8"), "{e}");
        assert!(Shares::new(8, 0, 1).is_err());
    }

    #[test]
    fn a_share_of_the_carry_is_its_streams_of_every_tensor() {
        let config = ModelConfig::tokens(5, 3).with_cell(Cell::Lstm, 2);
        // (2 tensors · 2 layers, 4 streams, H = 3), each value its own index.
        let all: Vec<f32> = (0..config.carry_len(4)).map(|i| i as f32).collect();
        let part = carry_of(&config, &all, 2, 2, 1);
        assert_eq!(part.len(), config.carry_len(2));
        // Tensor 1 (layer 1's h): streams 2, 3 start at (1·4 + 2)·3.
        assert_eq!(part[6..12], [18., 19., 20., 21., 22., 23.]);
        let mut back = vec![0.0; all.len()];
        set_carry_of(
            &config,
            &mut back,
            &carry_of(&config, &all, 2, 2, 0),
            2,
            2,
            0,
        );
        set_carry_of(&config, &mut back, &part, 2, 2, 1);
        assert_eq!(back, all);
    }

    #[test]
    fn a_slice_of_a_chunk_is_its_columns() {
        let config = ModelConfig::dense(2, 4, 1);
        // T = 2, B = 3, I = 2.
        let x = Inputs::Dense((0..12).map(|i| i as f32).collect());
        let y = Targets::Dense((0..6).map(|i| i as f32).collect());
        let (x, y) = slice_chunk(&config, (&x, &y), 3, 1..3);
        assert_eq!(x, Inputs::Dense(vec![2., 3., 4., 5., 8., 9., 10., 11.]));
        assert_eq!(y, Targets::Dense(vec![1., 2., 4., 5.]));
    }

    #[test]
    fn the_ordered_mean_keeps_its_order() {
        // 1e8 + 1 − 1e8 depends on the bracketing in f32.
        let (a, b, c) = ([1e8f32], [1.0f32], [-1e8f32]);
        let mean = |parts: &[&[f32]], d| {
            let mut sum = parts[0].to_vec();
            add_in_order(&mut sum, parts[1..].iter().copied(), d);
            sum
        };
        assert_eq!(mean(&[&a, &b, &c], 1), [0.0]);
        assert_eq!(mean(&[&a, &c, &b], 1), [1.0]);
        assert_eq!(mean(&[&[3.0], &[3.0]], 2), [3.0]);
    }
}
