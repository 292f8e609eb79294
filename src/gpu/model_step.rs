//! The GPU training step of any model, as the trainer and `check` see it: the stacked step
//! ([`GpuStack`]) of every cell and depth, the Elman model (one tanh layer) included. Its
//! parameters and gradients are in the table's layout, which the optimizer and the checkpoint
//! share.

use crate::error::{Error, Result};
use crate::gpu::context::Gpu;
use crate::gpu::kernels::Kernels;
use crate::gpu::plan::Recorded;
use crate::gpu::recurrence::Recurrence;
use crate::gpu::stack::GpuStack;
pub use crate::gpu::stack::StepOptions;
use crate::model::{Batch, Inputs, ModelConfig, Params, StepOutput, Targets};

/// A model's training step on the GPU.
pub struct ModelStep {
    /// The stacked step.
    pub stack: Box<GpuStack>,
}

/// Where one block of the carried state lives in a step's buffers: copied from the carry
/// buffer to `at_start` before a step, and from `at_end` back after it.
pub struct CarriedBlock<'a> {
    /// hs or cs.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of h_0 (c_0) of the block.
    pub at_start: u64,
    /// Byte offset of h_T (c_T).
    pub at_end: u64,
    /// Byte offset in the carry buffer, (h of every layer, then c of every layer).
    pub in_carry: u64,
    /// B·H·4.
    pub bytes: u64,
}

impl ModelStep {
    /// The step for the model.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        config: ModelConfig,
        (batch, steps): (usize, usize),
        options: StepOptions,
    ) -> Result<Self> {
        let stack = GpuStack::with_options(gpu, kernels, config, (batch, steps), options)?;
        Ok(Self {
            stack: Box::new(stack),
        })
    }

    /// Checks, before anything is allocated, that the model and (B, T) make a step and that every
    /// buffer of the step [`ModelStep::new`] would build fits the adapter: the error names the
    /// limit, the bytes, and what to change.
    pub fn check_fits(
        gpu: &Gpu,
        config: ModelConfig,
        (batch, steps): (usize, usize),
        recurrence: Option<Recurrence>,
    ) -> Result<()> {
        GpuStack::check_fits(gpu, config, (batch, steps), (recurrence, None, None)).map(|_| ())
    }

    /// The model.
    pub fn config(&self) -> ModelConfig {
        self.stack.config
    }

    /// (B, T).
    pub fn shape(&self) -> (usize, usize) {
        (self.stack.batch, self.stack.steps)
    }

    /// How the recurrences are ordered now (ordered once a grid barrier has failed).
    pub fn recurrence(&self) -> Recurrence {
        self.stack.running()
    }

    /// The options of another step of this model that runs as this one does (its ordering now,
    /// its loads and products; the tiles are chosen for the other step's shape) and reads this
    /// one's parameters.
    pub fn sibling_options(&self) -> StepOptions {
        StepOptions {
            recurrence: Some(self.recurrence()),
            subgroups: Some(self.stack.subgroups()),
            products: self.stack.products(),
            params: Some(self.params().clone()),
            ..Default::default()
        }
    }

    /// Whether the step last run must run again, ordered: see [`GpuStack::barrier_failed`].
    pub async fn barrier_failed(&self, gpu: &Gpu) -> Result<bool> {
        self.stack.barrier_failed(gpu).await
    }

    /// θ, (P).
    pub fn params(&self) -> &wgpu::Buffer {
        &self.stack.buffers.params
    }

    /// ∂L/∂θ, (P).
    pub fn grads(&self) -> &wgpu::Buffer {
        &self.stack.buffers.grads
    }

    /// The update count that keys the dropout masks, where the step has dropout.
    pub fn dropout_counter(&self) -> Option<&wgpu::Buffer> {
        (self.stack.has_dropout()).then_some(&self.stack.buffers.counter)
    }

    /// [the mean loss, the gradient norm].
    pub fn stats(&self) -> &wgpu::Buffer {
        &self.stack.buffers.stats
    }

    /// The blocks of the carried state: every block's h, then (LSTM) every block's c.
    pub fn carried(&self) -> Vec<CarriedBlock<'_>> {
        let (nb, nt) = self.shape();
        let c = self.config();
        let bytes = (nb * c.hidden * 4) as u64;
        let per_layer = (nt as u64 + 1) * bytes;
        let b = &self.stack.buffers;
        let (hs, cs) = (&b.hs, c.cell.has_cell_state().then_some(&b.cs));
        let mut blocks = Vec::new();
        let n = (c.directions() * c.layers) as u64;
        for (k, buffer) in std::iter::once(hs).chain(cs).enumerate() {
            for l in 0..n {
                blocks.push(CarriedBlock {
                    buffer,
                    at_start: l * per_layer,
                    at_end: l * per_layer + nt as u64 * bytes,
                    in_carry: (k as u64 * n + l) * bytes,
                    bytes,
                });
            }
        }
        blocks
    }

    /// Uploads the parameters.
    pub fn write_params(&self, gpu: &Gpu, params: &Params<f32>) -> Result<()> {
        self.check_model(params)?;
        self.stack.write_params(gpu, &params.data)
    }

    /// Refuses parameters of another model than the step's.
    fn check_model(&self, params: &Params<f32>) -> Result<()> {
        if params.config == self.config() {
            return Ok(());
        }
        Err(Error::config(
            format!(
                "parameters of a model of {} given to a step built for {}",
                params.config,
                self.config()
            ),
            "build the step for the model's sizes",
        ))
    }

    /// Uploads inputs and targets alone (checked against the model by the caller). Returns the
    /// bytes uploaded.
    pub fn write_data(&self, gpu: &Gpu, inputs: &Inputs, targets: &Targets) -> u64 {
        self.stack.write_data(gpu, inputs, targets)
    }

    /// Runs one step and reads back everything it computed (checks and tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_and_read(
        &self,
        gpu: &Gpu,
        params: &Params<f32>,
        batch: &Batch,
    ) -> Result<StepOutput<f32>> {
        pollster::block_on(self.run_and_read_async(gpu, params, batch))
    }

    /// [`ModelStep::run_and_read`] as a future.
    pub async fn run_and_read_async(
        &self,
        gpu: &Gpu,
        params: &Params<f32>,
        batch: &Batch,
    ) -> Result<StepOutput<f32>> {
        self.check_model(params)?;
        self.stack
            .run_and_read_async(gpu, &params.data, batch)
            .await
    }

    /// The recorded phases.
    pub(crate) fn phases(&self) -> &Recorded {
        self.stack.phases()
    }

    /// Records the whole step.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.phases().record(pass);
    }

    /// Records the forward pass and the loss alone (evaluation).
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.phases().record_forward(pass);
    }

    /// Dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.phases().dispatches()
    }

    /// Bytes of GPU memory the step's buffers hold.
    pub fn memory_bytes(&self) -> u64 {
        self.stack.memory_bytes()
    }
}
