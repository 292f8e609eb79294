//! The run directory of `unroll train`: its files, its lock, its temporaries.
//!
//! unroll never replaces or deletes a file it did not write ([`crate::owned`] says how it knows).
//! A run directory is locked while a run writes to it (an advisory lock on `unroll.lock`, which
//! names the owner's pid and the temporary it is writing, if any), so two runs never interleave;
//! the operating system releases the lock of a process that died, and the next run takes it
//! over and removes the temporary that the dead run's lock names. A run that ends having written
//! nothing leaves no lock behind (nor the directory, if it made it).

use crate::error::{Error, Result};
use crate::owned::{self, Kind, LockContent};
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The checkpoint's file name in a run directory.
pub const CHECKPOINT: &str = "model.safetensors";
/// The checkpoint of the best evaluation's step.
pub const BEST: &str = "best.safetensors";
/// The metrics file's name.
pub const METRICS: &str = "metrics.csv";
/// A classifier's confusion of its validation sequences.
pub const CONFUSION: &str = "confusion.csv";
/// A classifier's accuracy per class.
pub const PER_CLASS: &str = "per_class.csv";
/// The loss plot's name.
pub const PLOT: &str = "loss.svg";
/// The lock file's name.
pub const LOCK: &str = "unroll.lock";

/// The length of the lock file's content, padded with spaces.
const LOCK_LEN: usize = 256;

/// The files a run writes, and their kinds.
const FILES: [(&str, Kind); 6] = [
    (CHECKPOINT, Kind::Checkpoint),
    (BEST, Kind::Checkpoint),
    (CONFUSION, Kind::Confusion),
    (PER_CLASS, Kind::PerClass),
    (METRICS, Kind::Metrics),
    (PLOT, Kind::LossPlot),
];

/// A run directory, locked for as long as this value lives.
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
    lock: Mutex<File>,
    /// The directories this run made: the run directory and the missing ones above it, the
    /// topmost last.
    made: Vec<PathBuf>,
    /// Whether this run made the lock file.
    made_lock: bool,
    /// Whether this run has written a file of its own there.
    wrote: AtomicBool,
}

impl RunDir {
    /// Creates or opens the directory, takes its lock, refuses it if it holds files unroll did
    /// not write (unless `force`, which lets the run replace its three files whatever they
    /// hold), and removes the temporary that the lock says a run, now gone, was writing.
    pub fn open(path: &Path, force: bool) -> Result<Self> {
        let made: Vec<PathBuf> = path
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(path)
            .map_err(|e| Error::file(path, format!("cannot create the output directory: {e}")))?;
        let taken = match take_lock(path) {
            Ok(taken) => taken,
            Err(e) => {
                remove_empty(&made);
                return Err(e);
            }
        };
        let dir = Self {
            path: path.to_owned(),
            lock: Mutex::new(taken.file),
            made,
            made_lock: taken.previous.is_none(),
            wrote: AtomicBool::new(false),
        };
        // From here a refusal leaves the directory as it was: the lock this run made goes with
        // it (see Drop). The lock is this run's, so the run it names is gone, and so is any
        // writer of the temporary it names.
        let stale = taken.previous.and_then(|p| {
            let names = FILES.map(|(n, _)| n);
            p.writing
                .filter(|w| owned::is_temporary_of(w, p.pid, &names))
        });
        if !force {
            check_contents(path, stale.as_deref())?;
        }
        if let Some(name) = &stale {
            let _ = std::fs::remove_file(path.join(name));
        }
        dir.record(None)?;
        Ok(dir)
    }

    /// The path of a file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes one of the run's files atomically: a temporary beside it, recorded in the lock
    /// while it exists, then renamed over it.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.wrote.store(true, Ordering::SeqCst);
        let path = self.file(name);
        let tmp = owned::temporary_for(&path);
        let tmp_name = tmp.file_name().map(|n| n.to_string_lossy().into_owned());
        self.record(tmp_name)?;
        let written = crate::tensorfile::write_through(&tmp, &path, bytes);
        self.record(None)?;
        written
    }

    /// Writes the lock file's content: this process, and the temporary it is writing.
    fn record(&self, writing: Option<String>) -> Result<()> {
        let content = LockContent {
            pid: std::process::id(),
            writing,
            legacy: false,
        };
        // Always the same length, written at once: a run killed at any moment leaves either the
        // old content or the new one, never a truncated lock that the next run cannot read.
        let mut file = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.file(LOCK);
        write_lock(&mut file, &content)
            .map_err(|e| Error::file(&path, format!("cannot write the lock: {e}")))
    }
}

impl Drop for RunDir {
    /// A run that wrote nothing leaves nothing: the lock it made goes (while it is still held),
    /// and the directories it made too, if they are empty.
    fn drop(&mut self) {
        if self.made_lock && !self.wrote.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(self.file(LOCK));
            remove_empty(&self.made);
        }
    }
}

/// Writes a lock file's content: always the same length, in one write, so that a run killed at
/// any moment leaves the old content or the new one, never a truncated lock.
fn write_lock(file: &mut File, content: &LockContent) -> std::io::Result<()> {
    let mut text = content.render();
    let pad = LOCK_LEN.saturating_sub(text.len() + 1);
    text.extend(std::iter::repeat_n(' ', pad));
    text.push('\n');
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)
}

/// Removes the directories a run made, innermost first, as long as they are empty.
fn remove_empty(made: &[PathBuf]) {
    for dir in made {
        if std::fs::remove_dir(dir).is_err() {
            return;
        }
    }
}

/// Refuses a directory with files that unroll did not write (`stale`: a dead run's temporary,
/// which is unroll's).
fn check_contents(dir: &Path, stale: Option<&str>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot read the output directory: {e}")))?;
    let mut foreign: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ours = name == LOCK
            || Some(name.as_str()) == stale
            || FILES
                .iter()
                .any(|&(n, kind)| n == name && kind.holds(&path));
        if !ours {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    Err(Error::file(
        dir,
        format!(
            "the output directory holds files that unroll did not write ({}); unroll writes \
             {CHECKPOINT}, {BEST}, {METRICS} and {PLOT} (a classifier's {CONFUSION} and \
             {PER_CLASS} too) there and replaces them\n  hint: pass a new or empty \
             --out directory, or --force to write there anyway",
            few(&foreign, 5)
        ),
    ))
}

/// The first `n` names in backquotes, and how many more there are.
pub fn few(names: &[String], n: usize) -> String {
    let shown: Vec<String> = names.iter().take(n).map(|s| format!("`{s}`")).collect();
    let more = names.len().saturating_sub(n);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// A lock taken: the open, locked file, and what the lock said before (`None`: this run made it).
struct Taken {
    file: File,
    previous: Option<LockContent>,
}

/// Takes the directory's lock: a lock file this run makes (whole, its content in place before it
/// has its name, so that no run ever finds it empty), or one it finds there that unroll wrote;
/// anything else under that name is refused, untouched.
fn take_lock(dir: &Path) -> Result<Taken> {
    let path = dir.join(LOCK);
    let io = |e: std::io::Error| Error::file(&path, format!("cannot open the lock file: {e}"));
    // A run that finds the file removed between its open and its lock (by a run that ended
    // having written nothing) opens it again.
    for _ in 0..8 {
        match make_lock(dir) {
            Ok(file) => {
                return Ok(Taken {
                    file,
                    previous: None,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let file = match File::options().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let owner = owned::parse_lock(&owned::head(&path, 4096));
                return Err(Error::file(
                    dir,
                    format!(
                        "another unroll run{} is writing to this directory\n  hint: wait for it \
                         to finish, or pass another --out",
                        owner
                            .map(|o| format!(" (pid {})", o.pid))
                            .unwrap_or_default()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::file(&path, format!("cannot lock: {e}")));
            }
        }
        if !same_file(&file, &path) {
            continue;
        }
        return match owned::parse_lock(&owned::head(&path, 4096)) {
            Some(previous) if !previous.legacy || holds_a_run(dir) => Ok(Taken {
                file,
                previous: Some(previous),
            }),
            _ => Err(Error::file(
                &path,
                "is not a lock file that unroll wrote; it is left as it is\n  hint: pass another \
                 --out, or remove the file if it is not yours",
            )),
        };
    }
    Err(Error::file(
        &path,
        "the lock file kept changing while this run took it\n  hint: pass another --out",
    ))
}

/// Whether the directory holds a run's files (so that a lock of the format before the marks,
/// a pid alone, is a run's too).
fn holds_a_run(dir: &Path) -> bool {
    [(CHECKPOINT, Kind::Checkpoint), (METRICS, Kind::Metrics)]
        .iter()
        .any(|&(name, kind)| kind.holds(&dir.join(name)))
}

/// Makes the lock file, locked and with its content, under a temporary name, then gives it the
/// lock's name by a hard link, which fails if the name exists (`AlreadyExists`).
fn make_lock(dir: &Path) -> std::io::Result<File> {
    let tmp = owned::temporary_for(&dir.join(LOCK));
    let file = match new_lock(&tmp) {
        Ok(f) => f,
        // Not the lock's name: a file this run may not replace.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(std::io::Error::other(format!(
                "{} exists, and unroll makes its lock under that name; remove it if it is a \
                 leftover of an interrupted unroll",
                tmp.display()
            )));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let linked = std::fs::hard_link(&tmp, dir.join(LOCK));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: the lock is made in place (a run that starts at the
        // same moment may then find it empty for an instant, and be refused).
        Err(_) => new_lock(&dir.join(LOCK)),
    }
}

/// A new file at `path` (none may be there), locked, holding this run's lock content.
fn new_lock(path: &Path) -> std::io::Result<File> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    file.try_lock().map_err(std::io::Error::other)?;
    let content = LockContent {
        pid: std::process::id(),
        writing: None,
        legacy: false,
    };
    write_lock(&mut file, &content)?;
    Ok(file)
}

/// Whether the open file is still the one at `path` (not removed or replaced since it was
/// opened).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}
