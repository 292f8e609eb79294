//! The best model beside the last: every run keeps the checkpoint of its lowest validation loss
//! (`best.safetensors`), and `--early-stop N` ends it after N evaluations without improvement,
//! as Keras' `ModelCheckpoint(save_best_only)` and `EarlyStopping(patience=N)` do.

use std::path::Path;
use unroll::checkpoint::Checkpoint;
use unroll::gpu::AdapterChoice;
use unroll::optim::OptimizerConfig;
use unroll::train::{Device, Resume, RunOptions, TrainConfig, train};

/// A small text model on the CPU reference whose validation loss goes up and down (a high
/// learning rate), evaluated every 5 steps.
fn config(iters: u64, early_stop: u64) -> TrainConfig {
    TrainConfig {
        hidden: 32,
        batch: 8,
        seq_len: 16,
        iters,
        eval_every: 5,
        log_every: 5,
        checkpoint_every: 0,
        sample_len: 0,
        early_stop,
        optim: OptimizerConfig {
            lr: 0.05,
            ..OptimizerConfig::default()
        },
        ..TrainConfig::default()
    }
}

fn opts(dir: &Path) -> RunOptions {
    RunOptions {
        out_dir: dir.to_owned(),
        force: false,
        max_bytes: unroll::data::DEFAULT_MAX_BYTES,
        self_check: false,
        device: Device::Cpu,
        adapter: AdapterChoice::default(),
        recurrence: None,
        tune: unroll::tune::Tuning::off(),
        resume: None,
        quiet: true,
        interrupt: None,
        accumulate: 1,
        devices: Vec::new(),
        job: None,
    }
}

/// (step, validation loss) of every evaluated row of a run's metrics.csv.
fn evaluations(dir: &Path) -> Vec<(u64, f32)> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            Some((cells[0].parse().ok()?, cells[2].parse().ok()?))
        })
        .collect()
}

/// The first lowest evaluation, and the step at which `patience` evaluations in a row did not
/// go below it (None: never).
fn expected(evals: &[(u64, f32)], patience: usize) -> ((u64, f32), Option<u64>) {
    let mut best = evals[0];
    let mut since = 0;
    for &(step, v) in &evals[1..] {
        if v < best.1 {
            (best, since) = ((step, v), 0);
        } else {
            since += 1;
            if since == patience {
                return (best, Some(step));
            }
        }
    }
    (best, None)
}

/// The validation loss of a checkpoint's parameters, by resuming it with no step to take.
fn val_loss_of(checkpoint: &Path, step: u64, scratch: &Path) -> f32 {
    let mut o = opts(scratch);
    o.resume = Some(Resume {
        iters: Some(step),
        ..Resume::from(checkpoint)
    });
    train(&config(step, 0), &o).unwrap().val_loss
}

#[test]
fn the_best_evaluation_is_kept_and_early_stop_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let s = train(&config(400, 3), &opts(&run)).unwrap();
    let evals = evaluations(&run);
    let ((best_step, best_val), stop) = expected(&evals, 3);
    // The run stopped where three evaluations in a row had not improved, well before --iters.
    assert_eq!(Some(s.step), stop, "{evals:?}");
    assert!(s.stopped_early && s.step < 400);
    assert_eq!(evals.last().unwrap().0, s.step);
    let (best, path) = s.best.clone().unwrap();
    assert_eq!(
        (best.step, best.val_loss.to_bits()),
        (best_step, best_val.to_bits())
    );
    assert!(best.step < s.step, "the best is not the last: {evals:?}");
    // best.safetensors holds that step's model: evaluated again, the same loss to the bit.
    let ck = Checkpoint::load(&path).unwrap();
    assert_eq!(ck.info.step, best_step);
    assert_eq!(ck.info.best.map(|b| b.step), Some(best_step));
    let again = val_loss_of(&path, best_step, &dir.path().join("again"));
    assert_eq!(again.to_bits(), best_val.to_bits());
    // The last model is the last step's, not the best.
    assert_eq!(Checkpoint::load(&s.checkpoint).unwrap().info.step, s.step);
}

#[test]
fn a_resumed_run_keeps_the_best_of_both_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, split) = (dir.path().join("straight"), dir.path().join("split"));
    let whole = train(&config(60, 0), &opts(&straight)).unwrap();
    assert!(!whole.stopped_early);
    train(&config(30, 0), &opts(&split)).unwrap();
    let mut o = opts(&split);
    o.resume = Some(Resume {
        iters: Some(60),
        ..Resume::from(split.join("model.safetensors"))
    });
    let resumed = train(&config(60, 0), &o).unwrap();
    let (a, b) = (whole.best.unwrap().0, resumed.best.unwrap().0);
    assert_eq!(
        (a.step, a.val_loss.to_bits(), a.since),
        (b.step, b.val_loss.to_bits(), b.since)
    );
    let ((step, val), _) = expected(&evaluations(&split), usize::MAX);
    assert_eq!((b.step, b.val_loss.to_bits()), (step, val.to_bits()));
    let kept = Checkpoint::load(&split.join("best.safetensors")).unwrap();
    assert_eq!(kept.info.step, step);
}

#[test]
fn early_stop_is_refused_where_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train(&config(10, 0), &opts(&run)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .args(["train", "--device", "cpu", "--early-stop", "3", "--resume"])
        .arg(run.join("model.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--early-stop"), "{err}");
}
