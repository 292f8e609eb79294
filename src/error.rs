//! The crate's error type: every error names the problem and, where the user can fix it, how.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A size, flag or batch that makes no sense.
    #[error("{problem}\n  hint: {hint}")]
    Config {
        /// What is wrong.
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// No adapter, or none matching the user's choice.
    #[error("{problem}\n  hint: {hint}")]
    Adapter {
        /// What is wrong.
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// The model or batch needs more than the adapter allows.
    #[error(
        "{what}: {needed} bytes ({}), more than the adapter's {limit} of {allowed} bytes\n  hint: {hint}",
        human(*.needed)
    )]
    Limit {
        /// The buffer or resource that does not fit.
        what: String,
        /// The wgpu limit that it exceeds.
        limit: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes allowed.
        allowed: u64,
        /// The largest setting that fits, or another way out.
        hint: String,
    },
    /// The work needs more host memory than this process may use (see
    /// [`crate::footprint::host_available`]).
    #[error(
        "{what} needs {} of host memory, more than the {} available\n  hint: {hint}",
        human(*.needed),
        human(*.available)
    )]
    Memory {
        /// What needs the memory.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// The largest setting that fits, or another way out.
        hint: String,
    },
    /// wgpu reported an error (validation, out of memory, device lost) during an operation.
    #[error("GPU error during {op}: {message}")]
    Gpu {
        /// The operation that failed.
        op: String,
        /// wgpu's message.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss or the gradients stopped being finite.
    #[error(
        "training diverged at step {step}: {what} is {value}\n  hint: train again with a lower learning rate (--lr) or clipped gradients (--clip 1.0){}",
        kept_checkpoint(.checkpoint)
    )]
    Diverged {
        /// The step that produced the non-finite value.
        step: u64,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The value.
        value: f32,
        /// The last checkpoint on disk, its step and path, if one was written (or resumed from).
        checkpoint: Option<(u64, PathBuf)>,
    },
}

/// What a diverged run leaves on disk, for its message.
fn kept_checkpoint(checkpoint: &Option<(u64, PathBuf)>) -> String {
    match checkpoint {
        Some((step, path)) => format!(
            "; the checkpoint of step {step} ({}) is the last good one and is kept",
            path.display()
        ),
        None => "; no checkpoint was written before it".into(),
    }
}

impl Error {
    /// A configuration error with a hint.
    pub fn config(problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config {
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    /// A file error.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Bytes as a person reads them: `1.5 GiB`, `320 MiB`, `12 KiB`.
pub fn human(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
