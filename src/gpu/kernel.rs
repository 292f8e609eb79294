//! One compute pipeline as a value: an entry point, its bind group layout declared binding by
//! binding (the names match the WGSL variables), and the bind groups made from it, checked for a
//! `read_write` binding that overlaps another over one buffer. Every kernel family builds on it.

/// How a binding is used.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// `var<uniform>`.
    Uniform,
    /// `var<uniform>` bound with a dynamic offset (one entry per timestep).
    UniformDynamic,
    /// `var<storage, read>` bound with a dynamic offset: per-dispatch parameters that a software
    /// adapter must not compile into the shader (lavapipe builds a new shader for every new
    /// value of a uniform that a top-level branch or loop reads).
    StorageDynamic,
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
    /// Each binding's access, in binding order.
    accesses: Vec<Access>,
}

impl Kernel {
    /// Builds the pipeline of entry point `name` with its bindings (in binding order) and the
    /// values of its `override` constants.
    pub(crate) fn new(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        name: &'static str,
        bindings: &[(&str, Access)],
        constants: &[(&str, f64)],
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
                    Access::Read | Access::ReadWrite | Access::StorageDynamic => {
                        wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: !matches!(access, Access::ReadWrite),
                            },
                            has_dynamic_offset: matches!(access, Access::StorageDynamic),
                            min_binding_size: None,
                        }
                    }
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
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before it reads it (rnn_sequence.wgsl
                // clears its state, optimizer.wgsl fills its partial sums), so wgpu's zeroing of
                // it at every workgroup's start is work for nothing.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        Self {
            name,
            pipeline,
            layout,
            accesses: bindings.iter().map(|&(_, access)| access).collect(),
        }
    }

    /// A bind group of this kernel's layout over `buffers`, in binding order.
    ///
    /// Panics if a buffer bound `read_write` overlaps another binding of the group: WebGPU
    /// forbids that aliasing (browsers reject the dispatch), though native backends run it. The
    /// check here makes every test on a native adapter enforce the browser's rule.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        if let Some((i, j)) = self.writable_alias(buffers) {
            panic!(
                "{}: binding {i} is written and binding {j} overlaps it (one buffer bound twice)",
                self.name
            );
        }
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

impl Kernel {
    /// The first pair of bindings (i < j) over overlapping ranges of one buffer, one of them
    /// `read_write`.
    fn writable_alias(&self, buffers: &[wgpu::BindingResource<'_>]) -> Option<(usize, usize)> {
        fn range<'b>(r: &wgpu::BindingResource<'b>) -> Option<(&'b wgpu::Buffer, u64, u64)> {
            match r {
                wgpu::BindingResource::Buffer(b) => {
                    let end = b.size.map_or(u64::MAX, |s| b.offset + s.get());
                    Some((b.buffer, b.offset, end))
                }
                _ => None,
            }
        }
        let writes = |k: usize| matches!(self.accesses.get(k), Some(Access::ReadWrite));
        for i in 0..buffers.len() {
            for j in i + 1..buffers.len() {
                let (Some(a), Some(b)) = (range(&buffers[i]), range(&buffers[j])) else {
                    continue;
                };
                if a.0 == b.0 && a.1 < b.2 && b.1 < a.2 && (writes(i) || writes(j)) {
                    return Some((i, j));
                }
            }
        }
        None
    }
}
