//! Which files are unroll's. Every file unroll writes carries a mark of its kind, and unroll
//! replaces or deletes a file only where it finds its own mark of the kind it is about to write:
//!
//! | kind | its mark |
//! |---|---|
//! | checkpoint | safetensors metadata `unroll` holding the run's JSON, with its `format` and `config` (its only metadata entry, so that the file's bytes are the same on every run) |
//! | `check --dump` | `unroll.file` = `check-dump` |
//! | `check --save-case` | `unroll.file` = `check-case` |
//! | loss plot, forecast plot, comparison plot | an SVG with the line `<!-- unroll.file: loss-plot -->` (or `forecast-plot`, `comparison-plot`) among its first; before the marks, the plot's title line |
//! | `metrics.csv`, `confusion.csv`, `per_class.csv` | the header unroll writes, exactly |
//! | `unroll predict`'s CSV | its header's start, `sequence,true_class,predicted_class,p_` |
//! | a forecast's CSV | its name, length and hash, recorded in the forecast plot beside it (same name, `.svg`) |
//! | `unroll.lock` | the first line `unroll run lock` ([`parse_lock`]; before the marks, the owner's pid alone, taken as unroll's only beside a run's checkpoint or metrics: see [`crate::rundir`]) |
//!
//! A temporary file (`.{name}.unroll-tmp-{pid}`, renamed over `name` once written) is created
//! only where no file has its name; in a run directory the lock file records it while it
//! exists, so that a later run, holding the lock, removes it only when the lock names it.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The title of the loss plot (its SVG's mark).
pub const PLOT_TITLE: &str = "unroll: loss";
/// The title of a forecast's plot (its SVG's mark).
pub const FORECAST_TITLE: &str = "unroll: forecast";

/// The safetensors metadata key that holds the kind of an unroll file.
pub const METADATA_KEY: &str = "unroll.file";

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str = "step,train_loss,val_loss,tokens_per_s,elapsed_s";
/// The header of a classifier's `metrics.csv`: the validation accuracy, then the training
/// split's (both of the model at the evaluation).
pub const METRICS_HEADER_ACCURACY: &str =
    "step,train_loss,val_loss,tokens_per_s,elapsed_s,val_accuracy,train_accuracy";
/// The header of a classifier's `metrics.csv` as earlier versions wrote it (no training
/// accuracy): still unroll's file, kept and appended to on resume.
pub const METRICS_HEADER_ACCURACY_V1: &str =
    "step,train_loss,val_loss,tokens_per_s,elapsed_s,val_accuracy";
/// The header of a classifier's `confusion.csv`.
pub const CONFUSION_HEADER: &str = "true_class,predicted_class,sequences";
/// The start of the header of `unroll predict`'s CSV (the classes' probabilities follow, each
/// `p_<class>`).
pub const PREDICTIONS_PREFIX: &str = "sequence,true_class,predicted_class";
/// The header of a classifier's `per_class.csv`.
pub const PER_CLASS_HEADER: &str = "class,sequences,correct,accuracy";

/// The first line of a run directory's lock file.
pub const LOCK_MARK: &str = "unroll run lock";

/// The marker in the names of unroll's temporary files: `.{name}.unroll-tmp-{pid}`.
const TEMPORARY: &str = ".unroll-tmp-";

/// The kinds of files unroll writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A checkpoint (`model.safetensors`).
    Checkpoint,
    /// The results of `unroll check --dump`.
    CheckDump,
    /// A case written by `unroll check --save-case`.
    CheckCase,
    /// A run's `metrics.csv`.
    Metrics,
    /// A classifier's `confusion.csv`.
    Confusion,
    /// A classifier's `per_class.csv`.
    PerClass,
    /// The CSV of `unroll predict`.
    Predictions,
    /// A run's `loss.svg`.
    LossPlot,
    /// The plot of `unroll forecast`.
    ForecastPlot,
    /// The CSV of `unroll forecast`.
    Forecast,
    /// The plot of runs side by side (`examples/compare_runs`).
    ComparisonPlot,
}

impl Kind {
    /// The name of the kind in its mark.
    pub fn mark(self) -> &'static str {
        match self {
            Kind::Checkpoint => "checkpoint",
            Kind::CheckDump => "check-dump",
            Kind::CheckCase => "check-case",
            Kind::Metrics => "metrics",
            Kind::Confusion => "confusion",
            Kind::PerClass => "per-class",
            Kind::Predictions => "predictions",
            Kind::LossPlot => "loss-plot",
            Kind::ForecastPlot => "forecast-plot",
            Kind::Forecast => "forecast",
            Kind::ComparisonPlot => "comparison-plot",
        }
    }

    /// The kind in words, for messages.
    fn describe(self) -> &'static str {
        match self {
            Kind::Checkpoint => "a checkpoint",
            Kind::CheckDump => "a dump of `unroll check`",
            Kind::CheckCase => "a case of `unroll check --save-case`",
            Kind::Metrics => "a metrics file",
            Kind::Confusion => "a confusion matrix",
            Kind::PerClass => "a per-class accuracy file",
            Kind::Predictions => "predictions of `unroll predict`",
            Kind::LossPlot => "a loss plot",
            Kind::ForecastPlot => "a forecast plot",
            Kind::Forecast => "a forecast (recorded in the plot beside it, unchanged since)",
            Kind::ComparisonPlot => "a plot of compare_runs",
        }
    }

    /// Whether `path` is a file of this kind that unroll wrote.
    pub fn holds(self, path: &Path) -> bool {
        match self {
            Kind::Checkpoint => safetensors_metadata(path).is_some_and(|m| run_json(&m)),
            Kind::CheckDump | Kind::CheckCase => {
                safetensors_metadata(path).is_some_and(|m| marked(&m, self))
            }
            Kind::Metrics => first_line_is(
                path,
                &[
                    METRICS_HEADER,
                    METRICS_HEADER_ACCURACY,
                    METRICS_HEADER_ACCURACY_V1,
                ],
            ),
            Kind::Confusion => first_line_is(path, &[CONFUSION_HEADER]),
            Kind::PerClass => first_line_is(path, &[PER_CLASS_HEADER]),
            Kind::Predictions => {
                let text = head(path, 4096);
                let first = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
                first.starts_with(format!("{PREDICTIONS_PREFIX},p_").as_bytes())
            }
            Kind::LossPlot => svg_marked(path, self, PLOT_TITLE),
            Kind::ForecastPlot => svg_marked(path, self, FORECAST_TITLE),
            Kind::Forecast => forecast_recorded(path),
            Kind::ComparisonPlot => svg_marked(path, self, "validation loss"),
        }
    }

    /// Refuses `path` as an output of this kind if a file is there that unroll did not write as
    /// this kind: only such a file may be replaced.
    pub fn check_replaceable(self, path: &Path) -> Result<()> {
        if std::fs::symlink_metadata(path).is_err() || self.holds(path) {
            return Ok(());
        }
        Err(Error::file(
            path,
            format!(
                "exists and is not {} that unroll wrote; it is left as it is\n  hint: pass \
                 another path, or remove the file first",
                self.describe()
            ),
        ))
    }
}

/// Whether the file's first line is one of `headers`, exactly.
fn first_line_is(path: &Path, headers: &[&str]) -> bool {
    let text = head(path, 4096);
    let first = text.split(|&b| b == b'\n').next();
    headers.iter().any(|h| first == Some(h.as_bytes()))
}

/// The metadata entry that marks a safetensors file of `kind`.
pub fn safetensors_mark(kind: Kind) -> (String, String) {
    (METADATA_KEY.to_string(), kind.mark().to_string())
}

/// The line that marks an SVG of `kind`.
pub fn svg_mark(kind: Kind) -> String {
    format!("<!-- {METADATA_KEY}: {} -->", kind.mark())
}

fn marked(meta: &serde_json::Value, kind: Kind) -> bool {
    meta.get(METADATA_KEY).and_then(|v| v.as_str()) == Some(kind.mark())
}

/// A checkpoint's mark: its `unroll` entry is the run's JSON, with the format and the model's
/// sizes.
fn run_json(meta: &serde_json::Value) -> bool {
    meta.get("unroll")
        .and_then(|v| v.as_str())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .is_some_and(|run| {
            run.get("format").is_some_and(|f| f.is_u64()) && run["config"].is_object()
        })
}

/// The first `limit` bytes of a file (fewer if it is shorter; none if it cannot be read).
pub(crate) fn head(path: &Path, limit: u64) -> Vec<u8> {
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

/// The first lines of an SVG file, if it is one.
fn svg_head(path: &Path) -> Option<String> {
    let text = String::from_utf8_lossy(&head(path, 1 << 16)).into_owned();
    text.trim_start().starts_with("<svg").then_some(text)
}

/// An SVG with the mark of `kind` among its first lines, or (written before the marks) with
/// `title` as a line of text.
fn svg_marked(path: &Path, kind: Kind, title: &str) -> bool {
    let mark = svg_mark(kind);
    svg_head(path).is_some_and(|text| {
        text.lines().take(8).any(|l| l.trim() == mark) || text.lines().any(|l| l.trim() == title)
    })
}

/// 64-bit FNV-1a: enough to tell a file from what unroll wrote there (not a defence against an
/// adversary, who could as well write the mark).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The plot beside a forecast's CSV.
pub fn forecast_plot_path(csv: &Path) -> PathBuf {
    csv.with_extension("svg")
}

/// The line a forecast plot holds about the CSV written with it: its name, length and hash.
pub fn forecast_record(csv: &Path, bytes: &[u8]) -> String {
    // The name in hex: whatever it holds, the comment stays one line of valid XML.
    let name: String = csv
        .file_name()
        .map(|n| {
            n.as_encoded_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "<!-- unroll.forecast-csv: {} bytes, fnv1a64 {:016x}, name {name} -->",
        bytes.len(),
        fnv1a(bytes)
    )
}

/// Whether the forecast plot beside `csv` is unroll's and records `csv` as it is now.
fn forecast_recorded(csv: &Path) -> bool {
    let plot = forecast_plot_path(csv);
    if plot == csv || !Kind::ForecastPlot.holds(&plot) {
        return false;
    }
    let Ok(meta) = std::fs::metadata(csv) else {
        return false;
    };
    if !meta.is_file() || meta.len() > 1 << 30 {
        return false;
    }
    let Ok(bytes) = std::fs::read(csv) else {
        return false;
    };
    let record = forecast_record(csv, &bytes);
    svg_head(&plot).is_some_and(|t| t.lines().take(12).any(|l| l.trim() == record))
}

/// What a run directory's lock file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockContent {
    /// The process that holds (or held) the lock.
    pub pid: u32,
    /// The temporary file that process was writing, if any (a name in the directory).
    pub writing: Option<String>,
    /// Whether the lock is of the format before the marks (the owner's pid alone): unroll's only
    /// beside a run's files.
    pub legacy: bool,
}

impl LockContent {
    /// The text of the lock file.
    pub fn render(&self) -> String {
        let mut s = format!("{LOCK_MARK}\npid {}\n", self.pid);
        if let Some(w) = &self.writing {
            s += &format!("writing {w}\n");
        }
        s
    }
}

/// The content of a lock file unroll wrote; `None` for anything else. Before the marks, the
/// lock file held the owner's pid alone.
pub fn parse_lock(bytes: &[u8]) -> Option<LockContent> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Some(LockContent {
            pid: trimmed.parse().ok()?,
            writing: None,
            legacy: true,
        });
    }
    let mut lines = text.lines();
    if lines.next()? != LOCK_MARK {
        return None;
    }
    let pid = lines.next()?.strip_prefix("pid ")?.parse().ok()?;
    let writing = match lines.next() {
        None => None,
        Some(l) => Some(l.strip_prefix("writing ")?.to_string()),
    };
    if lines.next().is_some() {
        return None;
    }
    Some(LockContent {
        pid,
        writing,
        legacy: false,
    })
}

/// The temporary that [`crate::tensorfile::write_bytes_atomic`] writes before renaming it over
/// `path`: `.{name}.unroll-tmp-{pid}` beside it.
pub fn temporary_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMPORARY}{}", std::process::id()))
}

/// Whether `name` is the name of a temporary that process `pid` writes for one of `names`.
pub fn is_temporary_of(name: &str, pid: u32, names: &[&str]) -> bool {
    names
        .iter()
        .any(|n| name == format!(".{n}{TEMPORARY}{pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unrolls_lock_files_parse() {
        let mine = LockContent {
            pid: 42,
            writing: Some(".model.safetensors.unroll-tmp-42".into()),
            legacy: false,
        };
        assert_eq!(parse_lock(mine.render().as_bytes()), Some(mine));
        assert_eq!(parse_lock(b"1234\n").map(|l| l.pid), Some(1234));
        for foreign in [
            &b""[..],
            b"my notes",
            b"unroll run lock\n",
            b"unroll run lock\npid x\n",
            b"unroll run lock\npid 1\nsomething else\n",
            b"unroll run lock\npid 1\nwriting a\nmore\n",
        ] {
            assert_eq!(
                parse_lock(foreign),
                None,
                "{:?}",
                String::from_utf8_lossy(foreign)
            );
        }
    }

    #[test]
    fn a_forecast_record_changes_with_the_bytes() {
        let p = Path::new("f.csv");
        assert_ne!(forecast_record(p, b"a\n1\n"), forecast_record(p, b"a\n2\n"));
        assert_ne!(
            forecast_record(p, b"a\n1\n"),
            forecast_record(Path::new("g.csv"), b"a\n1\n")
        );
    }
}
