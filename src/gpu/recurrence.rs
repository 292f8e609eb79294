//! How the fused Elman step dispatches its two recurrences: one product per timestep, or one
//! persistent kernel for all of them (`shaders/rnn_sequence.wgsl`), and the rules that choose.

use crate::gpu::plan::LOOP_BUDGET;

/// How the two recurrences are dispatched.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Recurrence {
    /// One fused matmul dispatch per timestep (matmul.wgsl), all in one compute pass.
    PerStep,
    /// One dispatch for all timesteps (rnn_sequence.wgsl): each workgroup owns a block of batch
    /// rows and loops over t with workgroup barriers.
    Persistent,
}

/// The most batch-row elements (rows per workgroup · H) the persistent kernel keeps in
/// workgroup memory (`HALF` in rnn_sequence.wgsl).
pub const PERSISTENT_MAX_ELEMENTS: usize = 2048;

impl Recurrence {
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
