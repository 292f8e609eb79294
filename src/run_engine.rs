//! The engine of a training run: sizes checked on the GPU and on the host before anything of the
//! model's size is allocated, the self-check against the CPU reference, then the GPU trainer or
//! the CPU one, with a resumed run's state.

use crate::cell::Cell;
use crate::checkpoint::Checkpoint;
use crate::config::{Device, TrainConfig};
use crate::data_parallel::DataParallel;
use crate::dataset::Validation;
use crate::engine::{CpuTrainer, Engine};
use crate::error::{Error, Result};
use crate::footprint::{self, Work};
use crate::gpu::{AdapterChoice, Gpu, GpuTrainer, Recurrence, StepOptions, TrainerShape, Variant};
use crate::model::{InputKind, ModelConfig, Params};
use crate::run_input::Data;
use crate::run_options::RunOptions;
use crate::shares::Shares;
use crate::tune::{Target, TuneMode};

/// The engine of a run, on the GPU (its adapter's limits checked and, unless turned off, one step
/// compared with the CPU reference before anything of the model's size is allocated) or on the
/// CPU; with a resumed run's parameters, optimizer and carried state. Returns it and the step
/// it stands at.
pub(crate) fn build_engine(
    cfg: &TrainConfig,
    opts: &RunOptions,
    data: &Data,
    resumed: Option<&Checkpoint>,
) -> Result<(Box<dyn Engine>, u64)> {
    let config = data.config;
    if let Some(ck) = resumed
        && ck.params.config != config
    {
        return Err(Error::config(
            format!(
                "the checkpoint's model ({}) does not fit the data's ({config})",
                ck.params.config
            ),
            "resume with the data the checkpoint was trained on",
        ));
    }
    // The parameters are made (or copied) only once the sizes are known to fit.
    let params = &|| match resumed {
        Some(ck) => ck.params.clone(),
        None => Params::init(config, cfg.seed),
    };
    let (batch, steps) = (cfg.batch, data.steps);
    let val_b = data.val.stream_batch(steps, config.input);
    let ranks = match &opts.job {
        Some(job) => job.size(),
        None => opts.devices.len().max(1),
    };
    let shares = Shares::new(batch, ranks, opts.accumulate.max(1))?;
    if matches!(data.val, Validation::Sequences(_)) && !shares.is_whole() {
        return Err(Error::config(
            "whole sequences train on one device, in one batch",
            "leave --devices, --accumulate and mpirun out of a classification run",
        ));
    }
    let mut engine: Box<dyn Engine> = if shares.is_whole() {
        let one = match opts.devices.as_slice() {
            [i] => &RunOptions {
                adapter: AdapterChoice {
                    index: Some(*i),
                    ..opts.adapter.clone()
                },
                ..opts.clone()
            },
            _ => opts,
        };
        build_one(cfg, one, config, (batch, steps, val_b), &params)?
    } else {
        Box::new(build_parallel(
            cfg,
            opts,
            config,
            shares,
            (steps, val_b),
            &params,
        )?)
    };
    let Some(ck) = resumed else {
        return Ok((engine, 0));
    };
    if let Some(o) = &ck.optimizer {
        engine.set_optimizer_state(o)?;
    }
    if let Some(h) = &ck.hidden {
        engine.set_hidden(h)?;
    }
    Ok((engine, ck.info.step))
}

/// The engine of a run on one device, for the whole batch.
fn build_one(
    cfg: &TrainConfig,
    opts: &RunOptions,
    config: ModelConfig,
    (batch, steps, val_b): (usize, usize, usize),
    params: &dyn Fn() -> Params<f32>,
) -> Result<Box<dyn Engine>> {
    Ok(match opts.device {
        Device::Gpu => {
            let gpu = Gpu::new(&opts.adapter)?;
            let recurrence = opts.recurrence;
            let mut shape = TrainerShape {
                eval_batch: (val_b > 0).then_some(val_b),
                recurrence,
                dropout: cfg.dropout(),
                ..TrainerShape::new(batch, steps)
            };
            GpuTrainer::check_fits(&gpu, config, &shape)?;
            let self_check = opts.self_check;
            let work = Work::TrainGpu {
                batch,
                steps,
                self_check,
            };
            footprint::check_host(&config, &[work])?;
            shape.variant = tuned(&gpu, config, &shape, opts)?;
            if self_check {
                run_self_check(&gpu, config, (recurrence, shape.variant), cfg.seed)?;
            }
            Box::new(GpuTrainer::new(gpu, config, shape, cfg.optim, &params())?)
        }
        Device::Cpu => {
            let work = Work::TrainCpu {
                batch,
                steps,
                eval_batch: val_b,
            };
            footprint::check_host(&config, &[work])?;
            let engine = CpuTrainer::new(params(), batch, steps, cfg.optim)?;
            Box::new(engine.with_dropout(cfg.dropout()))
        }
    })
}

/// The engine of a data-parallel run: an engine per local rank (each device opened, checked and
/// built one at a time), each carrying its K micro-batches.
fn build_parallel(
    cfg: &TrainConfig,
    opts: &RunOptions,
    config: ModelConfig,
    shares: Shares,
    (steps, val_b): (usize, usize),
    params: &dyn Fn() -> Params<f32>,
) -> Result<DataParallel> {
    let (micro, k) = (shares.micro(), shares.accumulate);
    // Each local rank's two gradient buffers and, over MPI, the reduction's three (each P values
    // and the step's trailer), held beside the engines.
    let values = (config.num_params() + shares.ranks + 2) as u64;
    let buffers = 2 * opts.devices.len().max(1) as u64 + 3 * opts.job.is_some() as u64;
    footprint::check_bytes(
        "the data-parallel exchange's buffers",
        buffers * values * 4,
        "lower the model's sizes, or train on fewer devices in this process",
    )?;
    let choices: Vec<(AdapterChoice, usize)> = match (&opts.job, opts.devices.as_slice()) {
        (Some(job), _) => vec![(rank_adapter(&opts.adapter, job.local_rank()), job.rank())],
        (None, []) => vec![(opts.adapter.clone(), 0)],
        (None, list) => list
            .iter()
            .enumerate()
            .map(|(r, &i)| {
                (
                    AdapterChoice {
                        index: Some(i),
                        ..opts.adapter.clone()
                    },
                    r,
                )
            })
            .collect(),
    };
    let mut locals: Vec<Box<dyn Engine + Send>> = Vec::new();
    for (choice, rank) in choices {
        // The validation runs on rank 0 alone.
        let eval = (rank == 0).then_some(val_b);
        locals.push(match opts.device {
            Device::Gpu => {
                let gpu = Gpu::new(&choice)?;
                let mut shape = TrainerShape {
                    eval_batch: eval,
                    recurrence: opts.recurrence,
                    dropout: cfg.dropout(),
                    ..TrainerShape::new(micro, steps)
                };
                GpuTrainer::check_fits(&gpu, config, &shape)?;
                let self_check = opts.self_check;
                let work = Work::TrainGpu {
                    batch: micro * k,
                    steps,
                    self_check,
                };
                footprint::check_host(&config, &[work])?;
                shape.variant = tuned(&gpu, config, &shape, opts)?;
                if self_check {
                    let asked = (opts.recurrence, shape.variant);
                    run_self_check(&gpu, config, asked, cfg.seed)?;
                }
                let trainer = GpuTrainer::new(gpu, config, shape, cfg.optim, &params())?;
                Box::new(trainer.with_slots(k)?)
            }
            Device::Cpu => {
                let work = Work::TrainCpu {
                    batch: micro * k,
                    steps,
                    eval_batch: eval.unwrap_or(0),
                };
                footprint::check_host(&config, &[work])?;
                let engine = CpuTrainer::new(params(), micro, steps, cfg.optim)?;
                Box::new(engine.with_slots(k).with_dropout(cfg.dropout()))
            }
        });
    }
    Ok(DataParallel::new(config, shares, locals, opts.job.clone())?
        .with_interrupt(opts.interrupt.clone()))
}

/// The adapter of an MPI rank: the one the flags or the environment name, else the one of its
/// local rank among the adapters of wgpu's preferred backend.
fn rank_adapter(choice: &AdapterChoice, local_rank: usize) -> AdapterChoice {
    if choice.names_one() {
        return choice.clone();
    }
    AdapterChoice {
        local_rank: Some(local_rank),
        ..choice.clone()
    }
}

/// The variant of the run's training step, as its tuning says: the one given, None with `off`
/// (chosen per shape and adapter), else the cached choice or a new tuning (stored in the cache
/// directory). Its warnings go to stderr, and (unless quiet) a line saying what was chosen.
fn tuned(
    gpu: &Gpu,
    config: ModelConfig,
    shape: &TrainerShape,
    opts: &RunOptions,
) -> Result<Option<Variant>> {
    if let Some(v) = opts.tune.fixed {
        return Ok(Some(v));
    }
    if opts.tune.mode == TuneMode::Off {
        return Ok(None);
    }
    let target = Target {
        config,
        shape: (shape.batch, shape.steps),
        recurrence: shape.recurrence,
    };
    let cache = opts.tune.cache.as_deref();
    let tuned = crate::tune::tune(gpu, &target, opts.tune.mode, cache)?;
    for w in &tuned.warnings {
        eprintln!("warning: {w}");
    }
    if !opts.quiet && opts.is_leader() {
        eprintln!("{}", tuned.summary());
    }
    Ok(Some(tuned.variant))
}

/// One step at the run's model sizes (B = 4, T = 8) on the GPU, run as the run's variant (its
/// tiles chosen for that shape), and on the CPU reference, on the case `unroll check` generates
/// from the run's seed, compared as it compares them; a mismatch is an error with the table and
/// the command that reproduces it.
fn run_self_check(
    gpu: &Gpu,
    config: ModelConfig,
    (recurrence, variant): (Option<Recurrence>, Option<Variant>),
    seed: u64,
) -> Result<()> {
    let (batch, steps) = (4, 8);
    let settings = crate::case::RandomCase {
        batch,
        steps,
        seed,
        init_scale: None,
        random_state: true,
    };
    let case = crate::case::Case::random(config, settings)?;
    // The run's variant, its tiles chosen for the check's shape.
    let options = match variant {
        Some(v) => StepOptions {
            tiles: None,
            ..v.options()
        },
        None => StepOptions {
            recurrence,
            ..Default::default()
        },
    };
    let check = crate::check::check_with(Some(gpu), &case, options, None);
    let report = pollster::block_on(check)?;
    if report.pass() {
        return Ok(());
    }
    let cell = match config.cell {
        Cell::RnnRelu => "rnn --nonlinearity relu",
        cell => cell.name(),
    };
    let output = match config.kind {
        InputKind::Dense => format!(" --output {}", config.output),
        InputKind::Tokens => String::new(),
    };
    let recurrence = recurrence
        .map(|r| format!(" --recurrence {}", r.name()))
        .unwrap_or_default();
    let variant = variant.map_or(String::new(), |v| {
        format!(" (the run's variant: {})", v.name())
    });
    Err(Error::config(
        format!(
            "the GPU's training step does not match the CPU reference at this model's sizes, so \
             training on it would be wrong:\n{}",
            report.render()
        ),
        format!(
            "train with --device cpu, and please report this with the table above (`unroll check \
             --kind {} --input {} --hidden {}{output} --cell {cell} --layers {} --batch {batch} \
             --steps {steps} --random-h0 --seed {seed}{recurrence}` reproduces it{variant}); \
             --no-self-check skips this check",
            config.kind, config.input, config.hidden, config.layers,
        ),
    ))
}
