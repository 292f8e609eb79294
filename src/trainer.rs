//! The library's front door: a model training on the GPU or on the CPU reference, a chunk at a
//! time or for a number of steps over a dataset; its parameters, its checkpoint; and one step's
//! loss and gradients without an update.
//!
//! ```
//! use unroll::data::{Streams, Vocab};
//! use unroll::{Cell, Device, ModelConfig, Params, TrainOptions, Trainer};
//!
//! let text = "the cat sat on the mat. ".repeat(40);
//! let vocab = Vocab::from_text(&text);
//! let data = Streams::new(&vocab.encode(text.as_bytes())?, 4, 8, "training")?;
//! let config = ModelConfig::tokens(vocab.len(), 16).with_cell(Cell::Lstm, 2);
//! let options = TrainOptions::new(4, 8);
//! let mut trainer = Trainer::new(Device::Cpu, Params::init(config, 0), options.clone())?;
//! let first = trainer.fit(&data, 1)?;
//! let last = trainer.fit(&data, 40)?;
//! assert!(last.loss < first.loss);
//!
//! // A checkpoint resumes the run, on either device, and loads into torch.nn.LSTM + nn.Linear.
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("model.safetensors");
//! trainer.checkpoint(Some(vocab))?.save(&path)?;
//! let checkpoint = unroll::checkpoint::Checkpoint::load(&path)?;
//! let resumed = Trainer::resume(Device::Gpu, &checkpoint, options)?;
//! assert_eq!(resumed.steps_taken(), 41);
//! assert_eq!(resumed.params()?, trainer.params()?);
//! # Ok::<(), unroll::Error>(())
//! ```

use crate::checkpoint::{Checkpoint, FORMAT, RunInfo};
use crate::config::Device;
use crate::dataset::{Dataset, Validation, train_on};
use crate::engine::{CpuTrainer, Engine};
use crate::error::{Error, Result};
use crate::gpu::{AdapterChoice, Gpu, GpuTrainer, StepStats, TrainerShape};
use crate::model::{Batch, Inputs, Params, StepOutput, Targets};
use crate::optim::OptimizerConfig;

/// How a [`Trainer`] trains: the shape it is built for and the optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// B and T of the training chunks, dropout between stacked layers, B of the chunks
    /// [`Trainer::evaluate`] takes (if it is used), and the GPU's recurrence strategy (the CPU
    /// reference has one).
    pub shape: TrainerShape,
    /// The update rule, learning rate and clipping (Adam, 2e-3, clip 5 by default).
    pub optimizer: OptimizerConfig,
}

impl TrainOptions {
    /// Batches of (B, T), the default optimizer, no dropout, no evaluation.
    pub fn new(batch: usize, steps: usize) -> Self {
        Self {
            shape: TrainerShape::new(batch, steps),
            optimizer: OptimizerConfig::default(),
        }
    }
}

/// A model training on a device: parameters, optimizer state and the carried hidden state (and
/// LSTM cell state), all resident on the GPU when it trains there.
pub struct Trainer {
    engine: Box<dyn Engine>,
    /// Steps taken by this trainer, and by the checkpoint it resumed.
    taken: u64,
    /// Whether the next step starts from a zero state.
    reset: bool,
}

impl Trainer {
    /// A trainer on `device`: the GPU (wgpu's default adapter, or the one `WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME` name) or the CPU reference.
    pub fn new(device: Device, params: Params<f32>, options: TrainOptions) -> Result<Self> {
        match device {
            Device::Gpu => Self::on_gpu(Gpu::new(&AdapterChoice::default())?, params, options),
            Device::Cpu => Self::on_cpu(params, options),
        }
    }

    /// A trainer on a GPU the caller opened.
    pub fn on_gpu(gpu: Gpu, params: Params<f32>, options: TrainOptions) -> Result<Self> {
        let TrainOptions { shape, optimizer } = options;
        let engine = GpuTrainer::new(gpu, params.config, shape, optimizer, &params)?;
        Ok(Self::with_engine(Box::new(engine)))
    }

    /// A trainer on the CPU reference: slow, simple, bitwise repeatable.
    pub fn on_cpu(params: Params<f32>, options: TrainOptions) -> Result<Self> {
        let TrainOptions { shape, optimizer } = options;
        let engine = CpuTrainer::new(params, shape.batch, shape.steps, optimizer)?
            .with_dropout(shape.dropout);
        Ok(Self::with_engine(Box::new(engine)))
    }

    fn with_engine(engine: Box<dyn Engine>) -> Self {
        Self {
            engine,
            taken: 0,
            reset: true,
        }
    }

    /// Resumes a checkpoint's run: its parameters, its optimizer's state and its carried state
    /// (when it has them) on `device`. The batch size must be the checkpoint's.
    pub fn resume(device: Device, checkpoint: &Checkpoint, options: TrainOptions) -> Result<Self> {
        let mut trainer = Self::new(device, checkpoint.params.clone(), options)?;
        if let Some(state) = &checkpoint.optimizer {
            trainer.engine.set_optimizer_state(state)?;
        }
        if let Some(carry) = &checkpoint.hidden {
            trainer.engine.set_hidden(carry)?;
            trainer.reset = false;
        }
        trainer.taken = checkpoint.info.step;
        Ok(trainer)
    }

    /// One training step on a chunk of (T, B) (forward, loss, backward, clipping, update), from
    /// the state the previous chunk left (zero for the first, or after [`Trainer::reset_state`]).
    /// Waits for and returns the mean loss per timestep and stream and the gradient's norm.
    pub fn step(&mut self, inputs: &Inputs, targets: &Targets) -> Result<StepStats> {
        let stats = self.engine.train_step(inputs, targets, self.reset, true)?;
        self.reset = false;
        self.taken += 1;
        stats.ok_or_else(|| Error::config("the engine reported no loss", "report this as a bug"))
    }

    /// Starts the next chunk from a zero state (a new pass, a new document).
    pub fn reset_state(&mut self) {
        self.reset = true;
    }

    /// Trains for `steps` chunks in order (streams: the state reset at the start of each pass
    /// over `data`; whole sequences: every chunk from a zero state); waits only for the last
    /// step, whose loss and gradient norm it returns.
    pub fn fit(&mut self, data: &impl Dataset, steps: u64) -> Result<StepStats> {
        let per_pass = data.chunks_per_epoch().max(1) as u64;
        let mut last = None;
        for i in 0..steps {
            let k = self.taken % per_pass;
            let chunk = data.chunk(self.taken / per_pass, k as usize);
            let reset = self.reset || k == 0;
            last = train_on(self.engine.as_mut(), &chunk, reset, i + 1 == steps)?;
            self.reset = false;
            self.taken += 1;
        }
        last.ok_or_else(|| Error::config("fit was asked for 0 steps", "ask for 1 or more"))
    }

    /// The mean loss over chunks of (T, B_eval), from a zero state carried through them; the
    /// training state is untouched. A GPU trainer needs `shape.eval_batch` in its options.
    pub fn evaluate(&mut self, chunks: &[(Inputs, Targets)]) -> Result<f32> {
        self.engine.evaluate(chunks)
    }

    /// Scores a validation part: the mean loss, and the accuracy and confusion of classified
    /// sequences.
    pub fn score(&mut self, val: &Validation) -> Result<crate::dataset::Score> {
        val.evaluate(self.engine.as_mut())
    }

    /// The current parameters (read back from the GPU when it trains there).
    pub fn params(&self) -> Result<Params<f32>> {
        self.engine.params()
    }

    /// Training steps taken (including those of a resumed checkpoint).
    pub fn steps_taken(&self) -> u64 {
        self.taken
    }

    /// The device, in words.
    pub fn device(&self) -> String {
        self.engine.device()
    }

    /// Everything needed to resume or to sample: parameters, optimizer state, carried state,
    /// and the vocabulary of a text model. [`Checkpoint::save`] writes it as the CLI does.
    pub fn checkpoint(&self, vocab: Option<crate::data::Vocab>) -> Result<Checkpoint> {
        let params = self.engine.params()?;
        Ok(Checkpoint {
            info: RunInfo {
                format: FORMAT,
                config: params.config,
                vocab,
                normalization: None,
                train: None,
                step: self.taken,
                best: None,
                classes: None,
            },
            params,
            optimizer: Some(self.engine.optimizer_state()?),
            hidden: Some(self.engine.hidden()?),
            positions: None,
        })
    }
}

/// One step's forward and backward pass without an update: the loss, the outputs, the final
/// state and every gradient, on the GPU (`Some`) or on the CPU reference (`None`).
///
/// ```
/// use unroll::gpu::{AdapterChoice, Gpu};
/// use unroll::{Batch, Cell, ModelConfig, Params, gradients};
///
/// let config = ModelConfig::dense(3, 8, 2).with_cell(Cell::Gru, 2);
/// let params = Params::init(config, 5);
/// let batch = Batch::random(&config, 2, 6, true, 9);
/// let gpu = Gpu::new(&AdapterChoice::default())?;
/// let on_gpu = gradients(Some(&gpu), &params, &batch)?;
/// let on_cpu = gradients(None, &params, &batch)?;
/// let dw = config.table().slice(&on_gpu.grads, "rnn.weight_hh_l1").to_vec();
/// let dw_cpu = config.table().slice(&on_cpu.grads, "rnn.weight_hh_l1").to_vec();
/// for (g, c) in dw.iter().zip(&dw_cpu) {
///     assert!((g - c).abs() <= 1e-4, "{g} vs {c}");
/// }
/// # Ok::<(), unroll::Error>(())
/// ```
pub fn gradients(
    gpu: Option<&Gpu>,
    params: &Params<f32>,
    batch: &Batch,
) -> Result<StepOutput<f32>> {
    batch.validate(&params.config)?;
    match gpu {
        None => Ok(crate::cpu::step(params, batch)),
        Some(gpu) => {
            let kernels = gpu.kernels()?;
            let shape = (batch.batch, batch.steps);
            let options = crate::gpu::StepOptions::default();
            let step = gpu.scoped("allocating the step's buffers", || {
                crate::gpu::ModelStep::new(gpu, &kernels, params.config, shape, options)
            })??;
            step.run_and_read(gpu, params, batch)
        }
    }
}
