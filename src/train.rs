//! `unroll train`: the training loop, the same for the GPU and the CPU engine and for text and
//! series data. It reads the loss back every `log_every` steps (other steps never wait for the
//! GPU), evaluates on the whole held-out tail every `eval_every` steps (a loss read back per
//! chunk), writes the step's checkpoint and then its metrics row, and at the end draws the loss
//! curve and prints a sample. Before the first GPU step it compares one step with the CPU
//! reference at the run's model sizes.

use crate::checkpoint::{Checkpoint, FORMAT, RunInfo};
pub use crate::config::{Device, MAX_BATCH_OR_SEQ_LEN, MAX_ROWS, Task, TrainConfig};
use crate::engine::{CpuTrainer, Engine};
use crate::error::{Error, Result};
use crate::gpu::{AdapterChoice, Gpu, GpuStep, GpuTrainer, Recurrence, TrainerShape};
use crate::metrics::Metrics;
use crate::model::{Inputs, ModelConfig, Params};
use crate::run_data::{Data, load_data};
use crate::rundir::{self, RunDir};
use std::path::PathBuf;
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

/// Runs training as `cfg` and `opts` say; resumes when `opts.resume` names a checkpoint.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<TrainSummary> {
    let mut run = Run::start(cfg, opts)?;
    let mut interrupted = false;
    while run.step < run.cfg.iters {
        run.train_step()?;
        if opts
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst) > 0)
        {
            interrupted = true;
            break;
        }
    }
    run.finish(interrupted)
}

/// A run in progress: its data, its engine, the files it writes and what it has measured.
struct Run {
    cfg: TrainConfig,
    data: Data,
    engine: Box<dyn Engine>,
    /// Holds the run directory's lock until the run ends.
    _dir: RunDir,
    checkpoint: PathBuf,
    plot: PathBuf,
    metrics: Metrics,
    bar: indicatif::ProgressBar,
    /// Steps taken (the run's, resumed ones included).
    step: u64,
    start_step: u64,
    started: Instant,
    /// When and at which step the loss was last reported (for tokens/s).
    last_report: (Instant, u64),
    train_loss: f32,
    val_loss: f32,
}

impl Run {
    /// Claims the run directory, loads the data, builds the engine (resuming where asked) and
    /// says what is trained where.
    fn start(cfg: &TrainConfig, opts: &RunOptions) -> Result<Self> {
        let (cfg, resumed) = resolve_config(cfg, opts)?;
        // The run directory is claimed before anything slow: a refusal comes at once.
        let dir = RunDir::open(&opts.out_dir, opts.force)?;
        let data = load_data(
            &cfg,
            opts.max_bytes,
            resumed.as_ref().and_then(|c| c.info.vocab.clone()),
            resumed.as_ref().and_then(|c| c.info.normalization.clone()),
        )?;
        let (engine, step) = build_engine(&cfg, opts, &data, resumed.as_ref())?;
        let metrics = Metrics::open(&dir.file(rundir::METRICS), resumed.is_some(), step)?;
        let run = Self {
            bar: progress_bar(opts.quiet, cfg.iters, step),
            checkpoint: dir.file(rundir::CHECKPOINT),
            plot: dir.file(rundir::PLOT),
            _dir: dir,
            cfg,
            data,
            engine,
            metrics,
            step,
            start_step: step,
            started: Instant::now(),
            last_report: (Instant::now(), step),
            train_loss: f32::NAN,
            val_loss: f32::NAN,
        };
        run.say(run.describe(resumed.is_some()));
        Ok(run)
    }

    /// A line for the user: above the progress bar, or on its own with `--quiet`.
    fn say(&self, msg: String) {
        if self.bar.is_hidden() {
            println!("{msg}");
        } else {
            self.bar.println(msg);
        }
    }

    /// What is trained, on what, with which shapes.
    fn describe(&self, resumed: bool) -> String {
        let (c, cfg) = (self.data.config, &self.cfg);
        format!(
            "training {} ({} × {}) on {}: I={} H={} O={} B={} T={}, {} parameters, {} chunks per epoch{}",
            match cfg.task {
                Task::Text => "a character model",
                Task::Series => "a series model",
            },
            c.cell.name(),
            c.layers,
            self.engine.device(),
            c.input,
            c.hidden,
            c.output,
            cfg.batch,
            cfg.seq_len,
            c.num_params(),
            self.data.train.chunks_per_epoch(),
            if resumed {
                format!(", resuming at step {}", self.step)
            } else {
                String::new()
            }
        )
    }

    /// Writes the checkpoint of the current step (refusing weights that are not finite).
    fn save(&self) -> Result<()> {
        let (engine, step) = (self.engine.as_ref(), self.step);
        let params = engine.params()?;
        if let Some(i) = params.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                step,
                what: "a parameter",
                value: params.data[i],
            });
        }
        let cpe = self.data.train.chunks_per_epoch() as u64;
        Checkpoint {
            params,
            info: RunInfo {
                format: FORMAT,
                config: self.data.config,
                vocab: self.data.vocab.clone(),
                normalization: self.data.normalization.clone(),
                train: Some(self.cfg.clone()),
                step,
            },
            optimizer: Some(engine.optimizer_state()?),
            hidden: Some(engine.hidden()?),
            positions: Some(self.data.train.positions((step % cpe) as usize)),
        }
        .save(&self.checkpoint)
    }

    /// One training step on the next chunk; reports, evaluates, checkpoints and writes its
    /// metrics row as the configuration asks.
    fn train_step(&mut self) -> Result<()> {
        let cpe = self.data.train.chunks_per_epoch() as u64;
        let k = (self.step % cpe) as usize;
        let (x, y) = self.data.train.chunk(k);
        self.step += 1;
        let (step, cfg) = (self.step, &self.cfg);
        let last = step == cfg.iters;
        let eval = step.is_multiple_of(cfg.eval_every) || last;
        // An evaluated step reports its training loss too, so its metrics row has both.
        let report = step.is_multiple_of(cfg.log_every) || eval;
        let stats = self.engine.train_step(&x, &y, k == 0, report)?;
        let tokens_per_s = match stats.filter(|_| report) {
            Some(s) => Some(self.reported(&s)?),
            None => None,
        };
        if eval {
            self.evaluate()?;
        }
        // The step's checkpoint comes before its metrics row: a row promises that the checkpoint
        // of its step, when one was due, is on disk.
        if self.cfg.checkpoint_every > 0 && step.is_multiple_of(self.cfg.checkpoint_every) && !last
        {
            self.save()?;
        }
        if let Some(tokens_per_s) = tokens_per_s {
            self.write_row(eval, tokens_per_s)?;
        }
        self.bar.set_position(step);
        Ok(())
    }

    /// Takes a reported step's loss; returns the tokens/s since the last report.
    fn reported(&mut self, s: &crate::gpu::StepStats) -> Result<f64> {
        check_finite(self.step, s)?;
        self.train_loss = s.loss;
        let (t0, s0) = self.last_report;
        let tokens = (self.step - s0) as f64 * (self.cfg.batch * self.cfg.seq_len) as f64;
        self.last_report = (Instant::now(), self.step);
        Ok(tokens / t0.elapsed().as_secs_f64())
    }

    /// The validation loss over the whole held-out part.
    fn evaluate(&mut self) -> Result<()> {
        self.val_loss = self.engine.evaluate(&self.data.val)?;
        if !self.val_loss.is_finite() {
            return Err(Error::Diverged {
                step: self.step,
                what: "the validation loss",
                value: self.val_loss,
            });
        }
        Ok(())
    }

    /// The step's metrics row, and the progress bar's (or the log line's) figures.
    fn write_row(&mut self, eval: bool, tokens_per_s: f64) -> Result<()> {
        let (step, loss, val) = (self.step, self.train_loss, self.val_loss);
        if self.bar.is_hidden() && eval {
            self.say(format!(
                "step {step}: loss {loss:.4}, val {val:.4}, {tokens_per_s:.0} tokens/s"
            ));
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let val_row = eval.then_some(val);
        self.metrics
            .write(step, loss, val_row, tokens_per_s, elapsed)?;
        self.bar.set_message(format!(
            "loss {loss:.4} val {val:.4} {tokens_per_s:.0} tok/s"
        ));
        Ok(())
    }

    /// The last checkpoint, the plot, a sample (text) and the summary.
    fn finish(mut self, interrupted: bool) -> Result<TrainSummary> {
        self.bar.finish_and_clear();
        if self.val_loss.is_nan() && !interrupted {
            // A resumed run that was already complete took no step: report where it stands.
            self.evaluate()?;
        }
        self.save()?;
        if interrupted {
            let ck = self.checkpoint.display();
            self.say(format!(
                "interrupted at step {}; checkpoint written to {ck}\nresume with: unroll train --resume {ck}",
                self.step
            ));
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let tokens =
            (self.step - self.start_step) as f64 * (self.cfg.batch * self.cfg.seq_len) as f64;
        self.metrics.plot(&self.plot, self.cfg.task)?;
        let params = self.engine.params()?;
        let sample = match (&self.data.vocab, self.cfg.task) {
            (Some(vocab), Task::Text) if self.cfg.sample_len > 0 => {
                let prime = vocab.token('\n').unwrap_or(0);
                let (len, seed) = (self.cfg.sample_len, self.cfg.seed);
                let tokens = crate::sample::sample(&params, &[prime], len, 0.8, seed)?;
                vocab.decode(&tokens)
            }
            _ => String::new(),
        };
        Ok(TrainSummary {
            step: self.step,
            train_loss: self.train_loss,
            val_loss: self.val_loss,
            baseline_loss: self.data.baseline,
            tokens_per_s: tokens / elapsed.max(1e-9),
            sample,
            interrupted,
            checkpoint: self.checkpoint.clone(),
            metrics: self.metrics.path.clone(),
            plot: self.plot.clone(),
            device: self.engine.device(),
        })
    }
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
            recurrence
                .map(|r| format!(" --recurrence {}", r.name()))
                .unwrap_or_default()
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
