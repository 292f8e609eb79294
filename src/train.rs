//! `unroll train`: the training loop, the same for the GPU and the CPU engine and for text and
//! series data. It reads the loss back every `log_every` steps (other steps never wait for the
//! GPU), evaluates on the whole held-out tail every `eval_every` steps (a loss read back per
//! chunk), writes the step's checkpoint and then its metrics row, and at the end draws the loss
//! curve and prints a sample. Before the first GPU step it compares one step with the CPU
//! reference at the run's model sizes.

pub use crate::checkpoint::Best;
use crate::checkpoint::{Checkpoint, FORMAT, RunInfo};
pub use crate::config::{Device, MAX_BATCH_OR_SEQ_LEN, MAX_ROWS, Task, TrainConfig};
use crate::dataset::{Score, train_on};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resume::{on_resume, resolve_config};
use crate::run_data::load_data;
use crate::run_engine::build_engine;
use crate::run_input::{Data, Encoding};
pub use crate::run_options::{Resume, RunOptions};
use crate::rundir::{self, RunDir};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

mod closing;

/// How a sample of the built-in arithmetic corpus scores: its complete lines, and how many of
/// them are right equations; beside the same count for a sample of the same length from the
/// corpus's character frequencies alone (a unigram model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleScore {
    /// Complete lines of the sample (its first and last, possibly cut, left out).
    pub lines: usize,
    /// Lines of the form `a+b=c` or `a-b=c`.
    pub well_formed: usize,
    /// Lines whose sum or difference is right.
    pub correct: usize,
    /// Complete lines of the unigram model's sample.
    pub unigram_lines: usize,
    /// Right equations in it.
    pub unigram_correct: usize,
}

/// How a classifier's last evaluation classified the validation sequences.
#[derive(Clone, Debug)]
pub struct Classified {
    /// The class names.
    pub classes: Vec<String>,
    /// The share of sequences classified right.
    pub accuracy: f64,
    /// The share of the training split's sequences classified right by the same model (of a
    /// fixed draw of 1,024 of them, or of the validation split's count if larger, where the
    /// split holds more).
    pub train_accuracy: Option<f64>,
    /// `counts[true class][predicted class]`.
    pub confusion: Vec<Vec<u64>>,
    /// `confusion.csv` and `per_class.csv` in the run directory.
    pub files: Option<(PathBuf, PathBuf)>,
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
    /// The last evaluation's accuracy, and the confusion of its classes (classification).
    pub classified: Option<Classified>,
    /// Text: the loss of the unigram distribution; series: the validation loss of repeating the
    /// last value. The baseline the model must beat.
    pub baseline_loss: f64,
    /// Mean training throughput, tokens (positions) per second.
    pub tokens_per_s: f64,
    /// The sample (text) or forecast summary (series) printed at the end.
    pub sample: String,
    /// How the sample scores, where the run trained on the built-in arithmetic corpus.
    pub sample_score: Option<SampleScore>,
    /// Whether the run stopped early on an interrupt.
    pub interrupted: bool,
    /// The checkpoint written.
    pub checkpoint: PathBuf,
    /// The best evaluation (lowest validation loss) and its checkpoint, where the run
    /// evaluated.
    pub best: Option<(Best, PathBuf)>,
    /// Whether `--early-stop` ended the run before `--iters`.
    pub stopped_early: bool,
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
    while run.step < run.cfg.iters && !run.stops_early() {
        run.train_step()?;
        let signalled = opts
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst) > 0);
        if run.engine.stops_after_step(signalled) {
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
    /// The run directory, locked until the run ends; every file the run writes goes through it.
    /// A follower rank of an MPI job has none: rank 0 writes the run's files.
    dir: Option<RunDir>,
    checkpoint: PathBuf,
    plot: PathBuf,
    /// The last checkpoint on disk (its step and path): written by this run, or resumed from.
    kept: Option<(u64, PathBuf)>,
    /// The best evaluation so far (this run's or the resumed one's); its checkpoint is `best`.
    best: Option<Best>,
    best_path: PathBuf,
    metrics: Option<Metrics>,
    bar: indicatif::ProgressBar,
    /// What the last comparison of the ranks' parameters found, in a data-parallel run.
    agreement: Option<crate::shares::Agreement>,
    /// Steps taken (the run's, resumed ones included).
    step: u64,
    start_step: u64,
    started: Instant,
    /// When and at which step the loss was last reported (for tokens/s).
    last_report: (Instant, u64),
    train_loss: f32,
    val_loss: f32,
    /// The last evaluation's score (its loss is `val_loss`).
    score: Option<Score>,
    /// The training split's score at the last evaluation (classification).
    train_split: Option<Score>,
}

impl Run {
    /// Claims the run directory, loads the data, builds the engine (resuming where asked) and
    /// says what is trained where.
    fn start(cfg: &TrainConfig, opts: &RunOptions) -> Result<Self> {
        let (cfg, resumed) = resolve_config(cfg, opts)?;
        let resumed_from = |e: Error| match &opts.resume {
            Some(r) => on_resume(e, &r.checkpoint),
            None => e,
        };
        // The run directory is claimed before anything slow: a refusal comes at once.
        let leader = opts.is_leader();
        let dir = match leader {
            true => Some(RunDir::open(&opts.out_dir, opts.force)?),
            false => None,
        };
        let encoding = match &resumed {
            Some(c) => Encoding {
                vocab: c.info.vocab.clone(),
                normalization: c.info.normalization.clone(),
                classes: c.info.classes.clone(),
            },
            None => Encoding::default(),
        };
        let data = load_data(&cfg, opts.max_bytes, encoding).map_err(resumed_from)?;
        let (engine, step) =
            build_engine(&cfg, opts, &data, resumed.as_ref()).map_err(resumed_from)?;
        let metrics = match &dir {
            Some(dir) => {
                let accuracy = cfg.task == Task::Classify;
                Some(Metrics::open(dir, resumed.is_some(), step, accuracy)?)
            }
            None => None,
        };
        if cfg.early_stop > 0 && opts.job.is_some() {
            return Err(Error::config(
                "--early-stop ends a run on rank 0's evaluation, and the other ranks of an MPI job \
                 do not evaluate",
                "leave --early-stop out of an MPI job (best.safetensors is kept either way)",
            ));
        }
        let kept = match (&resumed, &opts.resume) {
            (Some(ck), Some(r)) => Some((ck.info.step, r.checkpoint.clone())),
            _ => None,
        };
        let run = Self {
            bar: progress_bar(opts.quiet || !leader, cfg.iters, step),
            checkpoint: opts.out_dir.join(rundir::CHECKPOINT),
            best: resumed.as_ref().and_then(|c| c.info.best),
            best_path: opts.out_dir.join(rundir::BEST),
            plot: opts.out_dir.join(rundir::PLOT),
            agreement: None,
            kept,
            dir,
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
            score: None,
            train_split: None,
        };
        run.say(run.describe(resumed.is_some()));
        Ok(run)
    }

    /// A line for the user: above the progress bar, or on its own with `--quiet`; nothing on a
    /// follower rank.
    fn say(&self, msg: String) {
        if self.dir.is_none() {
            return;
        }
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
                Task::Classify => "a sequence classifier",
            },
            c.cell.name(),
            c.layers,
            self.engine.device(),
            c.input,
            c.hidden,
            c.output,
            cfg.batch,
            match &self.data.padding {
                Some(p) => format!(
                    "up to {} ({}{} head, {:.1} % of the batches' steps padding)",
                    self.data.steps,
                    if c.bidirectional {
                        "bidirectional, "
                    } else {
                        ""
                    },
                    c.head.name(),
                    100.0 * p.share(|steps| self.engine.steps_computed(steps))
                ),
                None => self.data.steps.to_string(),
            },
            c.num_params(),
            self.data.train.chunks_per_epoch(),
            if resumed {
                format!(", resuming at step {}", self.step)
            } else {
                String::new()
            }
        )
    }

    /// The error of a step whose loss, gradient norm or weights stopped being finite, with the
    /// checkpoint that stays on disk.
    fn diverged(&self, what: &'static str, value: f32) -> Error {
        Error::Diverged {
            step: self.step,
            what,
            value,
            checkpoint: self.kept.clone(),
        }
    }

    /// Writes the checkpoint of the current step (refusing weights that are not finite). In a
    /// data-parallel run every rank comes here at the same step: the ranks' parameters are
    /// compared (and made rank 0's), and every stream's carried state gathered to rank 0.
    fn save(&mut self) -> Result<()> {
        if let Some(a) = self.engine.synchronize()? {
            self.agreement = Some(a);
        }
        // Every rank's part: the carried state of every stream is gathered to rank 0.
        let hidden = self.engine.hidden()?;
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        dir.write_atomic(rundir::CHECKPOINT, &self.checkpoint_bytes(Some(hidden))?)?;
        self.kept = Some((self.step, self.checkpoint.clone()));
        Ok(())
    }

    /// The checkpoint of the run as it stands, with the carried state where given.
    fn checkpoint_bytes(&self, hidden: Option<Vec<f32>>) -> Result<Vec<u8>> {
        let (engine, step) = (self.engine.as_ref(), self.step);
        let params = engine.params()?;
        if let Some(i) = params.data.iter().position(|v| !v.is_finite()) {
            return Err(self.diverged("a parameter", params.data[i]));
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
                best: self.best,
                classes: self.data.classes.clone(),
            },
            optimizer: Some(engine.optimizer_state()?),
            hidden,
            positions: Some(self.data.train.positions((step % cpe) as usize)),
        }
        .to_bytes()
    }

    /// After an evaluation (on rank 0 alone): a lower validation loss than the best so far
    /// becomes the best, and its checkpoint is written (`best.safetensors`, the model without the
    /// carried state, which only a collective of every rank could gather); else one more
    /// evaluation without improvement counts.
    fn track_best(&mut self) -> Result<()> {
        match &mut self.best {
            Some(b) if self.val_loss >= b.val_loss => b.since += 1,
            _ => {
                self.best = Some(Best {
                    step: self.step,
                    val_loss: self.val_loss,
                    since: 0,
                });
                if let Some(dir) = &self.dir {
                    dir.write_atomic(rundir::BEST, &self.checkpoint_bytes(None)?)?;
                }
            }
        }
        Ok(())
    }

    /// Whether `--early-stop N` ends the run: N evaluations in a row without improvement.
    fn stops_early(&self) -> bool {
        let n = self.cfg.early_stop;
        n > 0 && self.best.is_some_and(|b| b.since >= n)
    }

    /// One training step on the next chunk; reports, evaluates, checkpoints and writes its
    /// metrics row as the configuration asks.
    fn train_step(&mut self) -> Result<()> {
        let cpe = self.data.train.chunks_per_epoch() as u64;
        let k = (self.step % cpe) as usize;
        let chunk = self.data.train.chunk(self.step / cpe, k);
        self.step += 1;
        let (step, cfg) = (self.step, &self.cfg);
        let last = step == cfg.iters;
        let eval = step.is_multiple_of(cfg.eval_every) || last;
        // An evaluated step reports its training loss too, so its metrics row has both.
        let report = step.is_multiple_of(cfg.log_every) || eval;
        let stats = train_on(self.engine.as_mut(), &chunk, k == 0, report)?;
        let tokens_per_s = match stats.filter(|_| report) {
            Some(s) => Some(self.reported(&s)?),
            None => None,
        };
        if eval && self.dir.is_some() {
            self.evaluate()?;
            self.track_best()?;
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
        for (what, value) in [("the loss", s.loss), ("the gradient norm", s.grad_norm)] {
            if !value.is_finite() {
                return Err(self.diverged(what, value));
            }
        }
        self.train_loss = s.loss;
        let (t0, s0) = self.last_report;
        let tokens = (self.step - s0) as f64 * self.data.positions_per_chunk;
        self.last_report = (Instant::now(), self.step);
        Ok(tokens / t0.elapsed().as_secs_f64())
    }

    /// The validation loss over the whole held-out part.
    fn evaluate(&mut self) -> Result<()> {
        let score = self.data.val.evaluate(self.engine.as_mut())?;
        self.val_loss = score.loss;
        self.score = Some(score);
        if let Some(split) = &self.data.train_split {
            self.train_split = Some(split.evaluate(self.engine.as_mut())?);
        }
        if !self.val_loss.is_finite() {
            return Err(self.diverged("the validation loss", self.val_loss));
        }
        Ok(())
    }

    /// The step's metrics row, and the progress bar's (or the log line's) figures.
    fn write_row(&mut self, eval: bool, tokens_per_s: f64) -> Result<()> {
        let (step, loss, val) = (self.step, self.train_loss, self.val_loss);
        let note = self
            .engine
            .progress_note()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let accuracy = self.score.as_ref().and_then(|s| s.accuracy);
        let train_accuracy = self.train_split.as_ref().and_then(|s| s.accuracy);
        let acc = match (accuracy, train_accuracy) {
            (Some(a), Some(t)) => format!(
                ", accuracy {:.1} % (training split {:.1} %)",
                100.0 * a,
                100.0 * t
            ),
            (Some(a), None) => format!(", accuracy {:.1} %", 100.0 * a),
            _ => String::new(),
        };
        if self.bar.is_hidden() && eval {
            self.say(format!(
                "step {step}: loss {loss:.4}, val {val:.4}{acc}, {tokens_per_s:.0} tokens/s{note}"
            ));
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let val_row = eval.then_some(val);
        if let Some(m) = &mut self.metrics {
            m.write(
                step,
                loss,
                val_row,
                (tokens_per_s, elapsed),
                (accuracy, train_accuracy),
            )?;
        }
        let val = if val.is_nan() {
            "-".to_string()
        } else {
            format!("{val:.4}")
        };
        self.bar.set_message(format!(
            "loss {loss:.4} val {val}{acc} {tokens_per_s:.0} tok/s{note}"
        ));
        Ok(())
    }

    /// The last checkpoint, the plot, a sample (text) and the summary.
    fn finish(mut self, interrupted: bool) -> Result<TrainSummary> {
        self.bar.finish_and_clear();
        if self.val_loss.is_nan() && !interrupted && self.dir.is_some() {
            // A resumed run that was already complete took no step: report where it stands.
            self.evaluate()?;
        }
        self.save()?;
        if let Some(b) = self
            .best
            .filter(|_| self.stops_early() && self.step < self.cfg.iters)
        {
            self.say(format!(
                "no lower validation loss in {} evaluations: stopped at step {} of {}; the best \
                 ({:.4}, step {}) is {}",
                b.since,
                self.step,
                self.cfg.iters,
                b.val_loss,
                b.step,
                self.best_path.display()
            ));
        }
        if interrupted {
            let ck = self.checkpoint.display();
            self.say(format!(
                "interrupted at step {}; checkpoint written to {ck}\nresume with: unroll train --resume {ck}",
                self.step
            ));
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let tokens = (self.step - self.start_step) as f64 * self.data.positions_per_chunk;
        if let Some(a) = self.agreement {
            self.say(agreement(a));
        }
        let params = self.engine.params()?;
        let (sample, sample_score, metrics) = match (&self.metrics, &self.dir) {
            (Some(m), Some(dir)) => {
                m.plot(dir, self.cfg.task)?;
                let (text, score) = self.sample(&params)?;
                (text, score, m.path.clone())
            }
            _ => (String::new(), None, PathBuf::new()),
        };
        Ok(TrainSummary {
            step: self.step,
            train_loss: self.train_loss,
            val_loss: self.val_loss,
            classified: self.classified()?,
            baseline_loss: self.data.baseline,
            tokens_per_s: tokens / elapsed.max(1e-9),
            sample,
            sample_score,
            interrupted,
            checkpoint: self.checkpoint.clone(),
            best: self.best.map(|b| (b, self.best_path.clone())),
            stopped_early: self.stops_early() && self.step < self.cfg.iters,
            metrics,
            plot: self.plot.clone(),
            device: self.engine.device(),
        })
    }
}

/// What the comparison of the ranks' parameters found, in words.
fn agreement(a: crate::shares::Agreement) -> String {
    match a.differed {
        0 => format!(
            "ranks agree: the parameters and optimizer state of all {} ranks are equal, bit for bit",
            a.ranks
        ),
        d => format!(
            "ranks differed: {d} of {} ranks held parameters other than rank 0's (their adapters \
             round differently); rank 0's were copied to every rank",
            a.ranks
        ),
    }
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
