//! How a step dispatches its recurrences: one product and one pointwise kernel per timestep, or
//! one persistent kernel for all of them (`shaders/rnn_sequence.wgsl` for the fused Elman step,
//! `shaders/cell_sequence.wgsl` for stacked layers of any cell), and the rules that choose.

use crate::error::{Error, Result};
use crate::gpu::cells::{SEQUENCE_ROW_ELEMENTS, SEQUENCE_STORAGE_BUFFERS};
use crate::gpu::context::Gpu;
use crate::gpu::plan::LOOP_BUDGET;

/// How the two recurrences are dispatched.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Recurrence {
    /// Dispatches per timestep, all in one compute pass: one fused product (matmul.wgsl) for the
    /// Elman step, a product and the cell's kernel for stacked layers.
    PerStep,
    /// One dispatch for all timesteps (rnn_sequence.wgsl, cell_sequence.wgsl): each workgroup
    /// owns a block of batch rows and loops over t with workgroup barriers.
    Persistent,
}

/// The most batch-row elements (rows per workgroup · H) the persistent kernel keeps in
/// workgroup memory (`HALF` in rnn_sequence.wgsl).
pub const PERSISTENT_MAX_ELEMENTS: usize = 2048;

impl Recurrence {
    /// The flag's spelling: `per-step` or `persistent`.
    pub fn name(self) -> &'static str {
        match self {
            Recurrence::PerStep => "per-step",
            Recurrence::Persistent => "persistent",
        }
    }

    /// The strategy for a shape on an adapter, by rules measured (README, Performance):
    /// - on a hardware GPU (an NVIDIA H200 through Vulkan) the persistent kernel was 3 to 5 times
    ///   faster at every configuration benchmarked, H from 100 to 1024 and B from 1 to 64: a
    ///   dispatch and the barrier after it cost more than a timestep's work;
    /// - on a software adapter (llvmpipe) a workgroup runs on one CPU thread, so the persistent
    ///   kernel wins only while the work is small: up to B·H = 512 it did (H=100 B=1, H=128 B=4,
    ///   H=64 B=8), from B·H = 2048 on the per-step products, spread over every core, did.
    ///
    /// The persistent kernel needs H ≤ 2048 (its workgroup memory).
    pub fn auto(device_type: wgpu::DeviceType, batch: usize, hidden: usize) -> Self {
        let h4 = hidden.next_multiple_of(4);
        let persistent = match device_type {
            wgpu::DeviceType::Cpu => batch * h4 <= 1024,
            _ => h4 <= PERSISTENT_MAX_ELEMENTS,
        };
        if persistent {
            Recurrence::Persistent
        } else {
            Recurrence::PerStep
        }
    }

    /// The persistent kernel's dispatches: [t_begin, t_end) ranges that cover 0..T, each short
    /// enough that one invocation's loops stay under [`LOOP_BUDGET`]. Per timestep an invocation
    /// loops over its quads (four columns of a row), and for each over H4/4 vec4s and four columns.
    pub(crate) fn time_chunks(
        rows_per_group: usize,
        h4: usize,
        steps: usize,
    ) -> Vec<(usize, usize)> {
        let q4 = h4 / 4;
        let quads_per_invocation = (rows_per_group * q4).div_ceil(256);
        let per_step = 2 + quads_per_invocation * (q4 + 6);
        // Clearing and loading the state: at most 2048/256 + 1024/256 + 2 iterations.
        let per_chunk = ((LOOP_BUDGET - 64) / per_step).max(1);
        (0..steps)
            .step_by(per_chunk)
            .map(|t| (t, (t + per_chunk).min(steps)))
            .collect()
    }

    /// Batch rows per workgroup of the persistent kernel: enough to give its 256 invocations work,
    /// few enough to fit the workgroup memory and to leave several workgroups.
    pub(crate) fn rows_per_group(batch: usize, hidden: usize) -> usize {
        let fit = (PERSISTENT_MAX_ELEMENTS / hidden).max(1);
        256usize.div_ceil(hidden).clamp(1, fit).min(batch)
    }
}

/// The persistent recurrence of stacked layers (`shaders/cell_sequence.wgsl`): where it runs,
/// its workgroups and its chunks of time.
impl Recurrence {
    /// The strategy for a stacked model's layers: `asked` if it can run, else an error that says
    /// why. When nothing is asked: the persistent kernel where it fits on a hardware GPU (3.4 to
    /// 4.7 times faster than the per-step kernels on an H100 at every size measured); the
    /// per-step kernels on a software adapter, where a workgroup runs on one CPU thread (on
    /// lavapipe at H = 128, B = 32, T = 64 the persistent kernel took 1.5 to 1.7 times as long
    /// for a GRU or an LSTM; at H = 32, B = 4, T = 16 the two were about even; README, Cells).
    pub(crate) fn for_cells(gpu: &Gpu, asked: Option<Recurrence>, gh: usize) -> Result<Self> {
        let unfit = Self::cells_unfit(&gpu.limits(), gh);
        match (asked, unfit) {
            (Some(Recurrence::Persistent), Some(why)) => Err(Error::config(
                format!("the persistent recurrence cannot run this model here: {why}"),
                "use --recurrence per-step, or leave --recurrence out to have it chosen",
            )),
            (Some(r), _) => Ok(r),
            (None, Some(_)) => Ok(Recurrence::PerStep),
            (None, None) if gpu.info.device_type == wgpu::DeviceType::Cpu => {
                Ok(Recurrence::PerStep)
            }
            (None, None) => Ok(Recurrence::Persistent),
        }
    }

    /// Why the persistent kernel cannot run layers of G·H gate columns on a device, if it cannot.
    /// (Within these bounds one timestep takes an invocation at most about 4,200 loop
    /// iterations, far under a software adapter's [`LOOP_BUDGET`]: see [`Self::cell_chunks`].)
    fn cells_unfit(limits: &wgpu::Limits, gh: usize) -> Option<String> {
        if limits.max_storage_buffers_per_shader_stage < SEQUENCE_STORAGE_BUFFERS {
            return Some(format!(
                "it binds {SEQUENCE_STORAGE_BUFFERS} storage buffers, the adapter allows {}",
                limits.max_storage_buffers_per_shader_stage
            ));
        }
        if gh.next_multiple_of(4) > SEQUENCE_ROW_ELEMENTS {
            return Some(format!(
                "a row of gates (G·H = {gh}) is wider than its workgroup memory holds ({SEQUENCE_ROW_ELEMENTS})"
            ));
        }
        None
    }

    /// Batch rows per workgroup: as many as keep each invocation to one group of four columns of
    /// a product per timestep (the product's rows G4/4 groups wide), within the workgroup memory
    /// (rows of G4 elements). More rows would make invocations loop; fewer would leave
    /// invocations idle and spread the batch over more workgroups.
    pub(crate) fn cell_rows_per_group(batch: usize, gh: usize) -> usize {
        let g4 = gh.next_multiple_of(4);
        let fit = (SEQUENCE_ROW_ELEMENTS / g4).max(1);
        (256 / (g4 / 4)).clamp(1, fit).min(batch)
    }

    /// Loop iterations of one invocation per timestep, the larger of the two passes: per unit
    /// (b, j) the cell (an LSTM's backward loops over its four gates), per four product columns
    /// a sum over H4/4 (forward) or G4/4 (backward) vec4s and the four stores, and the rows' copy
    /// into workgroup memory.
    fn cell_iterations(rows: usize, hidden: usize, gh: usize) -> usize {
        let (h4, g4) = (hidden.next_multiple_of(4), gh.next_multiple_of(4));
        let units = (rows * hidden).div_ceil(256);
        let groups = |width: usize| (rows * width / 4).div_ceil(256);
        let forward = 1 + (rows * h4).div_ceil(256) + groups(g4) * (h4 / 4 + 5) + units;
        let backward = 1 + units * 5 + (rows * g4).div_ceil(256) + groups(h4) * (g4 / 4 + 5);
        forward.max(backward)
    }

    /// The persistent kernel's dispatches per layer and pass: one for all T on a hardware GPU;
    /// on a software adapter (Mesa ends an invocation's loops after 65,535 iterations,
    /// [`LOOP_BUDGET`]) [t_begin, t_end) ranges that keep each under the budget.
    pub(crate) fn cell_chunks(
        device_type: wgpu::DeviceType,
        rows: usize,
        hidden: usize,
        gh: usize,
        steps: usize,
    ) -> Vec<(usize, usize)> {
        let per_step = Self::cell_iterations(rows, hidden, gh);
        debug_assert!(
            per_step <= LOOP_BUDGET - 64,
            "G·H within SEQUENCE_ROW_ELEMENTS"
        );
        let per_chunk = match device_type {
            wgpu::DeviceType::Cpu => ((LOOP_BUDGET - 64) / per_step).max(1),
            _ => steps,
        };
        (0..steps)
            .step_by(per_chunk)
            .map(|t| (t, (t + per_chunk).min(steps)))
            .collect()
    }
}
