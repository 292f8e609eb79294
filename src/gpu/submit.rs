//! How a step's submission runs around its compute pass: the carried state copied in and out
//! of the step's buffers (a whole run's, or one micro-batch's slot), and the grid recurrence's
//! fallback (the step run again, ordered, before what follows it).

use crate::error::Result;
use crate::gpu::context::Gpu;
use crate::gpu::model_step::ModelStep;
use crate::gpu::recurrence::Recurrence;

/// Ends a step's pass: where the step runs with grid barriers, submits `encoder`, waits for it,
/// and where a barrier failed (the adapter did not run every workgroup at once) runs the step
/// again, ordered, from the same state (a step reads h_0 and never writes it). Returns the encoder
/// that the rest of the step (the update, the carried state's copy) goes into. Ordered steps
/// return `encoder` itself: their step stays one submission.
pub(crate) async fn settle(
    gpu: &Gpu,
    step: &ModelStep,
    encoder: wgpu::CommandEncoder,
    forward_only: bool,
) -> Result<wgpu::CommandEncoder> {
    if step.recurrence() != Recurrence::Grid {
        return Ok(encoder);
    }
    gpu.submit(encoder);
    if step.barrier_failed(gpu).await? {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            if forward_only {
                step.record_forward(&mut pass);
            } else {
                step.record(&mut pass);
            }
        }
        gpu.submit(encoder);
    }
    Ok(gpu.device.create_command_encoder(&Default::default()))
}

/// (byte offset, bytes) of micro-batch `slot`'s blocks in a carried state of `slots`
/// micro-batches of `step`'s B streams, in the order of `step.carried()`
/// ([`crate::shares::carry_ranges`] places them; one slot of one is the whole carry).
pub(crate) fn slot_blocks(step: &ModelStep, (slot, slots): (usize, usize)) -> Vec<(u64, u64)> {
    crate::shares::carry_ranges(&step.config(), step.shape().0, slots, slot)
        .into_iter()
        .map(|r| (r.start as u64 * 4, r.len() as u64 * 4))
        .collect()
}

/// Copies micro-batch `at` = (slot, slots) of the carried state into a step's initial states
/// (h_0, c_0 of every layer).
pub(crate) fn load_carry(
    encoder: &mut wgpu::CommandEncoder,
    carry: &wgpu::Buffer,
    step: &ModelStep,
    at: (usize, usize),
) {
    for (b, (offset, bytes)) in step.carried().iter().zip(slot_blocks(step, at)) {
        encoder.copy_buffer_to_buffer(carry, offset, b.buffer, b.at_start, bytes);
    }
}

/// Copies a step's final states (h_T, c_T of every layer) into micro-batch `at` = (slot, slots)
/// of the carried state.
pub(crate) fn store_carry(
    encoder: &mut wgpu::CommandEncoder,
    step: &ModelStep,
    carry: &wgpu::Buffer,
    at: (usize, usize),
) {
    for (b, (offset, bytes)) in step.carried().iter().zip(slot_blocks(step, at)) {
        encoder.copy_buffer_to_buffer(b.buffer, b.at_end, carry, offset, bytes);
    }
}
