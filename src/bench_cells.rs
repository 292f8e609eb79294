//! `unroll bench --cell …`: what one step (forward, loss, backward) of stacked layers of each cell
//! costs against the Elman model's step of the same (H, B, T), on the GPU, with each ordering of
//! the recurrence (ordered dispatches, or the grid barrier) unless one is asked for, each with its
//! states loaded plainly and (where the adapter has subgroup operations) shared by subgroup
//! shuffles. A grid step whose barrier fails runs ordered from then on; the row says how many
//! steps fell back.
//!
//! Every variant is checked against the CPU reference first (B and T capped at 4 and 8), then
//! timed in one run with the variants interleaved step by step, so that the machine's swings in
//! speed fall on all of them alike. Each timed step is submitted and waited for. The dispatches
//! per step are counted where they are recorded. FLOPs per step: `6·T·B·(G·H·(I + H) + H·O)`
//! per layer (I = H above layer 0; forward 2, backward 4), the gathers of a token input counted
//! as if they were products.

use crate::bench::BenchConfig;
use crate::case::{Case, RandomCase};
use crate::cell::Cell;
use crate::check::compare_gpu_with;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuStack, Kernels, Recurrence, StepOptions};
use crate::median::median;
use crate::model::ModelConfig;
use std::time::Instant;

/// One variant's timing.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CellBenchRow {
    /// The (H, B, T) and vocabulary.
    pub config: BenchConfig,
    /// `elman, ordered`, `rnn × 2, grid`, `lstm × 1, ordered`, …
    pub variant: String,
    /// Steps timed.
    pub timed_steps: usize,
    /// Median milliseconds per step.
    pub median_ms: f64,
    /// Fastest step.
    pub min_ms: f64,
    /// The median over the median of the Elman model's step with the same ordering, measured in
    /// the same run.
    pub ratio_to_elman: f64,
    /// FLOPs / median.
    pub gflops: f64,
    /// Compute dispatches recorded per step.
    pub dispatches_per_step: u64,
    /// The largest relative error of the check against the CPU reference.
    pub check_max_rel_error: f64,
    /// Steps whose grid barrier failed (each ran again, ordered; the later steps ran ordered).
    pub fallbacks: usize,
}

/// How a variant's recurrence runs: its ordering, and whether a subgroup's lanes share states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Form {
    recurrence: Recurrence,
    subgroups: bool,
}

impl Form {
    fn name(self) -> String {
        match self.subgroups {
            true => format!("{}, subgroups", self.recurrence.name()),
            false => self.recurrence.name().into(),
        }
    }

    fn options(self) -> StepOptions {
        StepOptions {
            recurrence: Some(self.recurrence),
            subgroups: Some(self.subgroups),
            ..Default::default()
        }
    }
}

/// One thing to time: records its step into a compute pass.
struct Variant<'a> {
    name: String,
    form: Form,
    flops: f64,
    step: &'a GpuStack,
    check: f64,
}

/// FLOPs of one step of `layers` layers of `cell`.
fn flops(c: &BenchConfig, cell: Cell, layers: usize) -> f64 {
    let (h, v, g) = (c.hidden as f64, c.vocab as f64, cell.gates() as f64);
    let rows = (c.steps * c.batch) as f64;
    let layer = |input: f64| g * h * (input + h);
    let stack: f64 = (0..layers).map(|l| layer(if l == 0 { v } else { h })).sum();
    6.0 * rows * (stack + h * v)
}

/// Checks one stacked step of `cell` against the CPU reference at a small (B, T).
fn check_stack(gpu: &Gpu, kernels: &Kernels, config: ModelConfig, form: Form) -> Result<f64> {
    let small = RandomCase {
        batch: 4,
        steps: 8,
        seed: 1,
        init_scale: None,
        random_state: true,
    };
    let rows = compare_gpu_with(gpu, kernels, &Case::random(config, small)?, form.options())?;
    if rows.iter().any(|r| !r.pass()) {
        return Err(Error::Gpu {
            op: "the pre-benchmark check".into(),
            message: crate::compare::table("GPU disagrees with the CPU reference", &rows),
        });
    }
    Ok(rows.iter().map(|r| r.relative()).fold(0.0, f64::max))
}

/// One stacked step of `cell` in form `form`, checked, with its parameters and a batch
/// written; `None` (and a line on stderr saying why) where it cannot run this model here.
fn stack(
    gpu: &Gpu,
    kernels: &Kernels,
    c: &BenchConfig,
    config: ModelConfig,
    form: Form,
) -> Result<Option<(GpuStack, f64)>> {
    let options = form.options();
    let stack = match GpuStack::with_options(gpu, kernels, config, (c.batch, c.steps), options) {
        Err(Error::Config { problem, .. }) => {
            eprintln!(
                "{} × {}, {}: not run: {problem}",
                config.cell.name(),
                config.layers,
                form.name()
            );
            return Ok(None);
        }
        other => other?,
    };
    let check = check_stack(gpu, kernels, config, form)?;
    let full = RandomCase {
        batch: c.batch,
        steps: c.steps,
        seed: 3,
        init_scale: None,
        random_state: false,
    };
    let case = Case::random(config, full)?;
    stack.write_params(gpu, &case.params.cast::<f32>().data)?;
    stack.write_batch(gpu, &case.batch)?;
    Ok(Some((stack, check)))
}

/// Times the Elman model and `layers` layers of each cell at one configuration, with the
/// ordering asked for, or with each of the two.
pub fn bench_cells(
    gpu: &Gpu,
    c: &BenchConfig,
    cells: &[Cell],
    layers: usize,
    recurrence: Option<Recurrence>,
    (warmup, steps): (usize, usize),
) -> Result<Vec<CellBenchRow>> {
    let kernels = gpu.kernels()?;
    let recurrences = match recurrence {
        Some(r) => vec![r],
        None => vec![Recurrence::Ordered, Recurrence::Grid],
    };
    let sharing: &[bool] = if gpu.subgroups {
        &[false, true]
    } else {
        &[false]
    };
    let forms: Vec<Form> = (recurrences.iter())
        .flat_map(|&recurrence| {
            (sharing.iter()).map(move |&subgroups| Form {
                recurrence,
                subgroups,
            })
        })
        .collect();
    let elman = ModelConfig::tokens(c.vocab, c.hidden);
    let mut stacks = Vec::new();
    for (name, config) in
        std::iter::once(("elman".to_string(), elman)).chain(cells.iter().map(|&cell| {
            let name = format!("{} × {layers}", cell.name());
            (name, elman.with_cell(cell, layers))
        }))
    {
        for &form in &forms {
            if let Some((step, check)) = stack(gpu, &kernels, c, config, form)? {
                let name = format!("{name}, {}", form.name());
                stacks.push((name, config.cell, form, step, check));
            }
        }
    }
    let mut variants = Vec::new();
    for (i, (name, cell, form, step, check)) in stacks.iter().enumerate() {
        let layers = if i < forms.len() { 1 } else { layers };
        variants.push(Variant {
            name: name.clone(),
            form: *form,
            flops: flops(c, *cell, layers),
            step,
            check: *check,
        });
    }
    time(gpu, c, &variants, warmup, steps)
}

/// Runs the variants in turn, `warmup` untimed rounds then `steps` timed ones.
fn time(
    gpu: &Gpu,
    c: &BenchConfig,
    variants: &[Variant<'_>],
    warmup: usize,
    steps: usize,
) -> Result<Vec<CellBenchRow>> {
    let run = |v: &Variant<'_>| -> Result<(f64, u64, bool)> {
        let before = gpu.meter.read().dispatches;
        let t0 = Instant::now();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            v.step.record(&mut pass);
        }
        gpu.submit(encoder);
        gpu.wait("a benchmark step")?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let failed = pollster::block_on(v.step.barrier_failed(gpu))?;
        Ok((ms, gpu.meter.read().dispatches - before, failed))
    };
    let mut times = vec![Vec::with_capacity(steps); variants.len()];
    let mut dispatches = vec![0; variants.len()];
    let mut fallbacks = vec![0; variants.len()];
    for round in 0..warmup + steps {
        for (i, v) in variants.iter().enumerate() {
            let (ms, d, failed) = run(v)?;
            dispatches[i] = d;
            fallbacks[i] += failed as usize;
            if round >= warmup && !failed {
                times[i].push(ms);
            }
        }
    }
    let medians: Vec<f64> = (times.iter_mut())
        .map(|t| if t.is_empty() { f64::NAN } else { median(t) })
        .collect();
    // The Elman steps come first, one per form.
    let elman = |form: Form| {
        let i = variants.iter().position(|v| v.form == form);
        i.map_or(f64::NAN, |i| medians[i])
    };
    Ok(variants
        .iter()
        .enumerate()
        .map(|(i, v)| CellBenchRow {
            config: *c,
            variant: match v.step.running() {
                r if r != v.form.recurrence => format!("{} (ran {})", v.name, r.name()),
                _ => v.name.clone(),
            },
            timed_steps: times[i].len(),
            median_ms: medians[i],
            min_ms: times[i].iter().copied().fold(f64::INFINITY, f64::min),
            ratio_to_elman: medians[i] / elman(v.form),
            gflops: v.flops / (medians[i] * 1e-3) * 1e-9,
            dispatches_per_step: dispatches[i],
            check_max_rel_error: v.check,
            fallbacks: fallbacks[i],
        })
        .collect())
}

/// The rows as a table.
pub fn cell_table(rows: &[CellBenchRow]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<44} {:>5} {:>10} {:>10} {:>9} {:>8} {:>7} {:>10} {:>9}",
        "H,B,T (I=O)",
        "variant",
        "steps",
        "median ms",
        "min ms",
        "× elman",
        "GFLOP/s",
        "disp.",
        "check err",
        "fallbacks"
    );
    for r in rows {
        let c = r.config;
        let _ = writeln!(
            s,
            "{:<16} {:<44} {:>5} {:>10.3} {:>10.3} {:>9.2} {:>8.2} {:>7} {:>10.1e} {:>9}",
            format!("{},{},{} ({})", c.hidden, c.batch, c.steps, c.vocab),
            r.variant,
            r.timed_steps,
            r.median_ms,
            r.min_ms,
            r.ratio_to_elman,
            r.gflops,
            r.dispatches_per_step,
            r.check_max_rel_error,
            r.fallbacks
        );
    }
    s
}
