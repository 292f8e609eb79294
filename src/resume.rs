//! Continuing a run from its checkpoint: the configuration it runs with (what
//! [`crate::train::Resume`] may change), and hints that speak of what it can change.

use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::run_options::RunOptions;

/// The configuration of a run: `cfg` for a new one; a resumed one keeps its checkpoint's, with
/// what [`crate::train::Resume`] changes.
pub(crate) fn resolve_config(
    cfg: &TrainConfig,
    opts: &RunOptions,
) -> Result<(TrainConfig, Option<Checkpoint>)> {
    let Some(resume) = &opts.resume else {
        cfg.validate()?;
        return Ok((cfg.clone(), None));
    };
    let path = &resume.checkpoint;
    let ck = Checkpoint::load(path)?;
    let mut saved = ck.info.train.clone().ok_or_else(|| {
        Error::file(
            path,
            "holds a model but no training state; it cannot be resumed (train from scratch)",
        )
    })?;
    if let Some(iters) = resume.iters {
        if iters < ck.info.step {
            return Err(Error::config(
                format!(
                    "--iters {iters} is behind the checkpoint, which is at step {}",
                    ck.info.step
                ),
                format!(
                    "--iters is the total of steps to reach: pass {} or more (the run was \
                     configured for {})",
                    ck.info.step, saved.iters
                ),
            ));
        }
        saved.iters = iters;
    }
    saved.iters = saved.iters.max(ck.info.step);
    if let Some(data) = &resume.data {
        saved.data = Some(data.clone());
    }
    if resume.max_bytes && saved.data.is_none() {
        return Err(Error::config(
            "--max-bytes does not apply here: the run trains on the built-in data, which is no file",
            "drop --max-bytes, or pass --data",
        ));
    }
    if let Some(n) = resume.sample_len {
        if saved.task == crate::config::Task::Series {
            return Err(Error::config(
                "--sample-len does not apply here: the checkpoint is of a series model, which \
                 prints no sample",
                "drop --sample-len",
            ));
        }
        saved.sample_len = n;
    }
    saved.validate()?;
    Ok((saved, Some(ck)))
}

/// An error of a resumed run whose hint would suggest a size that the checkpoint fixes (every
/// limit's does: it names the largest H and B that fit; a configuration error's where it names
/// such a flag): the hint says what a resumed run can change, and what a new run could.
pub(crate) fn on_resume(e: Error, checkpoint: &std::path::Path) -> Error {
    const FIXED: [&str; 6] = [
        "--batch",
        "--seq-len",
        "--hidden",
        "--layers",
        "--cell",
        "--val-fraction",
    ];
    let names_fixed = |hint: &str| FIXED.iter().any(|f| hint.contains(f));
    let fixed = |hint: &str| {
        format!(
            "this run resumes {}, which fixes the model, --batch and --seq-len: resume with other \
             --data, with --device cpu or on another adapter; or start a new run ({hint})",
            checkpoint.display()
        )
    };
    match e {
        Error::Config { problem, hint } if names_fixed(&hint) => Error::Config {
            problem,
            hint: fixed(&hint),
        },
        Error::Limit {
            what,
            limit,
            needed,
            allowed,
            hint,
        } => Error::Limit {
            what,
            limit,
            needed,
            allowed,
            hint: fixed(&hint),
        },
        Error::Memory {
            what,
            needed,
            available,
            hint,
        } => Error::Memory {
            what,
            needed,
            available,
            hint: fixed(&hint),
        },
        e => e,
    }
}
