//! Data-parallel training: one model on N ranks (devices in this process, one thread each, or
//! processes over MPI) and K micro-batches per rank, each share's streams as [`crate::shares`]
//! assigns them. A step, on every rank: the forward and backward pass of each micro-batch from
//! its own carried state, its gradients and loss read back, summed over the micro-batches in
//! order, reduced over the ranks in rank order, divided by N·K; then the same clipping and update
//! everywhere, so every rank holds the same parameters.
//!
//! Ranks on identical adapters compute identical updates. Two different adapters may round an
//! update's square roots and divisions apart, so [`DataParallel::synchronize`] (every checkpoint,
//! and the run's end) compares every rank's parameters and optimizer state with rank 0's and,
//! where one differs, copies rank 0's to every rank.
//!
//! ```
//! use unroll::data_parallel::DataParallel;
//! use unroll::engine::{CpuTrainer, Engine};
//! use unroll::optim::OptimizerConfig;
//! use unroll::shares::Shares;
//! use unroll::{Batch, ModelConfig, Params};
//!
//! let config = ModelConfig::tokens(5, 8);
//! let params = Params::init(config, 1);
//! // B = 4 streams on two ranks of one micro-batch each: 2 streams per engine.
//! let rank = || -> unroll::Result<Box<dyn Engine + Send>> {
//!     Ok(Box::new(CpuTrainer::new(params.clone(), 2, 6, OptimizerConfig::default())?))
//! };
//! let mut split = DataParallel::new(config, Shares::new(4, 2, 1)?, vec![rank()?, rank()?], None)?;
//! let mut whole = CpuTrainer::new(params.clone(), 4, 6, OptimizerConfig::default())?;
//! let batch = Batch::random(&config, 4, 6, false, 3);
//! let a = split.train_step(&batch.inputs, &batch.targets, true, true)?.unwrap();
//! let b = whole.train_step(&batch.inputs, &batch.targets, true, true)?.unwrap();
//! assert!((a.loss - b.loss).abs() <= 1e-6 * b.loss);
//! assert_eq!(split.synchronize()?.differed, 0);
//! # Ok::<(), unroll::Error>(())
//! ```

use crate::collective::Job;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gpu::StepStats;
use crate::model::{Inputs, ModelConfig, Params, Targets};
use crate::optim::OptimizerState;
pub use crate::shares::Agreement;
use crate::shares::{self, Shares};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An engine per local rank (each carrying K micro-batches' state), and the other processes.
pub struct DataParallel {
    config: ModelConfig,
    shares: Shares,
    /// This process's ranks, in rank order: one, or every rank when there is no `comm`.
    locals: Vec<Box<dyn Engine + Send>>,
    /// The other processes of an MPI job.
    comm: Option<Job>,
    /// Set by a signal on this rank; read before each step's exchange.
    interrupt: Option<Arc<AtomicUsize>>,
    /// Whether a rank's signal was seen in the last step's exchange: the ranks' one decision.
    stopped: bool,
    /// Each rank's seconds of forward, backward and read-back in the last step.
    busy: Vec<f32>,
    /// Per local rank: its sum of a step's gradients (then the mean), and one micro-batch's;
    /// kept from step to step.
    bufs: Vec<[Vec<f32>; 2]>,
    /// Every rank's device, in words (on rank 0; a rank's own elsewhere).
    devices: Vec<String>,
}

impl DataParallel {
    /// A run over `shares` with this process's engines (one per local rank, each built for
    /// micro-batches of `shares.micro()` streams with `shares.accumulate` slots) and, over MPI,
    /// the job's processes.
    pub fn new(
        config: ModelConfig,
        shares: Shares,
        locals: Vec<Box<dyn Engine + Send>>,
        comm: Option<Job>,
    ) -> Result<Self> {
        let procs = comm.as_ref().map_or(1, |c| c.size());
        if locals.is_empty()
            || locals.len() * procs != shares.ranks
            || (procs > 1 && locals.len() > 1)
        {
            return Err(Error::config(
                format!(
                    "{} local engines in {procs} processes for {} ranks",
                    locals.len(),
                    shares.ranks
                ),
                "run one engine per process over MPI, or several in one process without it",
            ));
        }
        let locals_len = locals.len();
        let mut devices: Vec<String> = locals.iter().map(|e| e.device()).collect();
        if let Some(c) = &comm
            && let Some(all) = c.gather_bytes(devices[0].as_bytes())
        {
            devices = all
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
        }
        Ok(Self {
            devices,
            config,
            shares,
            locals,
            comm,
            interrupt: None,
            stopped: false,
            busy: Vec::new(),
            bufs: vec![Default::default(); locals_len],
        })
    }

    /// Stops every rank after the step whose exchange carried any rank's `flag` (set by Ctrl-C
    /// or SIGTERM): the flag travels with the gradients, and every rank decides on the sum
    /// ([`Engine::stops_after_step`]), never on its own flag, which a signal may set between
    /// one rank's exchange and another's.
    pub fn with_interrupt(self, interrupt: Option<Arc<AtomicUsize>>) -> Self {
        Self { interrupt, ..self }
    }

    /// The global rank of local engine i.
    fn rank_of(&self, i: usize) -> usize {
        self.comm.as_ref().map_or(i, |c| c.rank())
    }

    /// Every share's gradients of a step, summed per rank in micro-batch order, with the loss sum,
    /// `stop` and the rank's busy seconds after them: into each local rank's first buffer.
    fn local_sums(&mut self, chunk: (&Inputs, &Targets), reset: bool, stop: bool) -> Result<()> {
        let (config, shares) = (self.config, self.shares);
        let ranks: Vec<usize> = (0..self.locals.len()).map(|i| self.rank_of(i)).collect();
        let run = |engine: &mut Box<dyn Engine + Send>, bufs: &mut [Vec<f32>; 2], rank: usize| {
            let started = std::time::Instant::now();
            let [sum, part] = bufs;
            let mut loss = 0.0f32;
            for j in 0..shares.accumulate {
                let (x, y) =
                    shares::slice_chunk(&config, chunk, shares.batch, shares.streams(rank, j));
                let into = if j == 0 { &mut *sum } else { &mut *part };
                loss += engine.gradients((&x, &y), reset, shares.share(rank, j), into)?;
                if j > 0 {
                    shares::add_in_order(sum, std::iter::once(part.as_slice()), 1);
                }
            }
            sum.push(loss);
            sum.push(stop as u8 as f32);
            // Each rank's seconds of compute and read-back, in its own place.
            let mut times = vec![0.0; shares.ranks];
            times[rank] = started.elapsed().as_secs_f32();
            sum.extend(times);
            Ok(())
        };
        if self.locals.len() == 1 {
            return run(&mut self.locals[0], &mut self.bufs[0], ranks[0]);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .locals
                .iter_mut()
                .zip(self.bufs.iter_mut())
                .zip(&ranks)
                .map(|((e, b), &r)| s.spawn(move || run(e, b, r)))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("a device's thread panicked"))
        })
    }

    /// One step; returns its stats and whether any rank asked to stop (`stop` here, or a signal
    /// on another rank), which every rank learns at the same step.
    pub fn step(
        &mut self,
        chunk: (&Inputs, &Targets),
        reset: bool,
        report: bool,
        stop: bool,
    ) -> Result<(StepStats, bool)> {
        self.local_sums(chunk, reset, stop)?;
        let divisor = self.shares.ranks * self.shares.accumulate;
        let (first, rest) = self.bufs.split_at_mut(1);
        let mean = &mut first[0][0];
        match &self.comm {
            Some(c) => c.ordered_mean(mean, divisor),
            None => shares::add_in_order(mean, rest.iter().map(|b| b[0].as_slice()), divisor),
        }
        let times = mean.split_off(mean.len() - self.shares.ranks);
        self.busy = times.iter().map(|t| t * divisor as f32).collect();
        let stopped = mean.pop().expect("the stop flag") > 0.0;
        let loss = mean.pop().expect("the loss");
        let norms = each(&mut self.locals, |e| e.apply(mean, report))?;
        let grad_norm = norms[0].unwrap_or(f32::NAN);
        Ok((StepStats { loss, grad_norm }, stopped))
    }

    /// Compares every rank's parameters and optimizer state with rank 0's, and copies rank 0's
    /// where one differs. Every rank calls it at the same step.
    pub fn synchronize(&mut self) -> Result<Agreement> {
        let mut words = Vec::new();
        for e in &self.locals {
            words.push(fingerprint(&e.params()?, &e.optimizer_state()?));
        }
        let all = match &self.comm {
            Some(c) => c.all_words(words[0]),
            None => words,
        };
        let differed = all.iter().filter(|&&w| w != all[0]).count();
        if differed > 0 {
            let (mut params, mut state) =
                (self.locals[0].params()?, self.locals[0].optimizer_state()?);
            if let Some(c) = &self.comm {
                c.broadcast(&mut params.data);
                c.broadcast(&mut state.m);
                c.broadcast(&mut state.v);
            }
            for e in &mut self.locals {
                e.set_params(&params)?;
                e.set_optimizer_state(&state)?;
            }
        }
        Ok(Agreement {
            ranks: self.shares.ranks,
            differed,
        })
    }
}

/// `f` on every local engine, one thread each where there are several.
fn each<T: Send>(
    locals: &mut [Box<dyn Engine + Send>],
    f: impl Fn(&mut Box<dyn Engine + Send>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if locals.len() == 1 {
        return Ok(vec![f(&mut locals[0])?]);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = locals.iter_mut().map(|e| s.spawn(|| f(e))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a device's thread panicked"))
            .collect()
    })
}

/// FNV-1a over the bits of the parameters and the optimizer's moments and step.
fn fingerprint(params: &Params<f32>, state: &OptimizerState) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let words = params
        .data
        .iter()
        .chain(&state.m)
        .chain(&state.v)
        .map(|v| v.to_bits());
    for w in words.chain([state.step as u32]) {
        for b in w.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Engine for DataParallel {
    fn train_step(
        &mut self,
        inputs: &Inputs,
        targets: &Targets,
        reset: bool,
        report: bool,
    ) -> Result<Option<StepStats>> {
        let stop = (self.interrupt.as_ref()).is_some_and(|f| f.load(Ordering::SeqCst) > 0);
        let (stats, stopped) = self.step((inputs, targets), reset, report, stop)?;
        self.stopped = stopped;
        Ok(Some(stats))
    }

    fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        self.locals[0].evaluate(chunks)
    }

    fn params(&self) -> Result<Params<f32>> {
        self.locals[0].params()
    }

    fn set_params(&mut self, params: &Params<f32>) -> Result<()> {
        each(&mut self.locals, |e| e.set_params(params)).map(|_| ())
    }

    fn optimizer_state(&self) -> Result<OptimizerState> {
        self.locals[0].optimizer_state()
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        each(&mut self.locals, |e| e.set_optimizer_state(state)).map(|_| ())
    }

    /// The whole run's carried state (every stream, in stream order) on rank 0; a rank's own
    /// elsewhere. Every rank calls it at the same step.
    fn hidden(&self) -> Result<Vec<f32>> {
        let (config, per_rank, n) = (self.config, self.shares.per_rank(), self.shares.ranks);
        let mut all = vec![0.0; config.carry_len(self.shares.batch)];
        match &self.comm {
            Some(c) => {
                let mine = self.locals[0].hidden()?;
                let Some(gathered) = c.gather(&mine) else {
                    return Ok(mine);
                };
                for (r, part) in gathered.chunks(mine.len()).enumerate() {
                    shares::set_carry_of(&config, &mut all, part, per_rank, n, r);
                }
            }
            None => {
                for (r, e) in self.locals.iter().enumerate() {
                    shares::set_carry_of(&config, &mut all, &e.hidden()?, per_rank, n, r);
                }
            }
        }
        Ok(all)
    }

    /// Takes each rank's streams out of the whole run's carried state.
    fn set_hidden(&mut self, h: &[f32]) -> Result<()> {
        let (config, per_rank, n) = (self.config, self.shares.per_rank(), self.shares.ranks);
        shares::check_carry_len(h.len(), config.carry_len(self.shares.batch))?;
        let ranks: Vec<usize> = (0..self.locals.len()).map(|i| self.rank_of(i)).collect();
        for (e, r) in self.locals.iter_mut().zip(ranks) {
            e.set_hidden(&shares::carry_of(&config, h, per_rank, n, r))?;
        }
        Ok(())
    }

    fn device(&self) -> String {
        let Shares {
            ranks, accumulate, ..
        } = self.shares;
        let how = match &self.comm {
            Some(_) => format!("{ranks} ranks over MPI"),
            None if ranks > 1 => format!("{ranks} devices"),
            None => "one device".into(),
        };
        let micro = match accumulate {
            1 => String::new(),
            k => format!(
                ", {k} micro-batches of {} streams each",
                self.shares.micro()
            ),
        };
        let first = match self.devices.len() {
            1 => self.comm.as_ref().map_or(0, |c| c.rank()),
            _ => 0,
        };
        let each: Vec<String> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| format!("rank {}: {d}", first + i))
            .collect();
        format!("{how}{micro} ({})", each.join("; "))
    }

    fn gradients(
        &mut self,
        _chunk: (&Inputs, &Targets),
        _reset: bool,
        _share: crate::shares::Share,
        _grads: &mut Vec<f32>,
    ) -> Result<f32> {
        Err(Error::config(
            "a data-parallel run's gradients are its ranks'",
            "call gradients on one rank's engine",
        ))
    }

    fn apply(&mut self, grads: &[f32], report: bool) -> Result<Option<f32>> {
        Ok(each(&mut self.locals, |e| e.apply(grads, report))?[0])
    }

    fn synchronize(&mut self) -> Result<Option<Agreement>> {
        match self.shares.ranks {
            1 => Ok(None),
            _ => DataParallel::synchronize(self).map(Some),
        }
    }

    fn stops_after_step(&self, _signalled: bool) -> bool {
        self.stopped
    }

    fn progress_note(&self) -> Option<String> {
        let (rank, secs) = self
            .busy
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        Some(format!("slowest rank {rank}: {:.1} ms busy", secs * 1e3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CpuTrainer;
    use crate::model::Batch;
    use crate::optim::OptimizerConfig;

    fn ranks(params: &Params<f32>, n: usize) -> Vec<Box<dyn Engine + Send>> {
        (0..n)
            .map(|_| {
                let e = CpuTrainer::new(params.clone(), 2, 5, OptimizerConfig::default());
                Box::new(e.unwrap()) as Box<dyn Engine + Send>
            })
            .collect()
    }

    #[test]
    fn a_rank_that_drifted_gets_rank_0s_parameters() {
        let config = ModelConfig::tokens(4, 6);
        let params = Params::init(config, 2);
        let shares = Shares::new(6, 3, 1).unwrap();
        let mut dp = DataParallel::new(config, shares, ranks(&params, 3), None).unwrap();
        let batch = Batch::random(&config, 6, 5, false, 1);
        dp.train_step(&batch.inputs, &batch.targets, true, false)
            .unwrap();
        // Rank 2's adapter rounded one update apart.
        let mut drifted = dp.locals[2].params().unwrap();
        drifted.data[7] = f32::from_bits(drifted.data[7].to_bits() ^ 1);
        dp.locals[2].set_params(&drifted).unwrap();
        assert_eq!(dp.synchronize().unwrap().differed, 1);
        let rank0 = dp.locals[0].params().unwrap();
        assert_eq!(dp.locals[2].params().unwrap(), rank0);
        assert_eq!(dp.synchronize().unwrap().differed, 0);
    }

    #[test]
    fn the_carried_state_is_every_stream_in_order() {
        let config = ModelConfig::tokens(4, 3).with_cell(crate::cell::Cell::Lstm, 2);
        let params = Params::init(config, 2);
        let shares = Shares::new(6, 3, 1).unwrap();
        let mut dp = DataParallel::new(config, shares, ranks(&params, 3), None).unwrap();
        let all: Vec<f32> = (0..config.carry_len(6)).map(|i| i as f32).collect();
        dp.set_hidden(&all).unwrap();
        assert_eq!(dp.hidden().unwrap(), all);
        // Rank 1 holds streams 2 and 3 of every layer's h and c.
        let mine = dp.locals[1].hidden().unwrap();
        assert_eq!(mine[..6], all[6..12]);
        assert!(dp.set_hidden(&all[1..]).is_err());
    }
}
