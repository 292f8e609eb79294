//! Numeric series: reading a CSV, normalising its columns, next-step batching, the built-in
//! series (the forecast, which feeds each prediction back as the next input, is in
//! [`crate::forecast`]).
//!
//! Row r of the chosen input columns is x_r; the target of x_r is row r+1 of the target columns.
//! Every column is normalised with the mean and standard deviation of the training part; the
//! checkpoint stores them and the forecast undoes them.

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::model::{Inputs, Targets};
use rand::{RngExt, SeedableRng};
use std::path::Path;

/// A table of numbers with column names.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column names (`0`, `1`, … when the file has no header).
    pub names: Vec<String>,
    /// Rows, each as long as `names`; NaN where a cell is not a number (see `unreadable`).
    pub rows: Vec<Vec<f64>>,
    /// Per column, the first cell that is not a number, in words: a column that holds one
    /// (dates, labels, gaps) can be read by no model, and is refused only if chosen.
    unreadable: Vec<Option<String>>,
}

/// The line of the first blank line that has data after it (a time step would vanish), if any;
/// blank lines at the end of the file are harmless. Lines inside a quoted cell are not counted.
fn blank_line(text: &str) -> Option<usize> {
    let (mut quoted, mut blank) = (false, None);
    for (i, line) in text.lines().enumerate() {
        if !quoted && line.trim().is_empty() {
            blank.get_or_insert(i + 1);
            continue;
        }
        if blank.is_some() {
            return blank;
        }
        quoted ^= line.matches('"').count() % 2 == 1;
    }
    None
}

/// Parses CSV text: an optional header (a first row with any non-numeric cell), then numbers.
/// `source` names the file in errors.
pub fn parse_csv(text: &str, source: &str) -> Result<Table> {
    let bad = |msg: String| {
        Error::config(
            format!("{source}: {msg}"),
            "give a CSV of numbers, one row per time step, with an optional header row",
        )
    };
    // A UTF-8 byte-order mark is not part of the first cell.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(line) = blank_line(text) {
        return Err(Error::config(
            format!("{source}: line {line} is blank, and a row is one time step"),
            "remove the blank line, or fill it with the time step's values",
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader
        .records()
        .filter(|r| {
            // Blank lines (only at the end, by now) are skipped.
            r.as_ref()
                .map_or(true, |r| !(r.len() == 1 && r[0].is_empty()))
        })
        .peekable();
    let line_of = |r: &csv::StringRecord| r.position().map_or(0, |p| p.line());
    let first = match records.next() {
        None => return Err(bad("the file has no rows".into())),
        Some(r) => r.map_err(|e| bad(format!("{e}")))?,
    };
    // The first row is a header if it names columns: all its cells are words, or one of them is a
    // word where the next row has a number (a column of dates or labels is no header).
    let is_number = |c: &str| c.parse::<f64>().is_ok();
    let words: Vec<bool> = first.iter().map(|c| !is_number(c)).collect();
    let has_header = words.iter().all(|&w| w)
        || match records.peek() {
            Some(Ok(second)) => words
                .iter()
                .zip(second.iter())
                .any(|(&w, cell)| w && is_number(cell)),
            _ => words.iter().any(|&w| w),
        };
    let names: Vec<String> = if has_header {
        first.iter().map(String::from).collect()
    } else {
        (0..first.len()).map(|i| i.to_string()).collect()
    };
    let mut rows = Vec::new();
    let mut unreadable: Vec<Option<String>> = vec![None; names.len()];
    let data = (!has_header)
        .then_some(Ok(first))
        .into_iter()
        .chain(records);
    for record in data {
        let record = record.map_err(|e| bad(format!("{e}")))?;
        let line_no = line_of(&record);
        if record.len() != names.len() {
            return Err(bad(format!(
                "row {line_no} has {} cells, the {} has {}",
                record.len(),
                if has_header { "header" } else { "first row" },
                names.len()
            )));
        }
        let row = record
            .iter()
            .enumerate()
            .map(|(c, cell)| match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => {
                    unreadable[c].get_or_insert_with(|| {
                        format!(
                            "row {line_no}, column {} (`{}`): `{cell}` is not a number{}",
                            c + 1,
                            names[c],
                            if cell.is_empty() {
                                " (the cell is empty)"
                            } else {
                                ""
                            }
                        )
                    });
                    f64::NAN
                }
            })
            .collect();
        rows.push(row);
    }
    if rows.len() < 2 {
        return Err(bad(format!(
            "the file has {} row of data; next-step prediction needs at least 2",
            rows.len()
        )));
    }
    Ok(Table {
        names,
        rows,
        unreadable,
    })
}

impl Table {
    /// A table of numbers, every cell a finite number.
    pub fn new(names: Vec<String>, rows: Vec<Vec<f64>>) -> Self {
        let unreadable = vec![None; names.len()];
        Self {
            names,
            rows,
            unreadable,
        }
    }

    /// The indices of the named columns (names or 0-based indices); all columns when empty.
    /// A chosen column with a cell that is not a number is an error that names the cell.
    pub fn select(&self, wanted: &[String]) -> Result<Vec<usize>> {
        let chosen = self.find(wanted)?;
        match chosen.iter().find_map(|&c| self.unreadable[c].as_ref()) {
            None => Ok(chosen),
            Some(problem) => Err(Error::config(
                problem.clone(),
                if wanted.is_empty() {
                    "every column is read by default: choose the numeric ones with --columns"
                } else {
                    "fill the cell with a number, or choose other columns"
                },
            )),
        }
    }

    fn find(&self, wanted: &[String]) -> Result<Vec<usize>> {
        if wanted.is_empty() {
            return Ok((0..self.names.len()).collect());
        }
        // The first column of each name, found in one pass.
        let mut by_name = std::collections::HashMap::new();
        for (i, n) in self.names.iter().enumerate() {
            by_name.entry(n.as_str()).or_insert(i);
        }
        wanted
            .iter()
            .map(|w| {
                by_name
                    .get(w.as_str())
                    .copied()
                    .or_else(|| w.parse::<usize>().ok().filter(|&i| i < self.names.len()))
                    .ok_or_else(|| {
                        Error::config(
                            format!("no column `{w}`"),
                            format!(
                                "the {} columns are: {}; or give a 0-based index",
                                self.names.len(),
                                crate::rundir::few(&self.names, 8)
                            ),
                        )
                    })
            })
            .collect()
    }
}

/// The built-in series: two noisy sums of sines with a trend, 4,000 steps, deterministic.
pub fn builtin_series(seed: u64) -> Table {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rows = (0..4000)
        .map(|t| {
            let t = t as f64;
            let noise = 0.05;
            let a = (t / 8.0).sin()
                + 0.5 * (t / 3.0).sin()
                + 0.0005 * t
                + noise * rng.random_range(-1.0..1.0);
            let b = 0.8 * (t / 8.0 + 1.0).cos()
                + 0.3 * (t / 5.0).sin()
                + noise * rng.random_range(-1.0..1.0);
            vec![a, b]
        })
        .collect();
    Table::new(vec!["a".into(), "b".into()], rows)
}

/// Per-column mean and standard deviation, and which columns are inputs and targets.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// The names of the input columns.
    pub input_names: Vec<String>,
    /// The names of the target columns.
    pub target_names: Vec<String>,
    /// Mean of each input column.
    pub input_mean: Vec<f64>,
    /// Standard deviation of each input column.
    pub input_std: Vec<f64>,
    /// Mean of each target column.
    pub target_mean: Vec<f64>,
    /// Standard deviation of each target column.
    pub target_std: Vec<f64>,
}

impl Normalization {
    /// Checks that the statistics fit a model's sizes: one name, mean and standard deviation per
    /// input and per target, every mean finite and every deviation finite and positive.
    pub fn validate(&self, config: &crate::model::ModelConfig) -> Result<()> {
        for (what, names, mean, std, n) in [
            (
                "input",
                &self.input_names,
                &self.input_mean,
                &self.input_std,
                config.input,
            ),
            (
                "target",
                &self.target_names,
                &self.target_mean,
                &self.target_std,
                config.output,
            ),
        ] {
            if names.len() != n || mean.len() != n || std.len() != n {
                return Err(Error::config(
                    format!(
                        "{} {what} names, {} means and {} deviations for a model of {n} {what}s",
                        names.len(),
                        mean.len(),
                        std.len()
                    ),
                    "use a checkpoint that unroll wrote, unmodified",
                ));
            }
            if mean.iter().any(|m| !m.is_finite())
                || std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            {
                return Err(Error::config(
                    format!("a {what} mean or deviation is not a finite (positive) number"),
                    "use a checkpoint that unroll wrote, unmodified",
                ));
            }
        }
        Ok(())
    }
}

fn mean_std(rows: &[Vec<f64>], col: usize) -> (f64, f64) {
    let n = rows.len() as f64;
    let mean = rows.iter().map(|r| r[col]).sum::<f64>() / n;
    let var = rows.iter().map(|r| (r[col] - mean).powi(2)).sum::<f64>() / n;
    (mean, if var > 0.0 { var.sqrt() } else { 1.0 })
}

/// Normalised inputs and targets of a table.
pub struct Normalized {
    /// x_r, (rows, I).
    pub x: Vec<f32>,
    /// row r of the target columns, (rows, O).
    pub y: Vec<f32>,
    /// I.
    pub inputs: usize,
    /// O.
    pub outputs: usize,
}

impl Normalization {
    /// Looks the stored columns up in a table and normalises them.
    pub fn apply(&self, table: &Table) -> Result<Normalized> {
        let ic = table.select(&self.input_names)?;
        let tc = table.select(&self.target_names)?;
        let mut x = Vec::with_capacity(table.rows.len() * ic.len());
        let mut y = Vec::with_capacity(table.rows.len() * tc.len());
        for r in &table.rows {
            for (k, &c) in ic.iter().enumerate() {
                x.push(((r[c] - self.input_mean[k]) / self.input_std[k]) as f32);
            }
            for (k, &c) in tc.iter().enumerate() {
                y.push(((r[c] - self.target_mean[k]) / self.target_std[k]) as f32);
            }
        }
        Ok(Normalized {
            x,
            y,
            inputs: ic.len(),
            outputs: tc.len(),
        })
    }

    /// Undoes the normalisation of one target row.
    pub fn denormalize_target(&self, y: &[f32]) -> Vec<f64> {
        y.iter()
            .enumerate()
            .map(|(k, &v)| v as f64 * self.target_std[k] + self.target_mean[k])
            .collect()
    }

    /// Whether the targets are the inputs (so a forecast can feed itself).
    pub fn autoregressive(&self) -> bool {
        self.input_names == self.target_names
    }
}

/// B parallel streams through a normalised series, read in chunks of T rows.
#[derive(Clone, Debug)]
pub struct SeriesStreams {
    batch: usize,
    steps: usize,
    stream_len: usize,
    data: Normalized,
    start: usize,
}

impl Clone for Normalized {
    fn clone(&self) -> Self {
        Self {
            x: self.x.clone(),
            y: self.y.clone(),
            inputs: self.inputs,
            outputs: self.outputs,
        }
    }
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Normalized({} rows, I={}, O={})",
            self.x.len() / self.inputs.max(1),
            self.inputs,
            self.outputs
        )
    }
}

impl SeriesStreams {
    /// B streams through a series of one's own, as given (no normalisation): row r's inputs
    /// `x[r·I..(r+1)·I]` are to predict row r+1's targets `y[(r+1)·O..(r+2)·O]`.
    ///
    /// ```
    /// use unroll::series::SeriesStreams;
    /// use unroll::{Cell, Device, ModelConfig, Params, TrainOptions, Trainer};
    ///
    /// let wave: Vec<f32> = (0..400).map(|r| (r as f32 * 0.2).sin()).collect();
    /// let data = SeriesStreams::from_rows(&wave, &wave, 1, 1, 4, 20)?;
    /// let config = ModelConfig::dense(1, 16, 1).with_cell(Cell::Gru, 1);
    /// let mut trainer = Trainer::new(Device::Cpu, Params::init(config, 3), TrainOptions::new(4, 20))?;
    /// let first = trainer.fit(&data, 1)?;
    /// let last = trainer.fit(&data, 60)?;
    /// assert!(last.loss < first.loss / 4.0, "{} -> {}", first.loss, last.loss);
    /// # Ok::<(), unroll::Error>(())
    /// ```
    pub fn from_rows(
        x: &[f32],
        y: &[f32],
        inputs: usize,
        outputs: usize,
        batch: usize,
        steps: usize,
    ) -> Result<Self> {
        let rows = x.len() / inputs.max(1);
        if inputs == 0 || outputs == 0 || x.len() != rows * inputs || y.len() != rows * outputs {
            return Err(Error::config(
                format!(
                    "{} input values and {} target values are not the same number of rows of \
                     I={inputs} and O={outputs}",
                    x.len(),
                    y.len()
                ),
                "pass x as (rows, I) and y as (rows, O), row-major, with I and O of 1 or more",
            ));
        }
        if batch == 0 || steps == 0 {
            return Err(Error::config(
                format!("batch size {batch} and sequence length {steps}: both must be at least 1"),
                "pass a batch size and a sequence length of 1 or more",
            ));
        }
        let data = Normalized {
            x: x.to_vec(),
            y: y.to_vec(),
            inputs,
            outputs,
        };
        Self::new(&data, 0, rows, batch, steps, "given")
    }

    /// Streams over rows `[start, end)` of the data.
    fn new(
        data: &Normalized,
        start: usize,
        end: usize,
        batch: usize,
        steps: usize,
        what: &str,
    ) -> Result<Self> {
        let rows = end - start;
        let stream_len = rows / batch.max(1);
        if batch == 0 || stream_len < steps + 1 {
            return Err(Error::config(
                format!(
                    "the {what} part of the series has {rows} rows: too few for {batch} streams of {} (batch × (seq-len + 1))",
                    steps + 1
                ),
                format!(
                    "use a longer series, or a smaller --batch or --seq-len (at most {} streams fit)",
                    rows / (steps + 1)
                ),
            ));
        }
        Ok(Self {
            batch,
            steps,
            stream_len,
            data: data.clone(),
            start,
        })
    }

    /// Chunks in one pass over the streams.
    pub fn chunks_per_epoch(&self) -> usize {
        (self.stream_len - 1) / self.steps
    }

    /// Chunk k: inputs (T, B, I) and targets (T, B, O).
    pub fn chunk(&self, k: usize) -> (Inputs, Targets) {
        let (nb, nt, ni, no) = (self.batch, self.steps, self.data.inputs, self.data.outputs);
        let mut x = vec![0f32; nt * nb * ni];
        let mut y = vec![0f32; nt * nb * no];
        for b in 0..nb {
            let row0 = self.start + b * self.stream_len + k * nt;
            for t in 0..nt {
                let r = row0 + t;
                x[(t * nb + b) * ni..][..ni].copy_from_slice(&self.data.x[r * ni..][..ni]);
                y[(t * nb + b) * no..][..no].copy_from_slice(&self.data.y[(r + 1) * no..][..no]);
            }
        }
        (Inputs::Dense(x), Targets::Dense(y))
    }

    /// Where each stream's next chunk starts, in rows.
    pub fn positions(&self, k: usize) -> Vec<u64> {
        (0..self.batch)
            .map(|b| (self.start + b * self.stream_len + k * self.steps) as u64)
            .collect()
    }
}

/// A series prepared for training.
pub struct SeriesData {
    /// I.
    pub inputs: usize,
    /// O.
    pub outputs: usize,
    /// The training streams.
    pub train: SeriesStreams,
    /// Validation chunks.
    pub val: Vec<(Inputs, Targets)>,
    /// The column statistics.
    pub normalization: Normalization,
    /// The validation loss (½‖·‖², normalised units) of predicting each target as its last value.
    pub naive_val_loss: f64,
}

/// Reads the table of a run: the CSV of `--data`, or the built-in series.
pub fn read_table(data: Option<&Path>, seed: u64, max_bytes: u64) -> Result<Table> {
    match data {
        Some(path) => {
            let bytes = crate::data::read_data(path, max_bytes)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::file(
                    path,
                    format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
                )
            })?;
            parse_csv(&text, &path.display().to_string())
        }
        None => Ok(builtin_series(seed)),
    }
}

/// Loads, normalises and batches the series of a run. A resumed run passes its checkpoint's
/// normalisation, so the data is scaled exactly as before.
pub fn load(
    cfg: &TrainConfig,
    normalization: Option<Normalization>,
    max_bytes: u64,
) -> Result<SeriesData> {
    let table = read_table(cfg.data.as_deref(), cfg.seed, max_bytes)?;
    let rows = table.rows.len();
    let n_val = ((rows as f64) * cfg.val_fraction) as usize;
    let n_train = rows - n_val;
    let normalization = match normalization {
        Some(n) => n,
        None => {
            let ic = table.select(&cfg.columns)?;
            let tc = if cfg.targets.is_empty() {
                ic.clone()
            } else {
                table.select(&cfg.targets)?
            };
            let train_rows = &table.rows[..n_train.max(1)];
            let stats = |cols: &[usize]| -> (Vec<f64>, Vec<f64>) {
                cols.iter().map(|&c| mean_std(train_rows, c)).unzip()
            };
            let (input_mean, input_std) = stats(&ic);
            let (target_mean, target_std) = stats(&tc);
            Normalization {
                input_names: ic.iter().map(|&c| table.names[c].clone()).collect(),
                target_names: tc.iter().map(|&c| table.names[c].clone()).collect(),
                input_mean,
                input_std,
                target_mean,
                target_std,
            }
        }
    };
    let data = normalization.apply(&table)?;
    let train = SeriesStreams::new(&data, 0, n_train, cfg.batch, cfg.seq_len, "training")?;
    let vb = (n_val / (cfg.seq_len + 1)).min(cfg.batch);
    if vb == 0 {
        return Err(Error::config(
            format!(
                "the validation tail has {n_val} rows: too few for one chunk of {} (seq-len + 1)",
                cfg.seq_len + 1
            ),
            "raise --val-fraction, use a longer series, or a smaller --seq-len",
        ));
    }
    let val_streams = SeriesStreams::new(&data, n_train, rows, vb, cfg.seq_len, "validation")?;
    let chunks = match cfg.val_chunks {
        0 => val_streams.chunks_per_epoch(),
        n => val_streams.chunks_per_epoch().min(n),
    };
    let val: Vec<(Inputs, Targets)> = (0..chunks).map(|k| val_streams.chunk(k)).collect();
    // The naive forecast on the same positions: the target of row r predicted as row r's target columns.
    let naive_val_loss = if normalization.autoregressive() {
        let (no, mut total, mut n) = (data.outputs, 0.0, 0usize);
        for k in 0..chunks {
            for p in val_streams.positions(k) {
                for t in 0..cfg.seq_len {
                    let r = p as usize + t;
                    let e: f64 = (0..no)
                        .map(|o| (data.y[(r + 1) * no + o] - data.y[r * no + o]) as f64)
                        .map(|d| 0.5 * d * d)
                        .sum();
                    total += e;
                    n += 1;
                }
            }
        }
        total / n.max(1) as f64
    } else {
        f64::NAN
    };
    Ok(SeriesData {
        inputs: data.inputs,
        outputs: data.outputs,
        train,
        val,
        normalization,
        naive_val_loss,
    })
}
