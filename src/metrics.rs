//! A run's metrics file (`metrics.csv`: one row per reported step) and its loss plot.

use crate::config::Task;
use crate::error::{Error, Result};
use crate::owned::{
    self, Kind, METRICS_HEADER, METRICS_HEADER_ACCURACY, METRICS_HEADER_ACCURACY_V1,
};
use crate::plot;
use crate::rundir::{self, RunDir};
use std::io::Write;
use std::path::PathBuf;

/// The metrics file: one CSV row per reported step.
pub(crate) struct Metrics {
    pub(crate) file: std::fs::File,
    pub(crate) path: PathBuf,
    pub(crate) rows: Vec<(u64, f32, Option<f32>)>,
    /// Whether rows end with the validation accuracy (a classifier's).
    accuracy: bool,
}

impl Metrics {
    /// Opens the run's `metrics.csv` (with a validation accuracy column where `accuracy`); on
    /// resume keeps its rows up to `step` (where the file is unroll's) and appends after them.
    pub(crate) fn open(dir: &RunDir, resume: bool, step: u64, accuracy: bool) -> Result<Self> {
        let path = &dir.file(rundir::METRICS);
        let err = |e: std::io::Error| Error::file(path, format!("cannot write metrics: {e}"));
        let mut rows = Vec::new();
        let header = if accuracy {
            METRICS_HEADER_ACCURACY
        } else {
            METRICS_HEADER
        };
        let mut kept = format!("{header}\n");
        if resume
            && Kind::Metrics.holds(path)
            && let Ok(old) = std::fs::read_to_string(path)
        {
            // Rows of the older classifier's header gain its empty training-accuracy field.
            let widen = accuracy && old.lines().next() == Some(METRICS_HEADER_ACCURACY_V1);
            for line in old.lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                if let (Some(Ok(s)), Some(Ok(l))) = (
                    f.first().map(|v| v.parse::<u64>()),
                    f.get(1).map(|v| v.parse::<f32>()),
                ) && s <= step
                {
                    rows.push((s, l, f.get(2).and_then(|v| v.parse::<f32>().ok())));
                    kept.push_str(line);
                    kept.push_str(if widen { ",\n" } else { "\n" });
                }
            }
        }
        dir.write_atomic(rundir::METRICS, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            rows,
            accuracy,
        })
    }

    pub(crate) fn write(
        &mut self,
        step: u64,
        train: f32,
        val: Option<f32>,
        (tokens_per_s, elapsed): (f64, f64),
        (accuracy, train_accuracy): (Option<f64>, Option<f64>),
    ) -> Result<()> {
        let val_s = val.map(|v| v.to_string()).unwrap_or_default();
        let field = |a: Option<f64>| match a.filter(|_| val.is_some()) {
            Some(a) => format!(",{a}"),
            None => ",".to_string(),
        };
        let acc = match self.accuracy {
            true => field(accuracy) + &field(train_accuracy),
            false => String::new(),
        };
        writeln!(
            self.file,
            "{step},{train},{val_s},{tokens_per_s:.1},{elapsed:.3}{acc}"
        )
        .map_err(|e| Error::file(&self.path, format!("cannot write metrics: {e}")))?;
        self.rows.push((step, train, val));
        Ok(())
    }

    /// Draws the loss curves into the run's `loss.svg`.
    pub(crate) fn plot(&self, dir: &RunDir, task: Task) -> Result<()> {
        let train: Vec<(f64, f64)> = self
            .rows
            .iter()
            .map(|&(s, l, _)| (s as f64, l as f64))
            .collect();
        let val: Vec<(f64, f64)> = self
            .rows
            .iter()
            .filter_map(|&(s, _, v)| v.map(|v| (s as f64, v as f64)))
            .collect();
        let y = match task {
            Task::Text => "cross-entropy (nats per character)",
            Task::Series => "mean squared error / 2 (normalised)",
            Task::Classify => "cross-entropy (nats per sequence)",
        };
        let svg = plot::svg(
            crate::owned::PLOT_TITLE,
            "step",
            y,
            &[
                plot::Line {
                    label: "train",
                    points: train,
                },
                plot::Line {
                    label: "validation",
                    points: val,
                },
            ],
            &[owned::svg_mark(Kind::LossPlot)],
        )?;
        dir.write_atomic(rundir::PLOT, svg.as_bytes())
    }
}

/// A classifier's confusion (`true_class,predicted_class,sequences`, every pair) and its
/// per-class accuracy (`class,sequences,correct,accuracy`), as CSV text.
pub(crate) fn class_tables(names: &[String], confusion: &[Vec<u64>]) -> (String, String) {
    let mut pairs = format!("{}\n", owned::CONFUSION_HEADER);
    let mut per_class = format!("{}\n", owned::PER_CLASS_HEADER);
    for (k, row) in confusion.iter().enumerate() {
        for (j, n) in row.iter().enumerate() {
            pairs += &format!("{},{},{n}\n", csv_cell(&names[k]), csv_cell(&names[j]));
        }
        let total: u64 = row.iter().sum();
        let acc = if total > 0 {
            (row[k] as f64 / total as f64).to_string()
        } else {
            String::new()
        };
        per_class += &format!("{},{total},{},{acc}\n", csv_cell(&names[k]), row[k]);
    }
    (pairs, per_class)
}

/// A CSV cell: quoted where the name holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
