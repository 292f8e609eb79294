//! Shared by the integration tests: the adapter they run on, and the tolerance check.
#![allow(dead_code)]

use unroll::compare::{Comparison, table};
use unroll::gpu::{
    AdapterChoice, Gpu, Kernels, ModelStep, Recurrence, StepOptions, Tiles, describe,
};
use unroll::model::ModelConfig;

/// The adapter chosen by `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`. Never skips: with no adapter the
/// test fails and says how to get one.
pub fn gpu() -> Gpu {
    match Gpu::new(&AdapterChoice::default()) {
        Ok(gpu) => {
            eprintln!("adapter: {}", describe(&gpu.info));
            gpu
        }
        Err(e) => panic!(
            "no GPU adapter for the GPU tests: {e}\n\
             On Debian/Ubuntu: apt-get update && apt-get install -y mesa-vulkan-drivers libvulkan1, \
             then run with WGPU_BACKEND=vulkan (lavapipe) or WGPU_BACKEND=gl (llvmpipe)."
        ),
    }
}

/// Every value of a step's results, as bits.
pub fn bits(out: &unroll::model::StepOutput<f32>) -> Vec<u32> {
    out.bits()
}

/// Asserts every comparison passed, printing the whole table (with the worst elements) if not.
pub fn assert_all_pass(title: &str, rows: &[Comparison]) {
    assert!(!rows.is_empty(), "{title}: nothing was compared");
    if !rows.iter().all(Comparison::pass) {
        panic!("{}", table(title, rows));
    }
}

/// A finished process's stdout and stderr, as one text.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The flags of a short run of the default model (H = 48, T = 16) on `batch` streams into `out`,
/// evaluated and checkpointed every 12 steps, printing no sample.
pub fn short_run<'a>(out: &'a str, iters: &'a str, batch: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--iters",
        iters,
        "--batch",
        batch,
        "--hidden",
        "48",
        "--seq-len",
        "16",
        "--eval-every",
        "12",
        "--checkpoint-every",
        "12",
        "--sample-len",
        "0",
        "--quiet",
        "--out",
        out,
    ]
}

/// Runs the `unroll` binary in `cwd`; asserts exit status 2, no panic and no raw wgpu error, and
/// every needle in its output. Returns the output.
pub fn fails_in(cwd: &std::path::Path, args: &[&str], needles: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "unroll {args:?}:\n{all}");
    for bad in ["panicked", "RUST_BACKTRACE", "Validation Error"] {
        assert!(
            !all.contains(bad),
            "unroll {args:?} printed `{bad}`:\n{all}"
        );
    }
    for n in needles {
        assert!(all.contains(n), "unroll {args:?} should say `{n}`:\n{all}");
    }
    all
}

/// Runs the `unroll` binary in `cwd`; asserts success. Returns its stdout (what it means: a
/// driver may print anything on stderr).
pub fn succeeds_in(cwd: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "unroll {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A model's step ordered by `r`, its tiles chosen or `tiles` (a grid step that fails runs
/// ordered, bit for bit the same: tests/grid.rs shows both).
pub fn step(
    gpu: &Gpu,
    kernels: &Kernels,
    config: ModelConfig,
    shape: (usize, usize),
    (r, tiles): (Recurrence, Option<Tiles>),
) -> unroll::Result<ModelStep> {
    let options = StepOptions {
        recurrence: Some(r),
        tiles,
        ..Default::default()
    };
    ModelStep::new(gpu, kernels, config, shape, options)
}

/// The relative error of an analytic gradient against central differences:
/// |a − n| / max(|a|, |n|, 1e-3).
fn rel(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-3)
}

/// Pins every gradient of the CPU reference's step in f64 by central differences: every
/// parameter (step 1e-6, within 1e-6 relative), h0 and c0 (f32 in the batch, so a step of 2^-10
/// on f32's grid, within 1e-5 · max(|g|, 1e-2)). Asserts that a third or more of the parameters
/// move the loss, so that the check is not vacuous.
pub fn assert_finite_differences(
    params: &unroll::model::Params<f64>,
    batch: &unroll::model::Batch,
    what: &str,
) {
    use unroll::cpu::step;
    let eps = 1e-6;
    let out = step(params, batch);
    let loss = |p: &unroll::model::Params<f64>, b: &unroll::model::Batch| step(p, b).loss;
    let (mut worst, mut nonzero) = (0.0f64, 0);
    for i in 0..params.data.len() {
        let (mut up, mut down) = (params.clone(), params.clone());
        up.data[i] += eps;
        down.data[i] -= eps;
        let numeric = (loss(&up, batch) - loss(&down, batch)) / (2.0 * eps);
        worst = worst.max(rel(out.grads[i], numeric));
        nonzero += (numeric.abs() > 1e-6) as usize;
    }
    let state_eps = 1.0 / 1024.0;
    for (which, grads) in [("h0", &out.dh0), ("c0", &out.dc0)] {
        for (i, &g) in grads.iter().enumerate() {
            let (mut up, mut down) = (batch.clone(), batch.clone());
            let (u, d) = match which {
                "h0" => (&mut up.h0, &mut down.h0),
                _ => (&mut up.c0, &mut down.c0),
            };
            u[i] += state_eps as f32;
            d[i] -= state_eps as f32;
            let numeric = (loss(params, &up) - loss(params, &down)) / (2.0 * state_eps);
            // A step of 2^-10 leaves a curvature error of order eps²; the bound says so.
            assert!(
                (g - numeric).abs() <= 1e-5 * g.abs().max(1e-2),
                "{what}: d{which}[{i}] analytic {g} numeric {numeric}"
            );
        }
    }
    assert!(worst <= 1e-6, "{what}: worst relative error {worst:e}");
    assert!(
        nonzero > params.data.len() / 3,
        "{what}: the check moved the loss ({nonzero} of {})",
        params.data.len()
    );
}

/// The safetensors cases in a fixture folder, in name order.
pub fn fixtures(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    files
}

/// Asserts two f32 vectors of one length agree within 1e-5 · max |want|.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let max_ref = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let max_diff = got
        .iter()
        .zip(want)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        max_diff <= 1e-5 * max_ref,
        "{what}: differ by {max_diff} (max {max_ref})"
    );
}
