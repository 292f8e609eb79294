//! The GPU path. [`Gpu`] opens an adapter and its device; [`GpuTrainer`] trains a model with
//! every state resident on the device; [`ModelStep`] is one training step as the trainer and
//! `check` run it: the fused step of one Elman layer ([`GpuStep`]) or the stacked step of any
//! cell ([`GpuStack`]). Inside (private): the compute pipelines, the dispatch planning, and each
//! cell's kernels; the kernels themselves live in `shaders/`, one file per family.

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
pub(crate) mod stack;
pub(crate) mod stack_buffers;
pub(crate) mod stack_plan;
pub(crate) mod step;
pub(crate) mod step_plan;
pub(crate) mod trainer;

pub use context::{AdapterChoice, Gpu, Meter, MeterReading, describe};
#[cfg(not(target_arch = "wasm32"))]
pub use context::{info_report, list_adapters};
pub use kernels::Kernels;
pub use model_step::{ModelStep, StepOptions};
#[cfg(not(target_arch = "wasm32"))]
pub use probe::MatmulProbe;
pub use stack::GpuStack;
pub use step::{GpuStep, PERSISTENT_MAX_ELEMENTS, Phase, Recurrence};
pub use trainer::{Counters, GpuTrainer, StepStats, TrainerShape};
