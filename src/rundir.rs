//! What unroll may write over: the run directory of `unroll train` (its files, its lock, its
//! temporaries) and the outputs of `unroll forecast`.
//!
//! unroll never replaces or deletes a file it did not write. A file counts as unroll's when its
//! content says so: a checkpoint carries the `unroll` metadata key, `metrics.csv` starts with its
//! header, a plot carries its title. A run directory is locked while a run writes to it (an
//! advisory lock on `unroll.lock`, which holds the owner's pid), so two runs never interleave; the
//! operating system releases the lock of a process that died, and the next run takes it over.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The checkpoint's file name in a run directory.
pub const CHECKPOINT: &str = "model.safetensors";
/// The metrics file's name.
pub const METRICS: &str = "metrics.csv";
/// The loss plot's name.
pub const PLOT: &str = "loss.svg";
/// The lock file's name.
pub const LOCK: &str = "unroll.lock";
/// The first line of `metrics.csv`.
pub const METRICS_HEADER: &str = "step,train_loss,val_loss,tokens_per_s,elapsed_s";
/// The title of the loss plot (the SVG holds it as text).
pub const PLOT_TITLE: &str = "unroll: loss";
/// The title of a forecast's plot.
pub const FORECAST_TITLE: &str = "unroll: forecast";

/// The marker in the names of unroll's temporary files: `.{name}.unroll-tmp-{pid}`.
const TEMPORARY: &str = ".unroll-tmp-";

/// The temporary file that [`crate::tensorfile::write_bytes_atomic`] writes before renaming it
/// over `path`.
pub fn temporary_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMPORARY}{}", std::process::id()))
}

/// The pid in the name of one of unroll's temporaries for a file in `names`, if it is one.
fn temporary_owner(name: &str, names: &[&str]) -> Option<u32> {
    names.iter().find_map(|n| {
        name.strip_prefix(&format!(".{n}{TEMPORARY}"))
            .and_then(|pid| pid.parse().ok())
    })
}

/// Whether a process with this pid exists (on Linux; elsewhere every other pid counts as alive, so
/// nothing another process may be writing is removed).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        pid != std::process::id()
    }
}

/// The first `limit` bytes of a file (fewer if it is shorter).
fn head(path: &Path, limit: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(limit).read_to_end(&mut bytes);
    }
    bytes
}

/// The `__metadata__` of a safetensors file's header, read without reading its tensors.
fn safetensors_metadata(path: &Path) -> Option<serde_json::Value> {
    let mut f = File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None;
    }
    let mut header = Vec::new();
    f.take(len).read_to_end(&mut header).ok()?;
    serde_json::from_slice::<serde_json::Value>(&header)
        .ok()?
        .get("__metadata__")
        .cloned()
}

/// Whether `path` is a checkpoint unroll wrote: a safetensors header with the `unroll` metadata.
pub fn is_unroll_checkpoint(path: &Path) -> bool {
    safetensors_metadata(path).is_some_and(|m| m.get("unroll").is_some())
}

/// Refuses an output path of `unroll check` (`--dump`, `--save-case`) that holds a file unroll
/// did not write: one it may replace is a safetensors file whose metadata unroll wrote.
pub fn check_replaceable(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    // A checkpoint, a `--dump` (its `config`) or a `--save-case` (its `made_by`).
    let ours = safetensors_metadata(path).is_some_and(|m| {
        m.get("unroll").is_some()
            || m.get("config").is_some()
            || m.get("made_by")
                .and_then(|v| v.as_str())
                .is_some_and(|s| s.starts_with("unroll"))
    });
    if ours {
        Ok(())
    } else {
        Err(Error::file(
            path,
            "exists and is not a file that unroll wrote; it is left as it is\n  hint: pass another path",
        ))
    }
}

/// Whether `path` is a file unroll wrote under this name in a run directory.
fn is_ours(path: &Path, name: &str) -> bool {
    match name {
        CHECKPOINT => is_unroll_checkpoint(path),
        METRICS => head(path, 4096).starts_with(METRICS_HEADER.as_bytes()),
        PLOT => svg_has_title(path, PLOT_TITLE),
        LOCK => true,
        _ => false,
    }
}

/// Whether an SVG file holds `title` as a line of text (plotters writes the caption on a line of
/// its own inside a text element).
pub fn svg_has_title(path: &Path, title: &str) -> bool {
    let text = head(path, 1 << 16);
    let text = String::from_utf8_lossy(&text);
    text.trim_start().starts_with("<svg") && text.lines().any(|l| l.trim() == title)
}

/// A run directory, locked for as long as this value lives.
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates or opens the directory, refuses it if it holds files unroll did not write (unless
    /// `force`), takes its lock, and removes the temporaries that dead runs left in it.
    pub fn open(path: &Path, force: bool) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::file(path, format!("cannot create the output directory: {e}")))?;
        if !force {
            check_contents(path)?;
        }
        let lock = lock(path)?;
        remove_stale_temporaries(path);
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The path of a file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Refuses a directory with files that unroll did not write.
fn check_contents(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot read the output directory: {e}")))?;
    let ours = [CHECKPOINT, METRICS, PLOT];
    let mut foreign: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let fine = is_ours(&path, &name) || temporary_owner(&name, &ours).is_some();
        if !fine {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    let shown: Vec<String> = foreign.iter().take(5).map(|n| format!("`{n}`")).collect();
    let more = if foreign.len() > 5 {
        format!(" and {} more", foreign.len() - 5)
    } else {
        String::new()
    };
    Err(Error::file(
        dir,
        format!(
            "the output directory holds files that unroll did not write ({}{more}); unroll writes \
             {CHECKPOINT}, {METRICS} and {PLOT} there and replaces them\n  hint: pass a new or empty \
             --out directory, or --force to write there anyway",
            shown.join(", ")
        ),
    ))
}

/// Takes the directory's lock, or says which process holds it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::file(&path, format!("cannot create the lock file: {e}")))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Err(Error::file(
                dir,
                format!(
                    "another unroll run{} is writing to this directory\n  hint: wait for it to \
                     finish, or pass another --out",
                    if owner.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {owner})")
                    }
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::file(&path, format!("cannot lock: {e}")));
        }
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// Removes unroll's temporaries of the run directory's files whose writer is no longer alive.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = temporary_owner(&name, &[CHECKPOINT, METRICS, PLOT])
            && pid != std::process::id()
            && !alive(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Refuses an output file of `unroll forecast` that would replace an input or a file that unroll
/// did not write: an existing CSV must hold a forecast of the same columns (`header`), an existing
/// plot must carry the forecast's title.
pub fn check_forecast_outputs(
    csv: &Path,
    plot: &Path,
    inputs: &[&Path],
    header: &str,
) -> Result<()> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    for input in inputs {
        for out in [csv, plot] {
            if same(out, input) {
                return Err(Error::file(
                    out,
                    "is an input of this forecast; it would be overwritten\n  hint: pass another --out",
                ));
            }
        }
    }
    let csv_ours = || {
        let text = head(csv, 1 << 20);
        let text = String::from_utf8_lossy(&text);
        let mut lines = text.lines();
        lines.next() == Some(header)
            && lines.take(1000).all(|l| {
                l.split(',')
                    .all(|v| v.trim().is_empty() || v.trim().parse::<f64>().is_ok())
            })
    };
    if csv.exists() && !csv_ours() {
        return Err(Error::file(
            csv,
            "exists and is not a forecast that unroll wrote for these columns; it is left as it is\n  \
             hint: pass another --out, or remove the file first",
        ));
    }
    if plot.exists() && !svg_has_title(plot, FORECAST_TITLE) {
        return Err(Error::file(
            plot,
            "exists and is not a forecast plot that unroll wrote; it is left as it is (the plot \
             goes beside the CSV, with the extension .svg)\n  hint: pass another --out",
        ));
    }
    Ok(())
}
