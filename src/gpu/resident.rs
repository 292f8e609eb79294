//! The co-residency probe (`shaders/resident.wgsl`): the most workgroups of the recurrence's size
//! that an adapter was seen running at once, which bounds the grid barrier's dispatches; and the
//! microbenchmarks of `unroll bench --sync` (the gap between dependent dispatches, a grid
//! barrier's round).

use crate::error::Result;
use crate::gpu::context::Gpu;
use crate::gpu::kernel::{Access, Kernel};
use std::time::Instant;

/// The largest dispatch the probe tries (workgroups).
const MOST: usize = 4096;

/// Polls a probing workgroup makes before it gives up: on a software adapter as many as Mesa's
/// loop limit lets one invocation make; on a GPU many more (bounds, not timed on one yet).
fn spin(device_type: wgpu::DeviceType) -> f64 {
    match device_type {
        wgpu::DeviceType::Cpu => 30_000.0,
        _ => 1_048_576.0,
    }
}

/// One entry point of resident.wgsl with its counters, and runs of it.
struct Probe<'g> {
    gpu: &'g Gpu,
    kernel: Kernel,
    counter: wgpu::Buffer,
    group: wgpu::BindGroup,
}

impl<'g> Probe<'g> {
    fn new(gpu: &'g Gpu, entry: &'static str, rounds: usize) -> Self {
        let device = &gpu.device;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("resident.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/resident.wgsl").into()),
        });
        let constants = [
            ("SPIN", spin(gpu.info.device_type)),
            ("ROUNDS", rounds as f64),
        ];
        let layout = [("counter", Access::ReadWrite)];
        let kernel = Kernel::new(device, &module, entry, &layout, &constants);
        let counter = crate::gpu::plan::storage(gpu, "resident counter", 3);
        let group = kernel.bind(device, &[counter.as_entire_binding()]);
        Self {
            gpu,
            kernel,
            counter,
            group,
        }
    }

    /// `dispatches` dispatches of `groups` workgroups in one pass from zeroed counters; returns
    /// the counters and the seconds from submission to the end.
    fn run(&self, groups: usize, dispatches: usize) -> Result<(Vec<u32>, f64)> {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&self.counter, 0, None);
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.kernel.pipeline);
            pass.set_bind_group(0, &self.group, &[]);
            for _ in 0..dispatches {
                pass.dispatch_workgroups(groups as u32, 1, 1);
            }
        }
        let t0 = Instant::now();
        self.gpu.submit(encoder);
        let v = pollster::block_on(self.gpu.read_f32_async(&self.counter, 0, 3))?;
        let secs = t0.elapsed().as_secs_f64();
        Ok((v.iter().map(|x| x.to_bits()).collect(), secs))
    }
}

/// N = 1, 2, 4, … up to 4096: the largest N whose workgroups all saw each other arrive (0
/// where even one workgroup failed, or the device reported an error).
pub fn probe(gpu: &Gpu) -> usize {
    let probe = Probe::new(gpu, "resident", 1);
    let mut best = 0;
    let mut n = 1;
    while n <= MOST {
        match probe.run(n, 1) {
            Ok((v, _)) if v[1] == 0 => best = n,
            _ => break,
        }
        n *= 2;
    }
    best
}

/// Microseconds between two dependent dispatches: `n` one-workgroup dispatches that write one
/// buffer, against one, in the same pass (the median of `repeats`).
pub fn dispatch_gap(gpu: &Gpu, n: usize, repeats: usize) -> Result<f64> {
    let probe = Probe::new(gpu, "chain", 1);
    let mut gaps = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let (_, one) = probe.run(1, 1)?;
        let (v, many) = probe.run(1, n)?;
        debug_assert_eq!(v[2] as usize, n);
        gaps.push((many - one) / (n - 1).max(1) as f64 * 1e6);
    }
    Ok(crate::median::median(&mut gaps))
}

/// Microseconds per grid-barrier round with `groups` workgroups (`rounds` rounds against one, the
/// median of `repeats`), or None where the workgroups did not all run at once.
pub fn barrier_round(
    gpu: &Gpu,
    groups: usize,
    rounds: usize,
    repeats: usize,
) -> Result<Option<f64>> {
    let one = Probe::new(gpu, "barriers", 1);
    let many = Probe::new(gpu, "barriers", rounds);
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let (a, t1) = one.run(groups, 1)?;
        let (b, tn) = many.run(groups, 1)?;
        if a[1] != 0 || b[1] != 0 {
            return Ok(None);
        }
        times.push((tn - t1) / (rounds - 1).max(1) as f64 * 1e6);
    }
    Ok(Some(crate::median::median(&mut times)))
}
