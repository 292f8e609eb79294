//! The tuner's cache: one small JSON file per (adapter, driver, wgpu and unroll versions, model,
//! shape, asked ordering), `tune-<hash of that key>.json` in the user's cache directory
//! (`$XDG_CACHE_HOME/unroll/`, else the platform's: `~/.cache/unroll/`,
//! `~/Library/Caches/unroll/`, `%LOCALAPPDATA%\unroll\`).
//!
//! A file is unroll's when it parses and carries the mark [`MARK`]; one that does not (another
//! program's, or damaged) is never trusted, never replaced and never deleted: the caller warns
//! and tunes afresh, and the new choice is not stored. A file is written whole into a temporary
//! file of its own and then linked into place only where no file is yet, so two runs tuning at
//! once cannot damage each other's file (one keeps the other's) nor anyone else's.

use crate::gpu::Variant;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The mark of unroll's tuning files: the value of their `written_by` field.
pub const MARK: &str = "unroll tuning cache";

/// The file format's version: a file of another version is unroll's but not read.
const FORMAT: u32 = 1;

/// The major version of wgpu unroll is built with (a tuned choice may not hold under another).
/// A test checks it against Cargo.toml.
pub const WGPU_VERSION: &str = "30";

/// Everything a tuned choice depends on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    /// The adapter's name, vendor and device ids, backend and type.
    pub adapter: String,
    /// The driver and its version.
    pub driver: String,
    /// wgpu's major version.
    pub wgpu: String,
    /// unroll's version (the kernels change with it).
    pub unroll: String,
    /// The model's sizes, cell, layers, directions and head.
    pub model: crate::model::ModelConfig,
    /// (B, T).
    pub shape: (usize, usize),
    /// The ordering asked for (`--recurrence`), if any.
    pub recurrence: Option<crate::gpu::Recurrence>,
}

impl Key {
    /// The key of a step of `model` at `shape` on `info`'s adapter.
    pub fn new(
        info: &wgpu::AdapterInfo,
        model: crate::model::ModelConfig,
        shape: (usize, usize),
        recurrence: Option<crate::gpu::Recurrence>,
    ) -> Self {
        Self {
            adapter: format!(
                "{} ({:#06x}:{:#06x}, {:?}, {:?})",
                info.name, info.vendor, info.device, info.backend, info.device_type
            ),
            driver: format!("{} {}", info.driver, info.driver_info),
            wgpu: WGPU_VERSION.into(),
            unroll: env!("CARGO_PKG_VERSION").into(),
            model,
            shape,
            recurrence,
        }
    }

    /// The file's name: `tune-` and 16 hex digits of the key's FNV-1a hash.
    pub fn file_name(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("tune-{hash:016x}.json")
    }
}

/// One variant's time.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    /// What was timed.
    pub variant: Variant,
    /// Median milliseconds of its steps (forward, loss, backward).
    pub median_ms: f64,
    /// Steps timed.
    pub timed_steps: usize,
    /// The largest relative error of its check against the CPU reference.
    pub check_max_rel_error: f64,
}

/// How thoroughly a cached choice was tuned: `full` answers a quick tuning too, not the reverse.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Depth {
    /// A few variants within a time budget.
    Quick,
    /// Every candidate.
    Full,
}

/// One tuning file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// [`MARK`].
    pub written_by: String,
    /// The file format's version (1).
    pub format: u32,
    /// What the choice was tuned for.
    pub key: Key,
    /// How thoroughly.
    pub depth: Depth,
    /// The choice.
    pub variant: Variant,
    /// Every variant's time when it was tuned.
    pub timings: Vec<Timing>,
}

impl Entry {
    /// An entry of unroll's for `key`.
    pub fn new(key: Key, depth: Depth, variant: Variant, timings: Vec<Timing>) -> Self {
        Self {
            written_by: MARK.into(),
            format: FORMAT,
            key,
            depth,
            variant,
            timings,
        }
    }
}

/// What the cache holds for a key.
#[derive(Debug)]
pub enum Lookup {
    /// No file yet: tune, and store the choice.
    Absent,
    /// unroll's file for this key.
    Found(Box<Entry>),
    /// unroll's file, of another format or for another key under the same name: tune afresh,
    /// and the new choice may replace it.
    Stale(String),
    /// A file that is not unroll's, or cannot be read: tune afresh, never replace it. The
    /// warning says which file and why.
    Foreign(String),
}

/// The directory of unroll's cache: `$XDG_CACHE_HOME/unroll` where that is an absolute path,
/// else the platform's; None where the environment names none.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("unroll"));
    }
    if cfg!(windows) {
        return var("LOCALAPPDATA").map(|p| p.join("unroll"));
    }
    let home = var("HOME").filter(|p| p.is_absolute())?;
    if cfg!(target_os = "macos") {
        Some(home.join("Library/Caches/unroll"))
    } else {
        Some(home.join(".cache/unroll"))
    }
}

/// The largest tuning file read (a real one is a few KiB): a larger file is not unroll's.
const MOST_BYTES: u64 = 1 << 20;

/// Looks `key` up in `dir`.
pub fn lookup(dir: &Path, key: &Key) -> Lookup {
    let path = dir.join(key.file_name());
    let foreign = |why: String| {
        Lookup::Foreign(format!(
            "{} {why}; tuning afresh, and leaving that file as it is (delete it to have unroll \
             store its choice there)",
            path.display()
        ))
    };
    // The link itself, not what it points to: a link is not a file unroll wrote.
    let bytes = match std::fs::symlink_metadata(&path) {
        // No file there (a parent that is no directory holds none either: storing says why).
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Lookup::Absent;
        }
        Err(e) => return foreign(format!("cannot be read ({e})")),
        Ok(m) if m.file_type().is_symlink() => return foreign("is a link".into()),
        Ok(m) if !m.is_file() => return foreign("is not a file".into()),
        Ok(m) if m.len() > MOST_BYTES => {
            return foreign(format!("is {} bytes, not an unroll tuning file", m.len()));
        }
        Ok(_) => match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => return foreign(format!("cannot be read ({e})")),
        },
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return foreign(format!("is not an unroll tuning file (not JSON: {e})")),
    };
    if value.get("written_by").and_then(|v| v.as_str()) != Some(MARK) {
        return foreign(format!(
            "is not an unroll tuning file (no `written_by: {MARK}`)"
        ));
    }
    if value.get("format").and_then(|v| v.as_u64()) != Some(u64::from(FORMAT)) {
        return Lookup::Stale(format!(
            "{} is unroll's tuning file of another format; tuning afresh",
            path.display()
        ));
    }
    match serde_json::from_value::<Entry>(value) {
        Ok(e) if e.key == *key => Lookup::Found(Box::new(e)),
        Ok(_) => Lookup::Stale(format!(
            "{} holds another model's or adapter's choice; tuning afresh",
            path.display()
        )),
        Err(e) => foreign(format!("is marked unroll's but damaged ({e})")),
    }
}

/// Whether the file at `path` is still unroll's (read again just before it is replaced: a
/// file put there since it was looked up is not).
fn still_ours(dir: &Path, key: &Key) -> bool {
    !matches!(lookup(dir, key), Lookup::Foreign(_))
}

/// Stores `entry` in `dir` (created if missing). `replace`: the file there is unroll's
/// ([`Lookup::Stale`], or a quick choice a full tuning supersedes) and may be replaced (if it
/// still is); else the entry is stored only where no file is. Returns the file's path, None
/// where another run stored its own there first (kept), or why nothing was stored.
pub fn store(dir: &Path, entry: &Entry, replace: bool) -> Result<Option<PathBuf>, String> {
    let path = dir.join(entry.key.file_name());
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
    let text = serde_json::to_string_pretty(entry).map_err(|e| e.to_string())?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(
        ".{}.{}-{nanos}.partial",
        entry.key.file_name(),
        std::process::id()
    ));
    // Only a file this call created is removed again.
    let mut file = (std::fs::OpenOptions::new().write(true).create_new(true))
        .open(&temp)
        .map_err(|e| fail("cannot write beside", e))?;
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
    {
        let _ = std::fs::remove_file(&temp);
        return Err(fail("cannot write", e));
    }
    drop(file);
    let placed = if replace {
        if !still_ours(dir, &entry.key) {
            let _ = std::fs::remove_file(&temp);
            return Err(format!("{} changed since it was read", path.display()));
        }
        std::fs::rename(&temp, &path).map(|_| Some(path.clone()))
    } else {
        link_new(&temp, &path, text.as_bytes())
    };
    let _ = std::fs::remove_file(&temp);
    placed.map_err(|e| fail("cannot store", e))
}

/// Puts the written temporary at `path` only where no file is: by a hard link (which fails where
/// a file is), or, on a file system without links, by creating the file anew. None where another
/// run's file is there already.
fn link_new(temp: &Path, path: &Path, text: &[u8]) -> std::io::Result<Option<PathBuf>> {
    match std::fs::hard_link(temp, path) {
        Ok(()) => Ok(Some(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
        Err(_) => {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path);
            match created {
                Ok(mut f) => f.write_all(text).map(|_| Some(path.to_owned())),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}
