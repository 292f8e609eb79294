//! `unroll predict`: a classifier's class probabilities for every sequence of a file, on the
//! CPU reference, read as its training read its data (the checkpoint's vocabulary, classes and
//! channel scaling), and written as CSV:
//!
//! ```text
//! sequence,true_class,predicted_class,p_<class 0>,p_<class 1>,…
//! 0,Walking,Walking,0.01,0.02,0.95,0.02
//! ```
//!
//! `sequence` counts the file's sequences from 0, in its order; `p_k` = softmax of the logits.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::owned::{Kind, PREDICTIONS_PREFIX};
use crate::sequences::LabelledSequences;
use std::path::Path;

/// One sequence's prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The class the file gives it.
    pub label: usize,
    /// The most likely class.
    pub predicted: usize,
    /// The probability of each class.
    pub probabilities: Vec<f64>,
}

/// The sequences of a file (`.ts`, or `label<TAB>text` lines) as the checkpoint's classifier
/// reads them: its classes, vocabulary and channel scaling.
pub fn read_for(checkpoint: &Checkpoint, path: &Path, max_bytes: u64) -> Result<LabelledSequences> {
    let Some(classes) = &checkpoint.info.classes else {
        return Err(Error::config(
            "the checkpoint is not a classifier's (it has no classes)",
            "predict with a checkpoint of `unroll train --task classify`; a next-step model \
             samples (`unroll sample`) or forecasts (`unroll forecast`)",
        ));
    };
    let mut set = crate::run_classify::read_labelled(
        path,
        max_bytes,
        checkpoint.info.vocab.clone(),
        Some(&classes.names),
    )?;
    if let Some(stats) = &classes.channels {
        crate::run_classify::check_channels(&set, stats)?;
        set.normalize(stats);
    }
    Ok(set)
}

/// The class probabilities of every sequence, in the set's order, in batches of at most 64
/// sequences of similar lengths.
pub fn predict(checkpoint: &Checkpoint, set: &LabelledSequences) -> Result<Vec<Prediction>> {
    let params = &checkpoint.params;
    let config = params.config;
    let mut out = vec![None; set.len()];
    for run in set.buckets(64, 0) {
        let batch = set.batch(&run, &config);
        batch.validate(&config)?;
        let logits = crate::cpu::forward(params, &batch).logits;
        for (row, &i) in logits.chunks(config.output).zip(&run) {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            let probabilities: Vec<f64> = e.iter().map(|v| v / sum).collect();
            let predicted = (0..config.output).fold(0, |a, k| if row[k] > row[a] { k } else { a });
            out[i] = Some(Prediction {
                label: set.labels[i],
                predicted,
                probabilities,
            });
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Writes the predictions as CSV to `path`, a new file or a predictions file unroll wrote,
/// never one of `inputs`.
pub fn write(
    path: &Path,
    classes: &[String],
    predictions: &[Prediction],
    inputs: &[&Path],
) -> Result<()> {
    check_output(path, inputs)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::file(path, format!("cannot write the predictions: {e}"));
    let mut header: Vec<String> = PREDICTIONS_PREFIX.split(',').map(String::from).collect();
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header).map_err(err)?;
    for (i, p) in predictions.iter().enumerate() {
        let mut row = vec![
            i.to_string(),
            classes[p.label].clone(),
            classes[p.predicted].clone(),
        ];
        row.extend(p.probabilities.iter().map(|v| v.to_string()));
        w.write_record(&row).map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| err(e.into_error().into()))?;
    crate::tensorfile::write_bytes_atomic(path, &bytes)
}

/// Refuses an output that is one of the inputs, or a file unroll did not write as predictions.
pub fn check_output(path: &Path, inputs: &[&Path]) -> Result<()> {
    let same = |a: &Path, b: &Path| {
        a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    };
    if let Some(input) = inputs.iter().find(|i| same(path, i)) {
        return Err(Error::file(
            path,
            format!(
                "is an input of the prediction ({}); it is left as it is\n  hint: pass another --out",
                input.display()
            ),
        ));
    }
    Kind::Predictions.check_replaceable(path)
}
