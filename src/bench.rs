//! `unroll bench`: full training steps (forward, mean cross-entropy, backward, clipping-free SGD
//! update) of a one-hot Elman RNN, timed on the GPU and on the CPU reference.
//!
//! Each timed GPU step is submitted and waited for, so the GPU's work is inside the timed region;
//! the figures are the median and minimum over the steps. FLOPs per step are counted as
//! `6·T·B·(I·H + H·H + H·O)` (forward 2, backward 4), the same formula for every implementation.

use crate::cpu;
use crate::error::Result;
use crate::footprint::{self, Work};
use crate::gpu::{
    Gpu, GpuStack, GpuTrainer, ModelStep, Recurrence, StepOptions, TrainerShape, Variant,
};
use crate::median::median;
use crate::model::{Batch, ModelConfig, Params};
use crate::optim::{self, OptimizerConfig, OptimizerKind, OptimizerState};
use crate::tune::{Target, TuneMode, Tuned};
use std::time::{Duration, Instant};

/// One configuration to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BenchConfig {
    /// H.
    pub hidden: usize,
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// I = O.
    pub vocab: usize,
}

impl BenchConfig {
    /// The four standard configurations: min-char-rnn's, two char-rnn sizes, and a large one.
    pub fn standard() -> Vec<Self> {
        [(100, 1, 25), (128, 32, 64), (512, 32, 64), (1024, 64, 64)]
            .into_iter()
            .map(|(hidden, batch, steps)| Self {
                hidden,
                batch,
                steps,
                vocab: 65,
            })
            .collect()
    }

    /// FLOPs of one training step: 6·T·B·(I·H + H·H + H·O).
    pub fn flops(&self) -> f64 {
        let (h, v) = (self.hidden as f64, self.vocab as f64);
        6.0 * (self.steps * self.batch) as f64 * (v * h + h * h + h * v)
    }

    fn model(&self) -> ModelConfig {
        ModelConfig::tokens(self.vocab, self.hidden)
    }
}

/// The timing of one configuration on one device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    /// What was timed.
    pub config: BenchConfig,
    /// `gpu: <adapter>` or `cpu reference`.
    pub device: String,
    /// The recurrence strategy (GPU).
    pub recurrence: Option<Recurrence>,
    /// The step's variant (GPU): ordering, loads, products, tiles.
    pub variant: Option<String>,
    /// Steps timed.
    pub timed_steps: usize,
    /// Median milliseconds per step.
    pub median_ms: f64,
    /// Fastest step, milliseconds.
    pub min_ms: f64,
    /// B·T / median.
    pub tokens_per_s: f64,
    /// FLOPs / median.
    pub gflops: f64,
    /// Compute dispatches per step (GPU).
    pub dispatches_per_step: f64,
    /// Queue submissions per step (GPU).
    pub submissions_per_step: f64,
    /// Waits for the GPU per training step that does not report the loss (GPU).
    pub waits_per_step_training: f64,
    /// Waits for the GPU per reporting step (GPU).
    pub waits_per_report: f64,
    /// Bytes uploaded per step (GPU).
    pub upload_bytes_per_step: f64,
    /// Bytes read back per reporting step (GPU).
    pub readback_bytes_per_report: f64,
    /// GPU memory held by the trainer's buffers.
    pub gpu_memory_bytes: u64,
    /// The largest relative error of the pre-timing check against the CPU reference.
    pub check_max_rel_error: Option<f64>,
    /// Per-phase GPU milliseconds from timestamp queries (`--profile`).
    pub profile: Vec<(String, f64)>,
}

fn sgd() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr: 1e-3,
        momentum: 0.0,
        clip: 0.0,
        ..OptimizerConfig::default()
    }
}

/// Checks one step of the GPU against the CPU reference on the configuration's H and vocabulary
/// (B and T capped at 4 and 16 so the CPU side stays quick), run as `variant` (its tiles chosen
/// for the small shape). Returns the largest relative error.
pub(crate) fn check_against_cpu(gpu: &Gpu, c: &BenchConfig, variant: &Variant) -> Result<f64> {
    let model = c.model();
    let (b, t) = (c.batch.min(4), c.steps.min(16));
    let params = Params::init(model, 1);
    let batch = Batch::random(&model, b, t, true, 2);
    let kernels = gpu.kernels()?;
    let options = StepOptions {
        tiles: None,
        ..variant.options()
    };
    let step = ModelStep::new(gpu, &kernels, model, (b, t), options)?;
    let got = step.run_and_read(gpu, &params, &batch)?;
    let want = cpu::step(&params, &batch);
    let rows = crate::compare::compare_all(
        &want.tensors(&model, b, t),
        &got.tensors(&model, b, t),
        crate::check::RTOL_F32,
    );
    let worst = rows.iter().map(|r| r.relative()).fold(0.0, f64::max);
    if rows.iter().any(|r| !r.pass()) {
        return Err(crate::Error::Gpu {
            op: "the pre-benchmark check".into(),
            message: crate::compare::table("GPU disagrees with the CPU reference", &rows),
        });
    }
    Ok(worst)
}

/// The variant of the Elman model's step at a configuration: tuned as `mode` says (the cache
/// in `cache`, where given), on the ordering asked for.
pub fn tune_config(
    gpu: &Gpu,
    c: &BenchConfig,
    recurrence: Option<Recurrence>,
    (mode, cache): (TuneMode, Option<&std::path::Path>),
) -> Result<Tuned> {
    let target = Target {
        config: c.model(),
        shape: (c.batch, c.steps),
        recurrence,
    };
    crate::tune::tune(gpu, &target, mode, cache)
}

/// Times `steps` GPU training steps (after `warmup`), each submitted and waited for, the step
/// run as `variant`.
pub fn bench_gpu(
    gpu: Gpu,
    c: &BenchConfig,
    variant: Variant,
    (warmup, steps): (usize, usize),
    profile: bool,
) -> Result<BenchResult> {
    let model = c.model();
    let shape = (c.batch, c.steps);
    let fit = (
        Some(variant.recurrence),
        variant.tiles,
        Some(variant.subgroups),
    );
    let (_, recurrence, _) = GpuStack::check_fits(&gpu, model, shape, fit)?;
    let (b, t) = (c.batch, c.steps);
    footprint::check_host(&model, &Work::case_and_check(b.min(4), t.min(16)))?;
    let train = Work::TrainGpu {
        batch: b,
        steps: t,
        self_check: false,
    };
    footprint::check_host(&model, &[train])?;
    let check = check_against_cpu(&gpu, c, &variant)?;
    let device = format!("gpu: {}", crate::gpu::describe(&gpu.info));
    let shape = TrainerShape {
        variant: Some(variant),
        ..TrainerShape::new(c.batch, c.steps)
    };
    let mut trainer = GpuTrainer::new(gpu, model, shape, sgd(), &Params::init(model, 1))?;
    let batch = Batch::random(&model, c.batch, c.steps, false, 3);
    for _ in 0..warmup {
        trainer.train_step(&batch.inputs, &batch.targets, false, true)?;
    }
    let before = trainer.counters();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t0 = Instant::now();
        trainer.train_step(&batch.inputs, &batch.targets, false, false)?;
        trainer.gpu().wait("a benchmark step")?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let after = trainer.counters();
    let n = (after.steps - before.steps) as f64;
    // One step that does not report, untimed and not waited for inside the count: the waits of
    // the timed steps include the benchmark's own.
    let quiet_before = trainer.counters();
    trainer.train_step(&batch.inputs, &batch.targets, false, false)?;
    let quiet = trainer.counters();
    trainer.gpu().wait("a benchmark step")?;
    // One reporting step, untimed, for what a report reads back.
    let report_before = trainer.counters();
    trainer.train_step(&batch.inputs, &batch.targets, false, true)?;
    let report = trainer.counters();
    let readback_bytes_per_report = (report.bytes_read_back - report_before.bytes_read_back) as f64;
    let waits_per_report = (report.waits - report_before.waits) as f64;
    let profile = if profile {
        trainer.profile_step(&batch.inputs, &batch.targets)?;
        let mut runs: Vec<Vec<(&str, f64)>> = Vec::new();
        for _ in 0..5 {
            runs.push(trainer.profile_step(&batch.inputs, &batch.targets)?);
        }
        (0..runs[0].len())
            .map(|i| {
                let mut v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
                (runs[0][i].0.to_string(), median(&mut v))
            })
            .collect()
    } else {
        vec![]
    };
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    let median_ms = median(&mut times);
    Ok(BenchResult {
        config: *c,
        device,
        recurrence: Some(recurrence),
        variant: Some(variant.name()),
        timed_steps: steps,
        median_ms,
        min_ms,
        tokens_per_s: (c.batch * c.steps) as f64 / (median_ms * 1e-3),
        gflops: c.flops() / (median_ms * 1e-3) * 1e-9,
        dispatches_per_step: (after.dispatches - before.dispatches) as f64 / n,
        submissions_per_step: (after.submissions - before.submissions) as f64 / n,
        waits_per_step_training: (quiet.waits - quiet_before.waits) as f64,
        upload_bytes_per_step: (after.bytes_uploaded - before.bytes_uploaded) as f64 / n,
        readback_bytes_per_report,
        waits_per_report,
        gpu_memory_bytes: trainer.memory_bytes(),
        check_max_rel_error: Some(check),
        profile,
    })
}

/// Times CPU reference training steps: up to `steps`, stopping early after `budget`
/// (at least one step).
pub fn bench_cpu(c: &BenchConfig, steps: usize, budget: Duration) -> Result<BenchResult> {
    let model = c.model();
    model.validate()?;
    let work = Work::TrainCpu {
        batch: c.batch,
        steps: c.steps,
        eval_batch: 0,
    };
    footprint::check_host(&model, &[work])?;
    let mut params = Params::init(model, 1);
    let batch = Batch::random(&model, c.batch, c.steps, false, 3);
    let mut state = OptimizerState::new(model.num_params());
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < steps && (times.is_empty() || started.elapsed() < budget) {
        let t0 = Instant::now();
        let out = cpu::step(&params, &batch);
        optim::update(&sgd(), &mut params.data, &out.grads, &mut state);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    let timed_steps = times.len();
    let median_ms = median(&mut times);
    Ok(BenchResult {
        config: *c,
        device: "cpu reference (1 thread)".into(),
        recurrence: None,
        variant: None,
        timed_steps,
        median_ms,
        min_ms,
        tokens_per_s: (c.batch * c.steps) as f64 / (median_ms * 1e-3),
        gflops: c.flops() / (median_ms * 1e-3) * 1e-9,
        dispatches_per_step: 0.0,
        submissions_per_step: 0.0,
        waits_per_step_training: 0.0,
        upload_bytes_per_step: 0.0,
        readback_bytes_per_report: 0.0,
        waits_per_report: 0.0,
        gpu_memory_bytes: 0,
        check_max_rel_error: None,
        profile: vec![],
    })
}

/// The results as a table.
pub fn table(results: &[BenchResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<44} {:>5} {:>10} {:>10} {:>11} {:>8} {:>6} {:>5} {:>5} {:>9} {:>8} {:>10}",
        "H,B,T (I=O)",
        "device",
        "steps",
        "median ms",
        "min ms",
        "tokens/s",
        "GFLOP/s",
        "disp.",
        "subm.",
        "waits",
        "upload B",
        "read B",
        "GPU MiB"
    );
    for r in results {
        let c = r.config;
        let _ = writeln!(
            s,
            "{:<16} {:<44} {:>5} {:>10.3} {:>10.3} {:>11.0} {:>8.2} {:>6.0} {:>5.0} {:>5} {:>9.0} {:>8.0} {:>10.1}",
            format!("{},{},{} ({})", c.hidden, c.batch, c.steps, c.vocab),
            r.device.chars().take(44).collect::<String>(),
            r.timed_steps,
            r.median_ms,
            r.min_ms,
            r.tokens_per_s,
            r.gflops,
            r.dispatches_per_step,
            r.submissions_per_step,
            format!("{}/{}", r.waits_per_step_training, r.waits_per_report),
            r.upload_bytes_per_step,
            r.readback_bytes_per_report,
            r.gpu_memory_bytes as f64 / (1 << 20) as f64,
        );
        for (phase, ms) in &r.profile {
            let _ = writeln!(s, "    {phase:<22} {ms:>9.3} ms");
        }
    }
    s
}
