//! The GPU path: adapter and device ([`context`]), the compute pipelines ([`kernels`]), how
//! dispatches are planned ([`plan`]) and the training step built from them ([`step`]). Kernels live in `shaders/`, one file per family.

pub mod context;
pub mod kernels;
pub mod plan;
pub mod step;
pub mod trainer;

pub use context::{AdapterChoice, Gpu, describe, info_report, list_adapters};
pub use kernels::Kernels;
pub use step::{GpuStep, MatmulProbe, Phase, Recurrence};
pub use trainer::{Counters, GpuTrainer, StepStats, TrainerShape};
