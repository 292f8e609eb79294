//! Forecasting with a series model: warm the state on the whole history, then feed each
//! prediction back as the next input; and writing the forecast as CSV and a plot.

use crate::error::{Error, Result};
use crate::model::Params;
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
    let data = norm.apply(table)?;
    let (ni, no) = (cfg.input, cfg.output);
    if data.inputs != ni || data.outputs != no {
        return Err(Error::config(
            format!("the data has {} input columns, the model {ni}", data.inputs),
            "forecast with the columns the model was trained on",
        ));
    }
    let mut stepper = crate::sample::Stepper::new(params);
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

/// Writes the forecast as CSV (a header of the target columns) and a plot of the last part of
/// the history and the forecast beside it (`.svg`). Returns the plot's path.
pub fn write_forecast(
    path: &Path,
    norm: &Normalization,
    table: &Table,
    forecast: &[Vec<f64>],
    inputs: &[&Path],
) -> Result<std::path::PathBuf> {
    let header = norm.target_names.join(",");
    let plot_path = path.with_extension("svg");
    crate::rundir::check_forecast_outputs(path, &plot_path, inputs, &header)?;
    let mut csv = header;
    csv.push('\n');
    for row in forecast {
        csv.push_str(
            &row.iter()
                .map(|v| format!("{v}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push('\n');
    }
    crate::tensorfile::write_bytes_atomic(path, csv.as_bytes())?;
    let cols = table.select(&norm.target_names)?;
    let n = table.rows.len();
    let shown = n.saturating_sub(4 * forecast.len().max(50));
    let mut lines = Vec::new();
    for (k, &c) in cols.iter().enumerate() {
        lines.push((
            format!("{} (history)", norm.target_names[k]),
            (shown..n)
                .map(|r| (r as f64, table.rows[r][c]))
                .collect::<Vec<_>>(),
        ));
        lines.push((
            format!("{} (forecast)", norm.target_names[k]),
            std::iter::once((n as f64 - 1.0, table.rows[n - 1][c]))
                .chain(
                    forecast
                        .iter()
                        .enumerate()
                        .map(|(i, row)| ((n + i) as f64, row[k])),
                )
                .collect(),
        ));
    }
    let lines: Vec<crate::plot::Line<'_>> = lines
        .iter()
        .map(|(label, points)| crate::plot::Line {
            label,
            points: points.clone(),
        })
        .collect();
    crate::plot::lines(
        &plot_path,
        crate::rundir::FORECAST_TITLE,
        "step",
        "value",
        &lines,
    )?;
    Ok(plot_path)
}
