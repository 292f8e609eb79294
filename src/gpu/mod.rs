//! The GPU path. [`Gpu`] opens an adapter and its device; [`GpuTrainer`] trains a model with
//! every state resident on the device, on chunks of streams or on whole sequences of their own
//! lengths; [`ModelStep`] is one training step as the trainer and `check` run it, stacked
//! layers of any cell in one or both directions, the Elman model included ([`GpuStack`]). Inside
//! (private): the compute pipelines, the dispatch planning, the recurrence split by units and
//! each cell's kernels; the kernels themselves live in `shaders/`, one file per family.

pub(crate) mod cells;
pub(crate) mod context;
pub(crate) mod kernel;
pub(crate) mod kernels;
pub(crate) mod model_step;
pub(crate) mod optimizer;
pub(crate) mod phase;
pub(crate) mod plan;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod probe;
pub(crate) mod product;
pub(crate) mod recurrence;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod resident;
pub(crate) mod sequence_steps;
pub(crate) mod sequence_trainer;
pub(crate) mod stack;
pub(crate) mod stack_buffers;
pub(crate) mod stack_head;
pub(crate) mod stack_plan;
pub(crate) mod submit;
pub(crate) mod train_step;
pub(crate) mod trainer;
pub(crate) mod variant;

pub use context::{AdapterChoice, Gpu, Meter, MeterReading, describe};
#[cfg(not(target_arch = "wasm32"))]
pub use context::{info_report, list_adapters};
pub use kernels::{Kernels, Products};
pub use model_step::{ModelStep, StepOptions};
pub use phase::Phase;
#[cfg(not(target_arch = "wasm32"))]
pub use probe::MatmulProbe;
pub use recurrence::{Recurrence, Tiles};
#[cfg(not(target_arch = "wasm32"))]
pub use resident::{barrier_round, dispatch_gap, probe as probe_resident};
pub use stack::GpuStack;
pub use trainer::{Counters, GpuTrainer, StepStats, TrainerShape};
pub use variant::Variant;
