//! A run's metrics file (`metrics.csv`: one row per reported step) and its loss plot.

use crate::config::Task;
use crate::error::{Error, Result};
use crate::owned::{self, Kind, METRICS_HEADER};
use crate::plot;
use crate::rundir::{self, RunDir};
use std::io::Write;
use std::path::PathBuf;

/// The metrics file: one CSV row per reported step.
pub(crate) struct Metrics {
    pub(crate) file: std::fs::File,
    pub(crate) path: PathBuf,
    pub(crate) rows: Vec<(u64, f32, Option<f32>)>,
}

impl Metrics {
    /// Opens the run's `metrics.csv`; on resume keeps its rows up to `step` (where the file is
    /// unroll's) and appends after them.
    pub(crate) fn open(dir: &RunDir, resume: bool, step: u64) -> Result<Self> {
        let path = &dir.file(rundir::METRICS);
        let err = |e: std::io::Error| Error::file(path, format!("cannot write metrics: {e}"));
        let mut rows = Vec::new();
        let mut kept = format!("{METRICS_HEADER}\n");
        if resume
            && Kind::Metrics.holds(path)
            && let Ok(old) = std::fs::read_to_string(path)
        {
            for line in old.lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                if let (Some(Ok(s)), Some(Ok(l))) = (
                    f.first().map(|v| v.parse::<u64>()),
                    f.get(1).map(|v| v.parse::<f32>()),
                ) && s <= step
                {
                    rows.push((s, l, f.get(2).and_then(|v| v.parse::<f32>().ok())));
                    kept.push_str(line);
                    kept.push('\n');
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
        })
    }

    pub(crate) fn write(
        &mut self,
        step: u64,
        train: f32,
        val: Option<f32>,
        tokens_per_s: f64,
        elapsed: f64,
    ) -> Result<()> {
        let val_s = val.map(|v| v.to_string()).unwrap_or_default();
        writeln!(
            self.file,
            "{step},{train},{val_s},{tokens_per_s:.1},{elapsed:.3}"
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
