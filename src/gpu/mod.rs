//! The GPU path: adapter and device ([`context`]), the compute pipelines ([`kernels`]), how
//! dispatches are planned ([`plan`]), the training step of one Elman layer ([`step`]) and of
//! stacked layers of any cell ([`stack`], each cell's kernels in [`cells`]). Kernels live in
//! `shaders/`, one file per family.

pub mod cells;
pub mod context;
pub mod kernels;
pub mod model_step;
pub mod phase;
pub mod plan;
pub mod probe;
pub mod product;
pub mod recurrence;
pub mod stack;
pub mod stack_buffers;
pub mod step;
pub mod step_plan;
pub mod trainer;

pub use context::{AdapterChoice, Gpu, describe, info_report, list_adapters};
pub use kernels::Kernels;
pub use model_step::ModelStep;
pub use probe::MatmulProbe;
pub use stack::GpuStack;
pub use step::{GpuStep, Phase, Recurrence};
pub use trainer::{Counters, GpuTrainer, StepStats, TrainerShape};
