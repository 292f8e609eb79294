//! Which device runs a command: `--device` (the GPU, or the CPU reference) and the flags that pick
//! the GPU adapter and how its recurrences are ordered.

use clap::{Args, ValueEnum};
use unroll::gpu::{AdapterChoice, Recurrence};

#[derive(Args, Clone)]
pub(crate) struct AdapterArgs {
    /// Backend: vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else any).
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Use the adapter whose name contains this (default: WGPU_ADAPTER_NAME, else wgpu's choice).
    #[arg(long)]
    pub(crate) adapter: Option<String>,
    /// Use the adapter of this index in `unroll info`'s list (two adapters may share a name).
    #[arg(long)]
    pub(crate) adapter_index: Option<usize>,
    /// How the GPU orders the timesteps of a recurrence: one dispatch per timestep, or a grid
    /// barrier inside one dispatch, with a fallback to ordered where the adapter does not run
    /// every workgroup at once (default: chosen per shape and adapter).
    #[arg(long, value_enum)]
    pub(crate) recurrence: Option<Recurrence>,
}

impl AdapterArgs {
    pub(crate) fn choice(&self) -> AdapterChoice {
        AdapterChoice {
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
            index: self.adapter_index,
            local_rank: None,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Device {
    Gpu,
    Cpu,
}
