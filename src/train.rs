//! `unroll train`: the training loop, the same for the GPU and the CPU engine and for text and
//! series data. It reads the loss back every `log_every` steps (other steps never wait for the
//! GPU), evaluates on the whole held-out tail every `eval_every` steps (a loss read back per
//! chunk), writes the step's checkpoint and then its metrics row, and at the end draws the loss
//! curve and prints a sample. Before the first GPU step it compares one step with the CPU
//! reference at the run's model sizes.

use crate::checkpoint::{Checkpoint, FORMAT, RunInfo};
pub use crate::config::{Device, MAX_BATCH_OR_SEQ_LEN, MAX_ROWS, Task, TrainConfig};
use crate::data::{Corpus, Streams, Vocab, builtin_corpus, read_data};
use crate::engine::{CpuTrainer, Engine};
use crate::error::{Error, Result};
use crate::gpu::{AdapterChoice, Gpu, GpuStep, GpuTrainer, Recurrence, TrainerShape};
use crate::model::{Inputs, ModelConfig, Params, Targets};
use crate::plot;
use crate::rundir::{self, RunDir};
use crate::series::{self, Normalization, SeriesStreams};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// How a run is carried out (not stored in checkpoints).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where the checkpoint, metrics and plot go.
    pub out_dir: PathBuf,
    /// Write into `out_dir` even if it holds files that unroll did not write.
    pub force: bool,
    /// The most bytes the data file may hold.
    pub max_bytes: u64,
    /// Before training on the GPU, compare one step at the run's model sizes with the CPU
    /// reference, and refuse to train if they disagree.
    pub self_check: bool,
    /// GPU or CPU.
    pub device: Device,
    /// Which adapter, for the GPU.
    pub adapter: AdapterChoice,
    /// How the GPU dispatches the recurrences (`None`: chosen per shape).
    pub recurrence: Option<Recurrence>,
    /// Continue the run of this checkpoint.
    pub resume: Option<PathBuf>,
    /// No progress bar; a log line per evaluation instead.
    pub quiet: bool,
    /// Set to 1 by the first Ctrl-C / SIGTERM: finish the step, checkpoint, stop.
    pub interrupt: Option<Arc<AtomicUsize>>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// The step the run ended at.
    pub step: u64,
    /// The last reported training loss.
    pub train_loss: f32,
    /// The last validation loss.
    pub val_loss: f32,
    /// Text: the loss of the unigram distribution; series: the validation loss of repeating the
    /// last value. The baseline the model must beat.
    pub baseline_loss: f64,
    /// Mean training throughput, tokens (positions) per second.
    pub tokens_per_s: f64,
    /// The sample (text) or forecast summary (series) printed at the end.
    pub sample: String,
    /// Whether the run stopped early on an interrupt.
    pub interrupted: bool,
    /// The checkpoint written.
    pub checkpoint: PathBuf,
    /// The metrics file.
    pub metrics: PathBuf,
    /// The loss-curve plot.
    pub plot: PathBuf,
    /// The device it ran on.
    pub device: String,
}

/// The data of a run: where chunks come from, and what the checkpoint must remember to read
/// the same data the same way.
struct Data {
    config: ModelConfig,
    train: Source,
    val: Vec<(Inputs, Targets)>,
    vocab: Option<Vocab>,
    normalization: Option<Normalization>,
    baseline: f64,
}

enum Source {
    Text(Streams),
    Series(SeriesStreams),
}

impl Source {
    fn chunks_per_epoch(&self) -> usize {
        match self {
            Source::Text(s) => s.chunks_per_epoch(),
            Source::Series(s) => s.chunks_per_epoch(),
        }
    }
    fn chunk(&self, k: usize) -> (Inputs, Targets) {
        match self {
            Source::Text(s) => s.chunk(k),
            Source::Series(s) => s.chunk(k),
        }
    }
    fn positions(&self, k: usize) -> Vec<u64> {
        match self {
            Source::Text(s) => s.positions(k),
            Source::Series(s) => s.positions(k),
        }
    }
}

/// The bytes of per-position buffers (outputs, and four of H: pre, hs, dh, dA) an evaluation
/// chunk may add beyond the training step's: wider chunks mean fewer dispatches and waits to
/// score the whole held-out part.
const EVAL_CHUNK_BYTES: usize = 64 << 20;

/// Streams for the validation tail: at least B (when the tail has them) and up to 64, as many as
/// keep a chunk's buffers within [`EVAL_CHUNK_BYTES`], and no more than the tail holds.
fn val_batch(
    len: usize,
    batch: usize,
    seq_len: usize,
    outputs: usize,
    hidden: usize,
) -> Result<usize> {
    let fit = EVAL_CHUNK_BYTES / (seq_len * (outputs + 4 * hidden) * 4).max(1);
    let b = (len / (seq_len + 1)).min(batch.max(fit.min(64)));
    if b == 0 {
        return Err(Error::config(
            format!(
                "the validation data has {len} positions: too few for one chunk of {} (seq-len + 1)",
                seq_len + 1
            ),
            "raise --val-fraction, use more data, or a smaller --seq-len",
        ));
    }
    Ok(b)
}

fn load_data(
    cfg: &TrainConfig,
    max_bytes: u64,
    vocab: Option<Vocab>,
    normalization: Option<Normalization>,
) -> Result<Data> {
    match cfg.task {
        Task::Text => {
            let text = match &cfg.data {
                Some(path) => read_data(path, max_bytes)?,
                None => builtin_corpus(20_000, cfg.seed).into_bytes(),
            };
            let resumed = vocab.is_some();
            let corpus =
                Corpus::new(&text, vocab, cfg.bytes, cfg.val_fraction).map_err(|e| {
                    match (resumed, e) {
                        (true, Error::Config { problem, .. }) => Error::config(
                            format!("the data does not fit the checkpoint's vocabulary: {problem}"),
                            "resume with the data the checkpoint was trained on",
                        ),
                        (_, e) => e,
                    }
                })?;
            let streams = Streams::new(&corpus.train, cfg.batch, cfg.seq_len, "training")?;
            let vb = val_batch(
                corpus.val.len(),
                cfg.batch,
                cfg.seq_len,
                corpus.vocab.len(),
                cfg.hidden,
            )?;
            let val_streams = Streams::new(&corpus.val, vb, cfg.seq_len, "validation")?;
            let chunks = match cfg.val_chunks {
                0 => val_streams.chunks_per_epoch(),
                n => val_streams.chunks_per_epoch().min(n),
            };
            let val = (0..chunks).map(|k| val_streams.chunk(k)).collect();
            let n = corpus.vocab.len();
            Ok(Data {
                config: ModelConfig::tokens(n, cfg.hidden).with_cell(cfg.cell, cfg.layers),
                train: Source::Text(streams),
                val,
                baseline: corpus.unigram_entropy(),
                vocab: Some(corpus.vocab),
                normalization: None,
            })
        }
        Task::Series => {
            let s = series::load(cfg, normalization, max_bytes)?;
            Ok(Data {
                config: ModelConfig::dense(s.inputs, cfg.hidden, s.outputs)
                    .with_cell(cfg.cell, cfg.layers),
                baseline: s.naive_val_loss,
                train: Source::Series(s.train),
                val: s.val,
                vocab: None,
                normalization: Some(s.normalization),
            })
        }
    }
}

/// Runs training as `cfg` and `opts` say; resumes when `opts.resume` names a checkpoint.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<TrainSummary> {
    let (cfg, resumed) = resolve_config(cfg, opts)?;
    // The run directory is claimed before anything slow: a refusal comes at once.
    let run_dir = RunDir::open(&opts.out_dir, opts.force)?;
    let data = load_data(
        &cfg,
        opts.max_bytes,
        resumed.as_ref().and_then(|c| c.info.vocab.clone()),
        resumed.as_ref().and_then(|c| c.info.normalization.clone()),
    )?;
    let config = data.config;
    let (mut engine, mut step) = build_engine(&cfg, opts, &data, resumed.as_ref())?;
    let checkpoint_path = run_dir.file(rundir::CHECKPOINT);
    let metrics_path = run_dir.file(rundir::METRICS);
    let plot_path = run_dir.file(rundir::PLOT);
    let mut metrics = Metrics::open(&metrics_path, resumed.is_some(), step)?;

    let cpe = data.train.chunks_per_epoch() as u64;
    let tokens_per_step = (cfg.batch * cfg.seq_len) as f64;
    let bar = progress_bar(opts.quiet, cfg.iters, step);
    let say = |bar: &indicatif::ProgressBar, msg: String| {
        if bar.is_hidden() {
            println!("{msg}");
        } else {
            bar.println(msg);
        }
    };
    say(
        &bar,
        format!(
            "training {} ({} × {}) on {}: I={} H={} O={} B={} T={}, {} parameters, {} chunks per epoch{}",
            match cfg.task {
                Task::Text => "a character model",
                Task::Series => "a series model",
            },
            config.cell.name(),
            config.layers,
            engine.device(),
            config.input,
            config.hidden,
            config.output,
            cfg.batch,
            cfg.seq_len,
            config.num_params(),
            cpe,
            if resumed.is_some() {
                format!(", resuming at step {step}")
            } else {
                String::new()
            }
        ),
    );

    let started = Instant::now();
    let start_step = step;
    let mut last_report = (Instant::now(), step);
    let mut train_loss = f32::NAN;
    let mut val_loss = f32::NAN;
    let mut interrupted = false;
    let save = |engine: &dyn Engine, step: u64, k: usize| -> Result<()> {
        let params = engine.params()?;
        if let Some(i) = params.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                step,
                what: "a parameter",
                value: params.data[i],
            });
        }
        Checkpoint {
            params,
            info: RunInfo {
                format: FORMAT,
                config,
                vocab: data.vocab.clone(),
                normalization: data.normalization.clone(),
                train: Some(cfg.clone()),
                step,
            },
            optimizer: Some(engine.optimizer_state()?),
            hidden: Some(engine.hidden()?),
            positions: Some(data.train.positions(k)),
        }
        .save(&checkpoint_path)
    };

    while step < cfg.iters {
        let k = (step % cpe) as usize;
        let (x, y) = data.train.chunk(k);
        step += 1;
        let last = step == cfg.iters;
        let eval = step.is_multiple_of(cfg.eval_every) || last;
        // An evaluated step reports its training loss too, so its metrics row has both.
        let report = step.is_multiple_of(cfg.log_every) || eval;
        let stats = engine.train_step(&x, &y, k == 0, report)?;
        let mut row = None;
        if let Some(s) = stats.filter(|_| report) {
            check_finite(step, &s)?;
            train_loss = s.loss;
            let (t0, s0) = last_report;
            let tokens_per_s = (step - s0) as f64 * tokens_per_step / t0.elapsed().as_secs_f64();
            last_report = (Instant::now(), step);
            row = Some(tokens_per_s);
        }
        if eval {
            val_loss = engine.evaluate(&data.val)?;
            if !val_loss.is_finite() {
                return Err(Error::Diverged {
                    step,
                    what: "the validation loss",
                    value: val_loss,
                });
            }
        }
        // The step's checkpoint comes before its metrics row: a row promises that the checkpoint
        // of its step, when one was due, is on disk.
        if cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every) && !last {
            save(engine.as_ref(), step, (step % cpe) as usize)?;
        }
        if let Some(tokens_per_s) = row {
            if bar.is_hidden() && eval {
                say(
                    &bar,
                    format!(
                        "step {step}: loss {train_loss:.4}, val {val_loss:.4}, {tokens_per_s:.0} tokens/s"
                    ),
                );
            }
            metrics.write(
                step,
                train_loss,
                eval.then_some(val_loss),
                tokens_per_s,
                started.elapsed().as_secs_f64(),
            )?;
            bar.set_message(format!(
                "loss {train_loss:.4} val {val_loss:.4} {tokens_per_s:.0} tok/s"
            ));
        }
        bar.set_position(step);
        if opts
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst) > 0)
        {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    if val_loss.is_nan() && !interrupted {
        // A resumed run that was already complete took no step: report where it stands.
        val_loss = engine.evaluate(&data.val)?;
    }
    save(engine.as_ref(), step, (step % cpe) as usize)?;
    if interrupted {
        say(
            &bar,
            format!(
                "interrupted at step {step}; checkpoint written to {}\nresume with: unroll train --resume {}",
                checkpoint_path.display(),
                checkpoint_path.display()
            ),
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mean_tokens_per_s = (step - start_step) as f64 * tokens_per_step / elapsed.max(1e-9);
    metrics.plot(&plot_path, cfg.task)?;

    let params = engine.params()?;
    let sample = match (&data.vocab, cfg.task) {
        (Some(vocab), Task::Text) if cfg.sample_len > 0 => {
            let prime = vocab.token('\n').unwrap_or(0);
            let tokens = crate::sample::sample(&params, &[prime], cfg.sample_len, 0.8, cfg.seed)?;
            vocab.decode(&tokens)
        }
        _ => String::new(),
    };
    Ok(TrainSummary {
        step,
        train_loss,
        val_loss,
        baseline_loss: data.baseline,
        tokens_per_s: mean_tokens_per_s,
        sample,
        interrupted,
        checkpoint: checkpoint_path,
        metrics: metrics_path,
        plot: plot_path,
        device: engine.device(),
    })
}

/// The configuration of a run: `cfg` for a new one; a resumed one keeps its checkpoint's, with
/// only the step count (raised) and the data path (when given) taken from `cfg`.
fn resolve_config(
    cfg: &TrainConfig,
    opts: &RunOptions,
) -> Result<(TrainConfig, Option<Checkpoint>)> {
    let Some(path) = &opts.resume else {
        cfg.validate()?;
        return Ok((cfg.clone(), None));
    };
    let ck = Checkpoint::load(path)?;
    let mut saved = ck.info.train.clone().ok_or_else(|| {
        Error::file(
            path,
            "holds a model but no training state; it cannot be resumed (train from scratch)",
        )
    })?;
    saved.iters = cfg.iters.max(saved.iters);
    if cfg.data.is_some() {
        saved.data = cfg.data.clone();
    }
    saved.validate()?;
    Ok((saved, Some(ck)))
}

/// The engine of a run, on the GPU (its adapter's limits checked and, unless turned off, one step
/// compared with the CPU reference before anything of the model's size is allocated) or on the
/// CPU; with a resumed run's parameters, optimizer and carried state. Returns it and the step
/// it stands at.
fn build_engine(
    cfg: &TrainConfig,
    opts: &RunOptions,
    data: &Data,
    resumed: Option<&Checkpoint>,
) -> Result<(Box<dyn Engine>, u64)> {
    let config = data.config;
    let params = match resumed {
        Some(ck) if ck.params.config != config => {
            return Err(Error::config(
                format!(
                    "the checkpoint's model {:?} does not fit the data's {:?}",
                    ck.params.config, config
                ),
                "resume with the data the checkpoint was trained on",
            ));
        }
        Some(ck) => ck.params.clone(),
        None => Params::init(config, cfg.seed),
    };
    let mut engine: Box<dyn Engine> = match opts.device {
        Device::Gpu => {
            let gpu = Gpu::new(&opts.adapter)?;
            if config.is_elman() {
                GpuStep::check_fits(&gpu, &config, cfg.batch, cfg.seq_len)?;
            }
            let recurrence = match opts.recurrence {
                None if config.is_elman() => Some(Recurrence::auto(
                    gpu.info.device_type,
                    cfg.batch,
                    config.hidden,
                )),
                r => r,
            };
            if opts.self_check {
                self_check(&gpu, config, recurrence, cfg.seed)?;
            }
            let val_b = match data.val.first() {
                Some((Inputs::Tokens(x), _)) => x.len() / cfg.seq_len,
                Some((Inputs::Dense(x), _)) => x.len() / cfg.seq_len / config.input,
                None => 0,
            };
            let shape = TrainerShape {
                eval_batch: Some(val_b),
                recurrence,
                dropout: cfg.dropout(),
                ..TrainerShape::new(cfg.batch, cfg.seq_len)
            };
            Box::new(GpuTrainer::new(gpu, config, shape, cfg.optim, &params)?)
        }
        Device::Cpu => Box::new(
            CpuTrainer::new(params, cfg.batch, cfg.seq_len, cfg.optim)?.with_dropout(cfg.dropout()),
        ),
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

/// A progress bar over the run's steps, or a hidden one (`--quiet`: log lines instead).
fn progress_bar(quiet: bool, iters: u64, step: u64) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(iters).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_position(step);
    bar
}

/// One step at the run's model sizes (B and T capped at 4 and 8) on the GPU and on the CPU
/// reference, compared as `unroll check` compares them; a mismatch is an error with the table.
fn self_check(
    gpu: &Gpu,
    config: ModelConfig,
    recurrence: Option<Recurrence>,
    seed: u64,
) -> Result<()> {
    let (b, t) = (4, 8);
    let case = crate::case::Case {
        params: Params::init(config, seed).cast(),
        batch: crate::model::Batch::random(&config, b, t, true, seed + 1),
        expected: vec![],
        expected_f32: vec![],
    };
    let report = crate::check::check(Some(gpu), &case, recurrence, None)?;
    if report.pass() {
        return Ok(());
    }
    Err(Error::config(
        format!(
            "the GPU's training step does not match the CPU reference at this model's sizes, so \
             training on it would be wrong:\n{}",
            report.render()
        ),
        format!(
            "train with --device cpu, and please report this with the table above (`unroll check \
             --kind {} --input {} --hidden {} --output {} --cell {} --layers {} --batch {b} \
             --steps {t} --random-h0{}` reproduces it); --no-self-check skips this check",
            config.kind,
            config.input,
            config.hidden,
            config.output,
            config.cell.name(),
            config.layers,
            match recurrence {
                Some(Recurrence::PerStep) => " --recurrence per-step",
                Some(Recurrence::Persistent) => " --recurrence persistent",
                None => "",
            }
        ),
    ))
}

/// A diverged step's loss or gradient norm is an error that names it.
fn check_finite(step: u64, s: &crate::gpu::StepStats) -> Result<()> {
    for (what, value) in [("the loss", s.loss), ("the gradient norm", s.grad_norm)] {
        if !value.is_finite() {
            return Err(Error::Diverged { step, what, value });
        }
    }
    Ok(())
}

/// The metrics file: one CSV row per reported step.
struct Metrics {
    file: std::fs::File,
    path: PathBuf,
    rows: Vec<(u64, f32, Option<f32>)>,
}

impl Metrics {
    /// Opens `metrics.csv`; on resume keeps its rows up to `step` and appends after them.
    fn open(path: &Path, resume: bool, step: u64) -> Result<Self> {
        let err = |e: std::io::Error| Error::file(path, format!("cannot write metrics: {e}"));
        let mut rows = Vec::new();
        let mut kept = format!("{}\n", rundir::METRICS_HEADER);
        if resume && let Ok(old) = std::fs::read_to_string(path) {
            for line in old.lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                if let (Some(Ok(s)), Some(Ok(l))) = (
                    f.first().map(|v| v.parse::<u64>()),
                    f.get(1).map(|v| v.parse::<f32>()),
                ) && s <= step
                {
                    rows.push((s, l, f.get(2).and_then(|v| v.parse::<f32>().ok())));
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        std::fs::write(path, kept).map_err(err)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            rows,
        })
    }

    fn write(
        &mut self,
        step: u64,
        train: f32,
        val: Option<f32>,
        tokens_per_s: f64,
        elapsed: f64,
    ) -> Result<()> {
        let val_s = val.map(|v| v.to_string()).unwrap_or_default();
        writeln!(
            self.file,
            "{step},{train},{val_s},{tokens_per_s:.1},{elapsed:.3}"
        )
        .map_err(|e| Error::file(&self.path, format!("cannot write metrics: {e}")))?;
        self.rows.push((step, train, val));
        Ok(())
    }

    fn plot(&self, path: &Path, task: Task) -> Result<()> {
        let train: Vec<(f64, f64)> = self
            .rows
            .iter()
            .map(|&(s, l, _)| (s as f64, l as f64))
            .collect();
        let val: Vec<(f64, f64)> = self
            .rows
            .iter()
            .filter_map(|&(s, _, v)| v.map(|v| (s as f64, v as f64)))
            .collect();
        let y = match task {
            Task::Text => "cross-entropy (nats per character)",
            Task::Series => "mean squared error / 2 (normalised)",
        };
        plot::lines(
            path,
            rundir::PLOT_TITLE,
            "step",
            y,
            &[
                plot::Line {
                    label: "train",
                    points: train,
                },
                plot::Line {
                    label: "validation",
                    points: val,
                },
            ],
        )
    }
}
