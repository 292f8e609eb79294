//! The optimizer on the GPU (shaders/optimizer.wgsl): the gradient's norm in two fixed-order
//! stages, clipping, and the update of SGD, Adagrad or Adam, over the flat parameter buffer of a
//! training step. The CPU's twin is `crate::optim`.

use crate::gpu::context::Gpu;
use crate::gpu::kernel::{Access, Kernel};
use crate::gpu::model_step::ModelStep;
use crate::gpu::plan::{Dispatch, grid_1d, storage, uniform};
use crate::optim::{OptimizerConfig, OptimizerKind};
use bytemuck::{Pod, Zeroable};

/// The uniform of optimizer.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct OptimParams {
    pub n: u32,
    pub kind: u32,
    pub lr: f32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub clip: f32,
    pub decay: f32,
    pub decay_every: u32,
    pub groups: u32,
    pub _pad: u32,
}

impl OptimParams {
    /// The uniform for `config` over `n` parameters, the norm's first stage `groups` wide.
    fn new(config: &OptimizerConfig, n: usize, groups: usize) -> Self {
        Self {
            n: n as u32,
            kind: match config.kind {
                OptimizerKind::Sgd => 0,
                OptimizerKind::Adagrad => 1,
                OptimizerKind::Adam => 2,
            },
            lr: config.lr,
            momentum: config.momentum,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            clip: config.clip,
            decay: config.decay,
            decay_every: config.decay_every,
            groups: groups as u32,
            _pad: 0,
        }
    }
}

/// The optimizer on the GPU: its moments and state, the read-back buffer of the step's stats,
/// and its three dispatches (the gradient norm's partial sums, their total, the update).
pub(crate) struct OnGpu {
    pub(crate) m: wgpu::Buffer,
    pub(crate) v: wgpu::Buffer,
    /// The step t and the bias corrections 1 − β1^t, 1 − β2^t (`OptimState`).
    pub(crate) state: wgpu::Buffer,
    /// Where a reported step's loss and gradient norm are copied to be read back.
    pub(crate) staging: wgpu::Buffer,
    pub(crate) dispatches: Vec<Dispatch>,
    /// Bytes of the buffers above (and the norm's partial sums and the uniform).
    pub(crate) bytes: u64,
}

impl OnGpu {
    /// Builds optimizer.wgsl's pipelines over the training step's parameters and gradients.
    pub(crate) fn new(gpu: &Gpu, train: &ModelStep, optim: &OptimizerConfig) -> Self {
        let n = train.config().num_params();
        let m = storage(gpu, "m", n);
        let v = storage(gpu, "v", n);
        let state = storage(gpu, "optimizer state", 4);
        // The norm's first stage: a workgroup per 4096 parameters, at most 256.
        let norm_groups = n.div_ceil(4096).clamp(1, 256);
        let sums = storage(gpu, "norm partial sums", norm_groups);
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("stats read-back"),
            size: 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let module = gpu
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("optimizer.wgsl"),
                source: wgpu::ShaderSource::Wgsl(
                    concat!(
                        include_str!("../../shaders/grid.wgsl"),
                        include_str!("../../shaders/optimizer.wgsl")
                    )
                    .into(),
                ),
            });
        let p = OptimParams::new(optim, n, norm_groups);
        let u = uniform(gpu, "optimizer params", &p);
        let bindings = [
            u.as_entire_binding(),
            train.grads().as_entire_binding(),
            train.params().as_entire_binding(),
            m.as_entire_binding(),
            v.as_entire_binding(),
            train.stats().as_entire_binding(),
            state.as_entire_binding(),
            sums.as_entire_binding(),
        ];
        let dispatch = |name: &'static str, groups| {
            let k = kernel(gpu, &module, name);
            Dispatch {
                pipeline: k.pipeline.clone(),
                bind_group: k.bind(&gpu.device, &bindings),
                offsets: vec![],
                meter: gpu.meter.clone(),
                groups,
            }
        };
        let dispatches = vec![
            dispatch("grad_norm_partial", (norm_groups as u32, 1, 1)),
            dispatch("grad_norm", (1, 1, 1)),
            dispatch("update", grid_1d(n)),
        ];
        let bytes = [&m, &v, &state, &sums, &staging, &u]
            .iter()
            .map(|b| b.size())
            .sum();
        Self {
            m,
            v,
            state,
            staging,
            dispatches,
            bytes,
        }
    }
}

/// One entry point of optimizer.wgsl; the three share their bindings.
fn kernel(gpu: &Gpu, module: &wgpu::ShaderModule, name: &'static str) -> Kernel {
    use Access::*;
    let bindings = [
        ("p", Uniform),
        ("grads", Read),
        ("params", ReadWrite),
        ("m", ReadWrite),
        ("v", ReadWrite),
        ("stats", ReadWrite),
        ("state", ReadWrite),
        ("sums", ReadWrite),
    ];
    Kernel::new(&gpu.device, module, name, &bindings, &[])
}
