//! Forecasting with a series model: warm the state on the whole history, then feed each
//! prediction back as the next input; and writing the forecast as CSV and a plot.

use crate::error::{Error, Result};
use crate::model::Params;
use crate::owned::{self, Kind};
use crate::series::{Normalization, Table};
use std::path::Path;

/// Runs the model over the whole series to warm its hidden state, then predicts `horizon` steps
/// by feeding each prediction back as the next input. Returns the forecast rows, denormalised.
pub fn forecast(
    params: &Params<f32>,
    norm: &Normalization,
    table: &Table,
    horizon: usize,
) -> Result<Vec<Vec<f64>>> {
    if !norm.autoregressive() {
        return Err(Error::config(
            "the model's targets are not its inputs, so its predictions cannot be fed back",
            "train with the same --columns and --target (the default) to forecast",
        ));
    }
    if horizon == 0 || horizon > crate::sample::MAX_LEN {
        return Err(Error::config(
            format!("the forecast horizon is {horizon} steps"),
            format!("pass --horizon between 1 and {}", crate::sample::MAX_LEN),
        ));
    }
    let cfg = params.config;
    // The rows, their CSV text (some 25 bytes a value) and the plot's points.
    let per_value = 64u64;
    crate::footprint::check_bytes(
        &format!("a forecast of {horizon} steps of {} columns", cfg.output),
        (horizon as u64).saturating_mul(cfg.output as u64 * per_value + 64),
        "pass a shorter --horizon",
    )?;
    let data = norm.apply(table)?;
    let (ni, no) = (cfg.input, cfg.output);
    if data.inputs != ni || data.outputs != no {
        return Err(Error::config(
            format!("the data has {} input columns, the model {ni}", data.inputs),
            "forecast with the columns the model was trained on",
        ));
    }
    let mut stepper = crate::sample::Stepper::new(params)?;
    for r in 0..table.rows.len() {
        stepper.feed(&data.x[r * ni..(r + 1) * ni]);
    }
    let mut out = Vec::with_capacity(horizon);
    for _ in 0..horizon {
        let y = stepper.output();
        out.push(norm.denormalize_target(&y));
        stepper.feed(&y);
    }
    Ok(out)
}

/// Refuses outputs of a forecast that would replace one of its inputs, write the CSV and the
/// plot to one path, or replace a file that is not the forecast (or its plot) unroll wrote there.
fn check_outputs(csv: &Path, plot: &Path, inputs: &[&Path]) -> Result<()> {
    if csv == plot {
        return Err(Error::file(
            csv,
            "is where the forecast's plot goes (beside the CSV, as .svg), so the CSV and the plot \
             would be one file\n  hint: name the CSV, e.g. --out forecast.csv",
        ));
    }
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
    Kind::Forecast.check_replaceable(csv)?;
    Kind::ForecastPlot.check_replaceable(plot)
}

/// Refuses the outputs a forecast to `csv` would write (see [`write_forecast`]), before any of
/// the forecast's work.
pub fn check_forecast_outputs(csv: &Path, inputs: &[&Path]) -> Result<()> {
    check_outputs(csv, &owned::forecast_plot_path(csv), inputs)
}

/// The forecast as CSV: a header of the target columns, a row per step.
fn csv_bytes(norm: &Normalization, forecast: &[Vec<f64>]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| {
        Error::config(
            format!("cannot write the forecast as CSV: {e}"),
            "report this as a bug",
        )
    };
    w.write_record(&norm.target_names).map_err(err)?;
    for row in forecast {
        w.write_record(row.iter().map(|v| v.to_string()))
            .map_err(err)?;
    }
    w.into_inner().map_err(|e| err(e.into_error().into()))
}

/// The most points a line of the forecast's plot draws: longer lines are thinned evenly (the
/// CSV holds every step).
const PLOT_POINTS: usize = 2000;

/// Every `stride`-th point of a line, so that it has at most [`PLOT_POINTS`], and its last.
fn thinned(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let stride = points.len().div_ceil(PLOT_POINTS).max(1);
    let last = points.last().copied();
    let mut kept: Vec<_> = points.into_iter().step_by(stride).collect();
    if kept.last().copied() != last {
        kept.extend(last);
    }
    kept
}

/// Writes the forecast as CSV (a header of the target columns) and a plot of the last part of
/// the history and the forecast beside it (`.svg`), which records the CSV it was written with
/// (and the CSV it replaces, so that a failed write leaves that one still recognised).
/// Returns the plot's path.
pub fn write_forecast(
    path: &Path,
    norm: &Normalization,
    table: &Table,
    forecast: &[Vec<f64>],
    inputs: &[&Path],
) -> Result<std::path::PathBuf> {
    let plot_path = owned::forecast_plot_path(path);
    check_outputs(path, &plot_path, inputs)?;
    let mut marks = vec![owned::svg_mark(Kind::ForecastPlot)];
    if Kind::Forecast.holds(path)
        && let Ok(old) = std::fs::read(path)
    {
        marks.push(owned::forecast_record(path, &old));
    }
    let csv = csv_bytes(norm, forecast)?;
    marks.push(owned::forecast_record(path, &csv));
    let lines = plot_lines(norm, table, forecast)?;
    let lines: Vec<crate::plot::Line<'_>> = lines
        .iter()
        .map(|(label, points)| crate::plot::Line {
            label,
            points: points.clone(),
        })
        .collect();
    let svg = crate::plot::svg(
        crate::owned::FORECAST_TITLE,
        "step",
        "value",
        &lines,
        &marks,
    )?;
    // The plot first: it records the new CSV and the one it replaces, either of which a failed
    // write leaves there.
    crate::tensorfile::write_bytes_atomic(&plot_path, svg.as_bytes())?;
    crate::tensorfile::write_bytes_atomic(path, &csv)?;
    Ok(plot_path)
}

/// A line of the plot: its label and its (step, value) points.
type Labelled = (String, Vec<(f64, f64)>);

/// The plot's lines: per target column, the last part of the history and the forecast, each
/// thinned to at most [`PLOT_POINTS`].
fn plot_lines(norm: &Normalization, table: &Table, forecast: &[Vec<f64>]) -> Result<Vec<Labelled>> {
    let cols = table.select(&norm.target_names)?;
    let n = table.rows.len();
    let shown = n.saturating_sub(4 * forecast.len().max(50));
    let mut lines = Vec::new();
    for (k, &c) in cols.iter().enumerate() {
        let history = (shown..n).map(|r| (r as f64, table.rows[r][c])).collect();
        lines.push((
            format!("{} (history)", norm.target_names[k]),
            thinned(history),
        ));
        let ahead = std::iter::once((n as f64 - 1.0, table.rows[n - 1][c]))
            .chain(
                forecast
                    .iter()
                    .enumerate()
                    .map(|(i, row)| ((n + i) as f64, row[k])),
            )
            .collect();
        lines.push((
            format!("{} (forecast)", norm.target_names[k]),
            thinned(ahead),
        ));
    }
    Ok(lines)
}
