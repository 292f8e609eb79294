//! How a run is carried out, beside its configuration (neither is stored with the other): where
//! it writes, on what it runs, over how many ranks, and which run it continues.

use crate::config::Device;
use crate::gpu::{AdapterChoice, Recurrence};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

/// How a run is carried out (not stored in checkpoints).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where the checkpoint, metrics and plot go.
    pub out_dir: PathBuf,
    /// Write into `out_dir` even if it holds files that unroll did not write.
    pub force: bool,
    /// The most bytes the data file may hold.
    pub max_bytes: u64,
    /// Before training on the GPU, compare one step at the run's model sizes with the CPU
    /// reference, and refuse to train if they disagree.
    pub self_check: bool,
    /// GPU or CPU.
    pub device: Device,
    /// Which adapter, for the GPU.
    pub adapter: AdapterChoice,
    /// How the GPU dispatches the recurrences (`None`: chosen per shape).
    pub recurrence: Option<Recurrence>,
    /// How the GPU step's variant is chosen: per shape and adapter (`Off`), or tuned on the
    /// adapter and kept in the user's cache directory ([`crate::tune`]).
    pub tune: crate::tune::Tuning,
    /// Continue the run of a checkpoint (the configuration given to [`crate::train::train`] is then the
    /// checkpoint's, with what [`Resume`] changes).
    pub resume: Option<Resume>,
    /// No progress bar; a log line per evaluation instead.
    pub quiet: bool,
    /// Set to 1 by the first Ctrl-C / SIGTERM: finish the step, checkpoint, stop.
    pub interrupt: Option<Arc<AtomicUsize>>,
    /// K: micro-batches of B / (N·K) streams summed before each update (1: the whole batch).
    pub accumulate: usize,
    /// Adapters (indices in `unroll info`'s list) to train on together, one rank each, in this
    /// process; empty for one adapter.
    pub devices: Vec<usize>,
    /// The processes of an MPI job, one rank each; `None` for a single process.
    pub job: Option<crate::collective::Job>,
}

impl RunOptions {
    /// Whether this process writes the run's files and prints: every run's but a follower's of
    /// an MPI job.
    pub fn is_leader(&self) -> bool {
        self.job.as_ref().is_none_or(|j| j.rank() == 0)
    }
}

/// Which run to continue, and the settings a resumed run may change.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// The checkpoint of the run.
    pub checkpoint: PathBuf,
    /// The total of steps to reach (default: the run's own `iters`); lower than the run's or
    /// higher, never behind the checkpoint's step.
    pub iters: Option<u64>,
    /// Other data of the same encoding.
    pub data: Option<PathBuf>,
    /// Characters of the closing sample.
    pub sample_len: Option<usize>,
    /// Whether a limit on the data file's size was given ([`RunOptions::max_bytes`]): it applies
    /// only where the run reads a file.
    pub max_bytes: bool,
}

impl Resume {
    /// Continues the run of `checkpoint` as it was configured.
    pub fn from(checkpoint: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            ..Self::default()
        }
    }
}
