//! The compute pipelines, one per WGSL entry point, each with its bind group layout declared
//! here binding by binding (the names match the WGSL variables). Built once per device.

use bytemuck::{Pod, Zeroable};

/// How a binding is used.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// `var<uniform>`.
    Uniform,
    /// `var<uniform>` bound with a dynamic offset (one entry per timestep).
    UniformDynamic,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A pipeline and the layout of its one bind group.
pub struct Kernel {
    /// The entry point's name, for labels and errors.
    pub name: &'static str,
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// The layout of `@group(0)`.
    pub layout: wgpu::BindGroupLayout,
}

impl Kernel {
    pub(crate) fn new(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        name: &'static str,
        bindings: &[(&str, Access)],
    ) -> Self {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, &(_, access))| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match access {
                    Access::Uniform | Access::UniformDynamic => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: matches!(access, Access::UniformDynamic),
                        min_binding_size: None,
                    },
                    Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: matches!(access, Access::Read),
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let label: String = format!(
            "{name}({})",
            bindings
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(name),
            compilation_options: Default::default(),
            cache: None,
        });
        Self {
            name,
            pipeline,
            layout,
        }
    }

    /// A bind group of this kernel's layout over `buffers`, in binding order.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.layout,
            entries: &entries,
        })
    }
}

/// Every kernel of the training step.
pub struct Kernels {
    /// matmul.wgsl
    pub matmul: Kernel,
    /// rnn_forward.wgsl
    pub forward_step: Kernel,
    /// rnn_backward.wgsl
    pub backward_step: Kernel,
    /// embedding.wgsl, the one-hot input projection
    pub gather: Kernel,
    /// embedding.wgsl, dU for one-hot inputs
    pub scatter: Kernel,
    /// loss.wgsl, tokens
    pub softmax_xent: Kernel,
    /// loss.wgsl, dense
    pub squared_error: Kernel,
    /// reduce.wgsl
    pub column_sum: Kernel,
}

fn module(device: &wgpu::Device, name: &str, source: &str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    })
}

impl Kernels {
    /// Compiles every shader and builds every pipeline.
    pub fn new(device: &wgpu::Device) -> Self {
        use Access::*;
        let matmul = module(
            device,
            "matmul.wgsl",
            include_str!("../../shaders/matmul.wgsl"),
        );
        let fwd = module(
            device,
            "rnn_forward.wgsl",
            include_str!("../../shaders/rnn_forward.wgsl"),
        );
        let bwd = module(
            device,
            "rnn_backward.wgsl",
            include_str!("../../shaders/rnn_backward.wgsl"),
        );
        let emb = module(
            device,
            "embedding.wgsl",
            include_str!("../../shaders/embedding.wgsl"),
        );
        let loss = module(device, "loss.wgsl", include_str!("../../shaders/loss.wgsl"));
        let reduce = module(
            device,
            "reduce.wgsl",
            include_str!("../../shaders/reduce.wgsl"),
        );
        let embedding_bindings = [
            ("p", Uniform),
            ("x", Read),
            ("src", Read),
            ("out", ReadWrite),
        ];
        Self {
            matmul: Kernel::new(
                device,
                &matmul,
                "matmul",
                &[
                    ("p", Uniform),
                    ("a", Read),
                    ("b", Read),
                    ("bias", Read),
                    ("c", ReadWrite),
                ],
            ),
            forward_step: Kernel::new(
                device,
                &fwd,
                "forward_step",
                &[
                    ("p", UniformDynamic),
                    ("pre", Read),
                    ("params", Read),
                    ("hs", ReadWrite),
                ],
            ),
            backward_step: Kernel::new(
                device,
                &bwd,
                "backward_step",
                &[
                    ("p", UniformDynamic),
                    ("dh", Read),
                    ("params", Read),
                    ("hs", Read),
                    ("da", ReadWrite),
                ],
            ),
            gather: Kernel::new(device, &emb, "gather", &embedding_bindings),
            scatter: Kernel::new(device, &emb, "scatter", &embedding_bindings),
            softmax_xent: Kernel::new(
                device,
                &loss,
                "softmax_xent",
                &[
                    ("p", Uniform),
                    ("y", Read),
                    ("token_targets", Read),
                    ("dense_targets", Read),
                    ("dy", ReadWrite),
                    ("row_loss", ReadWrite),
                ],
            ),
            squared_error: Kernel::new(
                device,
                &loss,
                "squared_error",
                &[
                    ("p", Uniform),
                    ("y", Read),
                    ("token_targets", Read),
                    ("dense_targets", Read),
                    ("dy", ReadWrite),
                    ("row_loss", ReadWrite),
                ],
            ),
            column_sum: Kernel::new(
                device,
                &reduce,
                "column_sum",
                &[("p", Uniform), ("m", Read), ("out", ReadWrite)],
            ),
        }
    }
}

/// The uniform of matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub a_offset: u32,
    pub a_row_stride: u32,
    pub a_col_stride: u32,
    pub b_offset: u32,
    pub b_row_stride: u32,
    pub b_col_stride: u32,
    pub c_offset: u32,
    pub c_row_stride: u32,
    pub bias_offset: u32,
    pub _pad: [u32; 3],
}

/// `flags` bit of [`MatmulParams`]: add `bias[j]` to column j.
pub const ADD_BIAS: u32 = 1;

/// The uniform of rnn_forward.wgsl and rnn_backward.wgsl, one per timestep.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct StepParams {
    pub batch: u32,
    pub hidden: u32,
    pub steps: u32,
    pub t: u32,
    pub w_offset: u32,
    pub _pad: [u32; 3],
}

/// The uniform of embedding.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct EmbeddingParams {
    pub rows: u32,
    pub hidden: u32,
    pub input: u32,
    pub u_offset: u32,
    pub b_offset: u32,
    pub out_offset: u32,
    pub _pad: [u32; 2],
}

/// The uniform of loss.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct LossParams {
    pub rows: u32,
    pub classes: u32,
    pub scale: f32,
    pub _pad: u32,
}

/// The uniform of reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct ReduceParams {
    pub rows: u32,
    pub cols: u32,
    pub out_offset: u32,
    pub scale: f32,
}
