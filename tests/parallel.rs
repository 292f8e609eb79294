//! Data-parallel training in one process (`--devices`) and gradient accumulation
//! (`--accumulate`), through the binary: the same model as one batch, the same bits as each
//! other where the reduction's order makes them so, every rank's parameters equal, resume across
//! splits, and clear refusals. The MPI runs are in `tests/mpi.rs`.

mod common;

use common::{fails_in, succeeds_in};
use std::path::Path;
use unroll::checkpoint::Checkpoint;

/// A short run of the default model on B = 8 streams into `out`, with `extra` flags.
fn train(dir: &Path, out: &str, extra: &[&str]) -> String {
    train_to(dir, out, "24", extra)
}

/// [`train`] for `iters` steps.
fn train_to(dir: &Path, out: &str, iters: &str, extra: &[&str]) -> String {
    let mut args = common::short_run(out, iters, "8");
    args.extend_from_slice(extra);
    succeeds_in(dir, &args)
}

fn bytes(dir: &Path, out: &str) -> Vec<u8> {
    std::fs::read(dir.join(out).join("model.safetensors")).unwrap()
}

fn params(dir: &Path, out: &str) -> Vec<f32> {
    Checkpoint::load(&dir.join(out).join("model.safetensors"))
        .unwrap()
        .params
        .data
}

/// The largest difference between two parameter vectors, relative to the largest parameter.
fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// The bound, relative to the largest parameter, within which a run split into shares matches
/// the run of one batch after 24 Adam steps: float32 rounding of a sum taken in another order,
/// carried through the updates. Measured on lavapipe, llvmpipe and the CPU reference: 1.6e-7 for
/// every split here, 2.1e-6 for 2 MPI ranks at B = 12 (`tests/mpi.rs`).
const SPLIT_BOUND: f32 = 1e-5;

#[test]
fn accumulated_and_split_runs_train_the_model_of_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train(d, "whole", &[]);
    let acc = train(d, "acc2", &["--accumulate", "2"]);
    let split = train(d, "dev2", &["--devices", "0,0"]);
    train(d, "both", &["--devices", "0,0", "--accumulate", "2"]);
    assert!(acc.contains("2 micro-batches of 4 streams"), "{acc}");
    assert!(
        split.contains("parameters and optimizer state of all 2 ranks are equal"),
        "no agreement reported:\n{split}"
    );
    let whole = params(d, "whole");
    for run in ["acc2", "dev2", "both"] {
        let rel = max_rel(&whole, &params(d, run));
        eprintln!("{run} against one batch: {rel:.3e}");
        assert!(
            rel <= SPLIT_BOUND,
            "{run}: {rel:e} from the run of one batch"
        );
        assert_ne!(bytes(d, run), bytes(d, "whole"), "{run}: no split happened");
    }
    // Two micro-batches on one rank and two ranks of one are the same sum in the same order.
    assert_eq!(bytes(d, "acc2"), bytes(d, "dev2"));
}

/// Dropout's masks are keyed by the run's stream index, so every split draws the masks of the
/// whole batch: the GPU's and the CPU's split runs land within float32 noise of one batch, where
/// masks keyed by a share's own stream index would put them 1e-2 apart.
#[test]
fn dropout_draws_the_masks_of_one_batch_in_any_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let drop = ["--layers", "2", "--dropout", "0.3"];
    let with = |extra: &[&'static str]| [drop.as_slice(), extra].concat();
    train(d, "whole", &drop);
    train(d, "acc2", &with(&["--accumulate", "2"]));
    train(d, "dev2", &with(&["--devices", "0,0"]));
    train(d, "cpu", &with(&["--device", "cpu"]));
    train(d, "cpu4", &with(&["--device", "cpu", "--accumulate", "4"]));
    assert_eq!(bytes(d, "acc2"), bytes(d, "dev2"));
    for (a, b) in [("whole", "acc2"), ("cpu", "cpu4")] {
        let rel = max_rel(&params(d, a), &params(d, b));
        eprintln!("dropout, {b} against {a}: {rel:.3e}");
        assert!(rel <= SPLIT_BOUND, "{b}: {rel:e} from {a}");
    }
}

/// A series model (dense inputs and targets, (T, B, I) and (T, B, O)) splits its streams alike.
#[test]
fn a_series_model_splits_as_a_text_model_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let series = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--task",
            "series",
            "--iters",
            "20",
            "--batch",
            "8",
            "--hidden",
            "24",
            "--seq-len",
            "12",
            "--eval-every",
            "10",
            "--quiet",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        succeeds_in(d, &args);
    };
    series("whole", &[]);
    series("acc2", &["--accumulate", "2"]);
    series("dev2", &["--devices", "0,0"]);
    assert_eq!(bytes(d, "acc2"), bytes(d, "dev2"));
    let rel = max_rel(&params(d, "whole"), &params(d, "acc2"));
    eprintln!("series, acc2 against one batch: {rel:.3e}");
    assert!(rel <= SPLIT_BOUND, "{rel:e}");
}

#[test]
fn an_accumulated_run_repeats_bit_for_bit_on_the_cpu_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train(d, "a", &["--device", "cpu", "--accumulate", "4"]);
    train(d, "b", &["--device", "cpu", "--accumulate", "4"]);
    train(d, "whole", &["--device", "cpu"]);
    assert_eq!(bytes(d, "a"), bytes(d, "b"));
    let rel = max_rel(&params(d, "whole"), &params(d, "a"));
    eprintln!("cpu, 4 micro-batches against one batch: {rel:.3e}");
    assert!(rel <= SPLIT_BOUND, "{rel:e}");
}

#[test]
fn a_run_resumes_on_another_split_of_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train(d, "straight", &["--accumulate", "2"]);
    // The first 12 steps as two micro-batches, the rest on two devices: the carried state of the
    // checkpoint (every stream in order) is cut anew.
    train_to(d, "split", "12", &["--accumulate", "2"]);
    succeeds_in(
        d,
        &[
            "train",
            "--resume",
            "split/model.safetensors",
            "--iters",
            "24",
            "--quiet",
            "--devices",
            "0,0",
        ],
    );
    assert_eq!(params(d, "straight"), params(d, "split"));
    // And on one batch: any split of the checkpoint's B resumes.
    succeeds_in(
        d,
        &[
            "train",
            "--resume",
            "split/model.safetensors",
            "--iters",
            "30",
            "--quiet",
        ],
    );
}

#[test]
fn splits_that_do_not_apply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = ["train", "--iters", "2", "--quiet", "--batch", "6"];
    let with = |extra: &[&'static str]| [base.as_slice(), extra].concat();
    fails_in(
        d,
        &with(&["--accumulate", "4"]),
        &["6 streams does not divide", "--batch 4"],
    );
    fails_in(d, &with(&["--devices", "0,0,0,0"]), &["does not divide"]);
    fails_in(d, &with(&["--accumulate", "0"]), &["--accumulate 0"]);
    fails_in(
        d,
        &with(&["--devices", "0,99"]),
        &["no adapter 99", "pick one of"],
    );
    fails_in(
        d,
        &with(&["--devices", "0", "--device", "cpu"]),
        &["--devices", "--device cpu"],
    );
    fails_in(
        d,
        &with(&["--devices", "0,0", "--adapter", "llvmpipe"]),
        &["--adapter", "--devices names the adapters"],
    );
    assert!(
        !d.join("runs")
            .join("default")
            .join("model.safetensors")
            .exists()
    );
}

#[test]
fn the_exchange_benchmark_times_one_rank_and_refuses_what_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = succeeds_in(d, &["bench", "--exchange", "1000,20000", "--steps", "3"]);
    assert!(out.contains("1 ranks; model"), "{out}");
    assert!(
        out.contains("     1000      1") && out.contains("    20000      1"),
        "{out}"
    );
    fails_in(d, &["bench", "--exchange", "0"], &["--exchange 0"]);
    fails_in(
        d,
        &["bench", "--exchange", "1000", "--cell", "gru"],
        &["--cell", "--exchange times"],
    );
}

/// Without MPI in the build, a launch of several processes is refused, not N racing runs.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_launch_of_several_processes_needs_the_mpi_build() {
    let dir = tempfile::tempdir().unwrap();
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
            .current_dir(dir.path())
            .args(["train", "--iters", "2", "--quiet"])
            .env(var, "2")
            .output()
            .unwrap();
        let all = common::text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(
            all.contains("one of 2 processes") && all.contains("--features mpi"),
            "{all}"
        );
        assert!(
            !dir.path().join("runs").exists(),
            "a refused run wrote files"
        );
    }
}
