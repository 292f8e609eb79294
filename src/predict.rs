//! `unroll predict`: a classifier's class probabilities for every sequence of a file, on the
//! CPU reference or on the GPU, read as its training read its data (the checkpoint's
//! vocabulary, classes and channel scaling), and written as CSV:
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

/// Sequences a batch of predictions holds at most (of similar lengths).
const BATCH: usize = 64;

/// The class probabilities of every sequence on the CPU reference, in the set's order.
pub fn predict(checkpoint: &Checkpoint, set: &LabelledSequences) -> Result<Vec<Prediction>> {
    let params = &checkpoint.params;
    predict_with(params.config, set, |batch| {
        batch.validate(&params.config)?;
        Ok(crate::cpu::forward(params, batch).logits)
    })
}

/// The class probabilities of every sequence on the GPU, in the set's order: the model on a
/// trainer for batches of up to 64 sequences as long as the longest (checked against the
/// adapter's limits first), with the recurrence asked for or the one chosen for the shape.
#[cfg(not(target_arch = "wasm32"))]
pub fn predict_on_gpu(
    gpu: crate::gpu::Gpu,
    checkpoint: &Checkpoint,
    set: &LabelledSequences,
    recurrence: Option<crate::gpu::Recurrence>,
) -> Result<Vec<Prediction>> {
    use crate::gpu::{GpuTrainer, TrainerShape};
    let config = checkpoint.params.config;
    let shape = TrainerShape {
        recurrence,
        ..TrainerShape::new(BATCH.min(set.len()).max(1), set.max_len())
    };
    let optim = crate::optim::OptimizerConfig::default();
    let mut trainer = GpuTrainer::new(gpu, config, shape, optim, &checkpoint.params)?;
    predict_with(config, set, |batch| trainer.predict(batch))
}

/// The class probabilities of every sequence, in the set's order, from `logits` of batches of
/// at most [`BATCH`] sequences of similar lengths.
fn predict_with(
    config: crate::model::ModelConfig,
    set: &LabelledSequences,
    mut logits: impl FnMut(&crate::model::Batch) -> Result<Vec<f32>>,
) -> Result<Vec<Prediction>> {
    let mut out = vec![None; set.len()];
    for run in set.buckets(BATCH, 0) {
        let logits = logits(&set.batch(&run, &config))?;
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
