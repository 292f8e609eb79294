//! Plots the validation loss of several runs against the training step, from their
//! `metrics.csv`, into one SVG: to compare models trained on the same data.
//!
//! ```sh
//! cargo run --release --example compare_runs -- out.svg "Elman=runs/a/metrics.csv" "LSTM × 2=runs/b/metrics.csv"
//! ```

use std::path::Path;
use unroll::owned::{Kind, svg_mark};
use unroll::plot::{Line, svg};

/// The plot's caption.
const TITLE: &str = "validation loss";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, runs)) = args.split_first().filter(|(_, runs)| !runs.is_empty()) else {
        return Err("usage: compare_runs OUT.svg LABEL=METRICS.csv …".into());
    };
    let mut curves = Vec::new();
    for run in runs {
        let (label, path) = run
            .rsplit_once('=')
            .ok_or_else(|| format!("`{run}`: expected LABEL=PATH (split at the last =)"))?;
        curves.push((label.to_string(), validation_curve(Path::new(path))?));
    }
    // Never replace a file this example did not write (a plot of its own has its mark).
    let out = Path::new(out);
    Kind::ComparisonPlot.check_replaceable(out)?;
    let drawn: Vec<Line<'_>> = curves
        .iter()
        .map(|(label, points)| Line {
            label,
            points: points.clone(),
        })
        .collect();
    let plot = svg(
        TITLE,
        "training step",
        "mean cross-entropy (nats per character)",
        &drawn,
        &[svg_mark(Kind::ComparisonPlot)],
    )?;
    unroll::tensorfile::write_bytes_atomic(out, plot.as_bytes())?;
    for (label, points) in &curves {
        if let Some((step, loss)) = points.last() {
            println!("{label}: validation loss {loss:.4} at step {step}");
        }
    }
    Ok(())
}

/// (step, validation loss) of every evaluated row of a `metrics.csv`.
fn validation_curve(path: &Path) -> Result<Vec<(f64, f64)>, Box<dyn std::error::Error>> {
    let mut reader = csv::Reader::from_path(path)?;
    let header = reader.headers()?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{}: no column `{name}`", path.display()))
    };
    let (step, val) = (column("step")?, column("val_loss")?);
    let mut points = Vec::new();
    for row in reader.records() {
        let row = row?;
        if let (Ok(s), Ok(v)) = (row[step].parse::<f64>(), row[val].parse::<f64>()) {
            points.push((s, v));
        }
    }
    Ok(points)
}
