//! How the tuner ([`crate::tune`]) judges its candidates: each checked on a small case against
//! the CPU reference and, bit for bit, against the default variant (a variant that computes other
//! bits on this adapter is left out, so a tuned choice never changes a run's results), then
//! built at the target's shape and timed, interleaved with the others, within the quick
//! tuning's budget. A candidate that fails any of this is left out with a warning; only the
//! default's own failure (which the run would meet anyway) is an error.

use crate::case::{Case, RandomCase};
use crate::check::Reference;
use crate::error::Result;
use crate::gpu::{Gpu, GpuStack, Kernels, ModelStep, Recurrence, Tiles, Variant};
use crate::median::median;
use crate::model::ModelConfig;
use crate::tune_cache::Timing;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What to tune: a model's training step of (B, T) on an adapter, with the ordering asked for.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The model.
    pub config: ModelConfig,
    /// (B, T).
    pub shape: (usize, usize),
    /// `--recurrence`, if given: every candidate has it.
    pub recurrence: Option<Recurrence>,
}

/// The fit check's arguments for a variant.
pub(crate) fn fit(v: &Variant) -> (Option<Recurrence>, Option<Tiles>, Option<bool>) {
    (Some(v.recurrence), v.tiles, Some(v.subgroups))
}

/// The GPU memory the steps timed together may hold: past it, the candidates are timed in groups.
const GROUP_BYTES: u64 = 1 << 30;

/// The most batch rows a candidate is checked on (the reference's cost grows with them).
const MOST_CHECK_ROWS: usize = 32;

/// One small case: its CPU reference, and the default variant's results on it.
struct Small {
    case: Case,
    reference: Reference,
    /// The default's results, as bits, and its comparison with the reference.
    base: (Vec<u32>, Vec<crate::compare::Comparison>),
}

/// What every candidate of a tuning is checked and timed on: small cases (T capped at 4, a
/// variant's code being the same at every T; B of at least twice a candidate's row block, up to
/// [`MOST_CHECK_ROWS`]), made as candidates need them, and a batch of the target's shape.
pub(crate) struct Trial<'a> {
    pub(crate) gpu: &'a Gpu,
    pub(crate) kernels: &'a Kernels,
    pub(crate) target: &'a Target,
    base: Variant,
    smalls: RefCell<Vec<(usize, Rc<Small>)>>,
    full: Case,
}

fn random(batch: usize, steps: usize, seed: u64, random_state: bool) -> RandomCase {
    RandomCase {
        batch,
        steps,
        seed,
        init_scale: None,
        random_state,
    }
}

impl<'a> Trial<'a> {
    pub(crate) fn new(
        gpu: &'a Gpu,
        kernels: &'a Kernels,
        target: &'a Target,
        base: Variant,
    ) -> Result<Self> {
        let (batch, steps) = target.shape;
        let full = Case::random(target.config, random(batch, steps, 3, false))?;
        Ok(Self {
            gpu,
            kernels,
            target,
            base,
            smalls: RefCell::new(Vec::new()),
            full,
        })
    }

    /// The batch rows a candidate is checked on: enough for two of its row blocks (8 with the
    /// tiles chosen), up to [`MOST_CHECK_ROWS`] and B.
    fn check_rows(&self, v: &Variant) -> usize {
        let want = v.tiles.map_or(8, |t| (2 * t.row_block).max(8));
        want.min(MOST_CHECK_ROWS).min(self.target.shape.0)
    }

    /// One run of `v` on a small case.
    fn run_small(&self, v: &Variant, case: &Case) -> Result<crate::model::StepOutput<f32>> {
        let (b, config) = (&case.batch, self.target.config);
        let shape = (b.batch, b.steps);
        let step = ModelStep::new(self.gpu, self.kernels, config, shape, v.options())?;
        step.run_and_read(self.gpu, &case.params.cast(), b)
    }

    /// The small case of `rows` batch rows, made (with its reference and the default's results)
    /// the first time it is asked for.
    fn small(&self, rows: usize) -> Result<Rc<Small>> {
        if let Some((_, s)) = self.smalls.borrow().iter().find(|(r, _)| *r == rows) {
            return Ok(s.clone());
        }
        let steps = self.target.shape.1.min(4);
        let case = Case::random(self.target.config, random(rows, steps, 1, true))?;
        let reference = Reference::new(&case.params, &case.batch);
        let out = self.run_small(&self.base, &case)?;
        let base = (out.bits(), reference.compare(&out));
        let small = Rc::new(Small {
            case,
            reference,
            base,
        });
        self.smalls.borrow_mut().push((rows, small.clone()));
        Ok(small)
    }

    /// The variant's largest relative error against the CPU reference; None, and a warning,
    /// where it cannot run, disagrees with the reference, or computes other bits than the default.
    pub(crate) fn check(&self, v: &Variant, warnings: &mut Vec<String>) -> Result<Option<f64>> {
        let small = self.small(self.check_rows(v))?;
        let (bits, rows) = if *v == self.base {
            small.base.clone()
        } else {
            match self.run_small(v, &small.case) {
                Ok(out) => (out.bits(), small.reference.compare(&out)),
                Err(e) => {
                    warnings.push(format!("variant {} left out: {e}", v.name()));
                    return Ok(None);
                }
            }
        };
        if rows.iter().any(|r| !r.pass()) {
            let table = crate::compare::table("it disagrees with the CPU reference", &rows);
            warnings.push(format!("variant {} left out: {table}", v.name()));
            return Ok(None);
        }
        if bits != small.base.0 {
            let why = "it computes other bits than the default here (within the tolerance)";
            warnings.push(format!("variant {} left out: {why}", v.name()));
            return Ok(None);
        }
        Ok(Some(rows.iter().map(|r| r.relative()).fold(0.0, f64::max)))
    }

    /// The variant's step at the target's shape, its parameters and batch written.
    fn build(&self, v: &Variant) -> Result<ModelStep> {
        let (gpu, t) = (self.gpu, self.target);
        let step = gpu.scoped("allocating a step to tune", || {
            ModelStep::new(gpu, self.kernels, t.config, t.shape, v.options())
        })??;
        step.write_params(gpu, &self.full.params.cast())?;
        step.stack.write_batch(gpu, &self.full.batch)?;
        Ok(step)
    }
}

/// Whether building a variant's step compiles a build of the recurrence not compiled yet.
fn compiles(trial: &Trial<'_>, v: &Variant) -> bool {
    let t = trial.target;
    match GpuStack::check_fits(trial.gpu, t.config, t.shape, fit(v)) {
        Ok((_, recurrence, tiling)) => {
            let cell = trial.kernels.cell(t.config.cell);
            !cell.is_built(tiling.build(recurrence))
        }
        Err(_) => true,
    }
}

/// Runs one step, submitted and waited for; returns its wall time in seconds. (A grid step
/// whose barrier failed has the device run ordered from then on.)
fn time_step(gpu: &Gpu, step: &ModelStep) -> Result<f64> {
    let t0 = Instant::now();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        step.record(&mut pass);
    }
    gpu.submit(encoder);
    gpu.wait("a tuning step")?;
    let s = t0.elapsed().as_secs_f64();
    pollster::block_on(step.barrier_failed(gpu))?;
    Ok(s)
}

/// A candidate checked and built.
struct Built {
    variant: Variant,
    step: ModelStep,
    worst: f64,
}

/// A tuning's clock: once the first candidate is built (its pipelines compiled) and has run a
/// step, the budget's deadline, where there is a budget.
struct Clock {
    started: Instant,
    first_s: f64,
    step_s: f64,
    deadline: Option<Instant>,
}

impl Clock {
    /// Whether the budget left covers one more candidate: its build (as long as the first's
    /// where it compiles a recurrence not yet compiled) and the timing of `built` + 1 candidates.
    fn admits(&self, trial: &Trial<'_>, v: &Variant, rounds: usize, built: usize) -> bool {
        let Some(deadline) = self.deadline else {
            return true;
        };
        let build = if compiles(trial, v) {
            self.first_s
        } else {
            0.0
        };
        let timing = (rounds + 1) as f64 * self.step_s * (built + 1) as f64;
        Instant::now() + Duration::from_secs_f64(build + timing) <= deadline
    }
}

/// Checks each candidate and times the ones that pass, interleaved (in groups that fit
/// [`GROUP_BYTES`]): one untimed round, then `rounds` timed ones. With a `budget`, its clock
/// starts once the first candidate (the default) is built and has run a step: a further
/// candidate is built only where [`Clock::admits`] it, and once the budget is spent no more
/// rounds are timed (the first timed round always runs; a candidate the budget admits alone is
/// not timed beyond its first step). Returns the timings (none where no candidate passed) and the
/// seconds the first candidate's check and build took.
pub(crate) fn measure(
    trial: &Trial<'_>,
    candidates: &[Variant],
    (rounds, budget): (usize, Option<Duration>),
    warnings: &mut Vec<String>,
) -> Result<(Vec<Timing>, f64)> {
    let mut clock = Clock {
        started: Instant::now(),
        first_s: 0.0,
        step_s: 0.0,
        deadline: None,
    };
    let mut out = Vec::new();
    let mut rest = candidates;
    while !rest.is_empty() {
        let first = out.is_empty();
        let group = build_group(
            trial,
            &mut rest,
            (&mut clock, first),
            (rounds, budget),
            warnings,
        )?;
        let alone = budget.is_some() && first && rest.is_empty() && group.len() == 1;
        if alone && group[0].step.recurrence() == group[0].variant.recurrence {
            // The one candidate the budget let in: nothing to time it against.
            out.push(Timing {
                variant: group[0].variant,
                median_ms: clock.step_s * 1e3,
                timed_steps: 1,
                check_max_rel_error: group[0].worst,
            });
            break;
        }
        out.extend(time_group(
            trial.gpu,
            &group,
            rounds,
            clock.deadline,
            warnings,
        )?);
    }
    Ok((out, clock.first_s))
}

/// Checks and builds the next candidates of `rest` that fit [`GROUP_BYTES`] together (and that
/// the clock admits); the first of the tuning (`first`) starts the clock. A candidate that fails
/// its check or its build is left out with a warning (the default's build failing is an error).
fn build_group(
    trial: &Trial<'_>,
    rest: &mut &[Variant],
    (clock, first): (&mut Clock, bool),
    (rounds, budget): (usize, Option<Duration>),
    warnings: &mut Vec<String>,
) -> Result<Vec<Built>> {
    let mut group: Vec<Built> = Vec::new();
    let mut bytes = 0;
    while let Some((v, tail)) = rest.split_first() {
        let each = group.first().map_or(0, |b| b.step.memory_bytes());
        if !group.is_empty() && bytes + each > GROUP_BYTES {
            break;
        }
        *rest = tail;
        if !clock.admits(trial, v, rounds, group.len()) {
            continue;
        }
        let Some(worst) = trial.check(v, warnings)? else {
            continue;
        };
        let step = match trial.build(v) {
            Ok(step) => step,
            Err(e) if *v != trial.base => {
                warnings.push(format!("variant {} left out: {e}", v.name()));
                continue;
            }
            Err(e) => return Err(e),
        };
        bytes += step.memory_bytes();
        if first && group.is_empty() {
            clock.first_s = clock.started.elapsed().as_secs_f64();
            clock.step_s = time_step(trial.gpu, &step)?;
            clock.deadline = budget.map(|b| Instant::now() + b);
        }
        group.push(Built {
            variant: *v,
            step,
            worst,
        });
    }
    Ok(group)
}

/// Times a group of built candidates, interleaved: one untimed round, then `rounds` timed ones
/// (after the first, only until `deadline`). A grid variant whose barrier failed is left out.
fn time_group(
    gpu: &Gpu,
    group: &[Built],
    rounds: usize,
    deadline: Option<Instant>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Timing>> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); group.len()];
    for round in 0..=rounds {
        if round > 1 && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        for (i, b) in group.iter().enumerate() {
            let ms = time_step(gpu, &b.step)? * 1e3;
            if round > 0 {
                times[i].push(ms);
            }
        }
    }
    let mut out = Vec::new();
    for (b, mut t) in group.iter().zip(times) {
        // A failed grid barrier makes every step on the device run ordered from then on.
        if b.step.recurrence() != b.variant.recurrence {
            let name = b.variant.name();
            warnings.push(format!(
                "variant {name} left out: its grid barrier failed here"
            ));
            continue;
        }
        out.push(Timing {
            variant: b.variant,
            timed_steps: t.len(),
            median_ms: median(&mut t),
            check_max_rel_error: b.worst,
        });
    }
    Ok(out)
}
