//! The CLI's whole-sequence parts: `unroll predict`, and a classifier's report at the end of a
//! run.

use crate::args::{ADAPTER_FLAGS, Device, Given};
use crate::args_seq::PredictArgs;
use anyhow::Result;
use unroll::checkpoint::Checkpoint;
use unroll::gpu::Gpu;

pub(crate) fn run_predict(args: &PredictArgs, given: &Given<'_>) -> Result<bool> {
    given.refuse(
        &ADAPTER_FLAGS,
        args.device == Device::Gpu,
        "--device cpu predicts with the CPU reference, on no adapter",
    )?;
    let inputs = [args.checkpoint.as_path(), args.data.as_path()];
    // The output is refused before any work: a file unroll did not write stays as it is.
    unroll::predict::check_output(&args.out, &inputs)?;
    let ck = Checkpoint::load(&args.checkpoint)?;
    let set = unroll::predict::read_for(&ck, &args.data, args.max_bytes)?;
    let predictions = match args.device {
        Device::Cpu => unroll::predict::predict(&ck, &set)?,
        Device::Gpu => {
            let gpu = Gpu::new(&args.adapter.choice())?;
            unroll::predict::predict_on_gpu(gpu, &ck, &set, args.adapter.recurrence)?
        }
    };
    unroll::predict::write(&args.out, &set.classes, &predictions, &inputs)?;
    let right = predictions
        .iter()
        .filter(|p| p.label == p.predicted)
        .count();
    println!(
        "{} sequences classified by {}: {right} as the file labels them ({:.1} %)",
        predictions.len(),
        args.checkpoint.display(),
        100.0 * right as f64 / predictions.len().max(1) as f64
    );
    println!("predictions: {}", args.out.display());
    Ok(true)
}

/// A classifier's validation accuracy, per class, and its confusion matrix (rows: the true
/// class; columns: the predicted one).
pub(crate) fn print_classified(c: &unroll::train::Classified) {
    match c.train_accuracy {
        Some(t) => println!(
            "validation accuracy: {:.1} % (training split: {:.1} %)",
            100.0 * c.accuracy,
            100.0 * t
        ),
        None => println!("validation accuracy: {:.1} %", 100.0 * c.accuracy),
    }
    let width = c
        .classes
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(1)
        .max(5);
    println!("  {:>width$}  sequences  accuracy  predicted as:", "class");
    for (k, row) in c.confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let acc = match total {
            0 => "-".to_string(),
            n => format!("{:.1} %", 100.0 * row[k] as f64 / n as f64),
        };
        let cells: Vec<String> = row.iter().map(|n| format!("{n:>4}")).collect();
        println!(
            "  {:>width$}  {total:>9}  {acc:>8}  {}",
            c.classes[k],
            cells.join("")
        );
    }
    if let Some((confusion, per_class)) = &c.files {
        println!("confusion:  {}", confusion.display());
        println!("per class:  {}", per_class.display());
    }
}
