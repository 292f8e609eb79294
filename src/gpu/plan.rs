//! Dispatch planning: how the kernels of a step are described before they are recorded. A `Plan`
//! collects dispatches (`Spec`: a kernel, its uniform, its buffers, its grid), every uniform in
//! one buffer at its own dynamic offset; a `Product` ([`super::product`]) describes one
//! matmul.wgsl product and becomes one dispatch or several (row blocks past a grid dimension,
//! chunks of K past the loop budget). `Plan::finish` creates the bind groups and returns the
//! recorded `Dispatch`es by phase.

use crate::gpu::context::{Gpu, Meter};
use crate::gpu::kernel::Kernel;
use crate::gpu::kernels::{
    ACCUMULATE, ADD_BIAS, Kernels, LossParams, Products, ReduceParams, TransposeParams,
};
use crate::gpu::phase::Phase;
pub(crate) use crate::gpu::product::{Product, cols, rows, weight_gradient_splits};
use crate::model::InputKind;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// The most loop iterations one invocation of a kernel makes in one dispatch. Mesa's software
/// adapters (llvmpipe, lavapipe) count every loop iteration of a shader invocation and end all its
/// loops after 65,535 (`LP_MAX_TGSI_LOOP_ITERATIONS`), silently: a longer sum just stops. So every
/// long loop runs in chunks, one dispatch each, that continue one another's sums in the same
/// order; half the limit leaves room for the short fixed loops around the long one.
pub const LOOP_BUDGET: usize = 32_768;

/// K per matmul.wgsl dispatch: `matmul4`'s loop makes 9 iterations per 4 k (the loop over k and
/// its two loops of four), under LOOP_BUDGET with room for the prologue and the store.
pub const K_CHUNK: usize = 8_192;

/// The most classes (O) for which loss.wgsl runs a row in one invocation: its three loops over
/// them stay far under LOOP_BUDGET. Larger rows get a workgroup each.
pub const WIDE_LOSS_CLASSES: usize = 2_048;

/// Rows per reduce.wgsl dispatch (one iteration per row).
pub const ROW_CHUNK: usize = 16_384;

/// The most workgroups a dispatch may have along one dimension (WebGPU's default limit, which
/// every adapter supports).
pub const MAX_GROUPS: usize = 65_535;

/// One recorded dispatch: a pipeline, its bind group, its uniform's offset and its grid.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub offsets: Vec<u32>,
    pub groups: (u32, u32, u32),
    /// The device's meter, which counts the dispatch when it is recorded.
    pub meter: Arc<Meter>,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.meter.dispatched();
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &self.offsets);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
    }
}

/// A 2-D grid of 64-wide workgroups covering `n` invocations (see `linear_index` in the shaders).
pub(crate) fn grid_1d(n: usize) -> (u32, u32, u32) {
    let groups = n.div_ceil(64).max(1);
    let x = groups.min(MAX_GROUPS);
    (x as u32, groups.div_ceil(x) as u32, 1)
}

/// A 2-D grid of `n` workgroups, one per row (see `row_of` in loss.wgsl).
pub(crate) fn grid_rows(n: usize) -> (u32, u32, u32) {
    let x = n.clamp(1, MAX_GROUPS);
    (x as u32, n.div_ceil(x) as u32, 1)
}

/// A storage buffer usable by every kernel, for copies and for reading back. Its size is a
/// multiple of 16 bytes (at least 16), so that a kernel that declares it `array<vec4<f32>>`
/// reaches every element: the array's length is the binding's size in whole vec4s, and WebGPU
/// clamps an index past it onto the last whole vec4 (a write to element 4k + 1 of a buffer of
/// 4k + 2 floats would land on element 4k − 3).
pub(crate) fn storage(gpu: &Gpu, label: &str, elements: usize) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (elements.next_multiple_of(4).max(4) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

pub(crate) fn uniform<T: bytemuck::Pod>(gpu: &Gpu, label: &str, value: &T) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// The dispatches of a step before their bind groups exist: every uniform goes into one buffer.
pub(crate) struct Plan<'a> {
    pub(crate) uniforms: Vec<u8>,
    pub(crate) stride: usize,
    pub(crate) specs: Vec<Spec<'a>>,
    /// The kernel the products run on.
    pub(crate) products: Products,
}

pub(crate) struct Spec<'a> {
    pub(crate) phase: Phase,
    pub(crate) kernel: &'a Kernel,
    pub(crate) buffers: Vec<&'a wgpu::Buffer>,
    pub(crate) offset: u32,
    pub(crate) size: u64,
    pub(crate) groups: (u32, u32, u32),
}

impl<'a> Plan<'a> {
    pub(crate) fn push<T: bytemuck::Pod>(
        &mut self,
        phase: Phase,
        kernel: &'a Kernel,
        params: &T,
        buffers: Vec<&'a wgpu::Buffer>,
        groups: (u32, u32, u32),
    ) {
        let offset = self.uniforms.len();
        debug_assert!(
            std::mem::size_of::<T>() <= self.stride,
            "a uniform wider than the stride"
        );
        self.uniforms.extend_from_slice(bytemuck::bytes_of(params));
        self.uniforms.resize(offset + self.stride, 0);
        self.specs.push(Spec {
            phase,
            kernel,
            buffers,
            offset: offset as u32,
            size: std::mem::size_of::<T>() as u64,
            groups,
        });
    }

    /// As [`Self::push`], the dispatch first of the step (what every other dispatch follows).
    pub(crate) fn push_first<T: bytemuck::Pod>(
        &mut self,
        phase: Phase,
        kernel: &'a Kernel,
        params: &T,
        buffers: Vec<&'a wgpu::Buffer>,
        groups: (u32, u32, u32),
    ) {
        self.push(phase, kernel, params, buffers, groups);
        let spec = self.specs.pop().expect("the dispatch just pushed");
        self.specs.insert(0, spec);
    }

    /// A matmul.wgsl product, as one dispatch or several: blocks of rows where M needs more
    /// workgroups than a grid dimension holds, and chunks of K where one invocation's loop would
    /// pass [`LOOP_BUDGET`]. The variant follows from the operands (B one-hot, `matmul4` when
    /// they are aligned); a binding the variant does not read gets B's buffer, which every
    /// variant only reads.
    pub(crate) fn matmul(&mut self, kernels: &'a Kernels, phase: Phase, m: Matmul<'a>) {
        let mut p = m.product;
        let (b, tokens) = match m.b {
            B::Buffer(b) => (b, None),
            B::OneHot(tokens) => (tokens, Some(tokens)),
        };
        let addend = match m.epilogue {
            Epilogue::None => None,
            Epilogue::Bias(bias, offset) => {
                p.flags = ADD_BIAS;
                p.addend_offset = offset;
                Some(bias)
            }
            Epilogue::Accumulate => {
                p.flags = ACCUMULATE;
                None
            }
        };
        let A::Buffer(a) = m.a;
        let variant = p.variant_on(self.products, tokens.is_some());
        let kernel = kernels.matmul(variant);
        let buffers = vec![a, b, tokens.unwrap_or(b), addend.unwrap_or(b), m.c];
        for block in p.row_blocks() {
            for params in block.chunks() {
                self.push(
                    phase,
                    kernel,
                    &params,
                    buffers.clone(),
                    block.groups(variant),
                );
            }
        }
    }

    /// A weight gradient, C = A^T B summed over all T·B rows: split along the rows into
    /// `weight_gradient_splits` workgroup layers writing partial products into `partials`, then
    /// summed in order by reduce.wgsl into C; or one plain product when the rows are few.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn weight_gradient(
        &mut self,
        kernels: &'a Kernels,
        phase: Phase,
        mut p: Product,
        a: &'a wgpu::Buffer,
        b: B<'a>,
        c: &'a wgpu::Buffer,
        partials: &'a wgpu::Buffer,
    ) {
        let (m, n) = (p.m, p.n);
        let splits = (partials.size() as usize / 4 / (m * n)).min(weight_gradient_splits(
            p.k,
            m * n,
            u64::MAX,
        ));
        let a = A::Buffer(a);
        if splits <= 1 {
            let product = Matmul {
                product: p,
                a,
                b,
                c,
                epilogue: Epilogue::None,
            };
            self.matmul(kernels, phase, product);
            return;
        }
        debug_assert_eq!(p.c.1, n, "a weight gradient is a contiguous block");
        let c_offset = p.c.0;
        p.splits = splits;
        p.c = (0, n);
        let product = Matmul {
            product: p,
            a,
            b,
            c: partials,
            epilogue: Epilogue::None,
        };
        self.matmul(kernels, phase, product);
        self.column_sum(
            &kernels.column_sum,
            phase,
            partials,
            0..splits,
            m * n,
            c,
            c_offset,
            1.0,
        );
    }

    /// reduce.wgsl: out[out_offset + j] = scale · Σ_r m[r, j] over rows `rows` of an (·, cols)
    /// matrix, in chunks of [`ROW_CHUNK`] rows (one dispatch each) that continue one another's
    /// sums.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn column_sum(
        &mut self,
        kernel: &'a Kernel,
        phase: Phase,
        m: &'a wgpu::Buffer,
        rows: std::ops::Range<usize>,
        cols: usize,
        out: &'a wgpu::Buffer,
        out_offset: usize,
        scale: f32,
    ) {
        let chunks = rows.len().div_ceil(ROW_CHUNK).max(1);
        for i in 0..chunks {
            let rp = ReduceParams {
                row_begin: (rows.start + i * ROW_CHUNK) as u32,
                row_end: (rows.start + (i + 1) * ROW_CHUNK).min(rows.end) as u32,
                cols: cols as u32,
                out_offset: out_offset as u32,
                scale,
                first: (i == 0) as u32,
                last: (i + 1 == chunks) as u32,
                _pad: 0,
            };
            self.push(phase, kernel, &rp, vec![m, out], grid_1d(cols));
        }
    }

    /// transpose.wgsl: a (rows, cols) matrix at `src[in_offset..]` copied into `out[out_offset..]`
    /// with rows `out_stride` apart, transposed (W^T, V^T) or not (a padded W).
    pub(crate) fn layout(
        &mut self,
        kernels: &'a Kernels,
        copy: TransposeParams,
        src: &'a wgpu::Buffer,
        out: &'a wgpu::Buffer,
    ) {
        let n = (copy.rows * copy.cols) as usize;
        self.push(
            Phase::Transposes,
            &kernels.transpose,
            &copy,
            vec![src, out],
            grid_1d(n),
        );
    }

    /// loss.wgsl and the mean: per-row loss and dy of the logits, then their mean into
    /// `stats[0]`. One invocation per row while its loops over O stay short; one workgroup per
    /// row past [`WIDE_LOSS_CLASSES`].
    pub(crate) fn loss(&mut self, kernels: &'a Kernels, loss: Loss<'a>) {
        let (n_rows, no) = (loss.rows, loss.classes);
        let lp = LossParams {
            rows: n_rows as u32,
            classes: no as u32,
            _pad: [0; 2],
        };
        let k = kernels;
        let (kernel, groups) = match (loss.kind, no > WIDE_LOSS_CLASSES) {
            (InputKind::Tokens, false) => (&k.softmax_xent, grid_1d(n_rows)),
            (InputKind::Dense, false) => (&k.squared_error, grid_1d(n_rows)),
            (InputKind::Tokens, true) => (&k.softmax_xent_wide, grid_rows(n_rows)),
            (InputKind::Dense, true) => (&k.squared_error_wide, grid_rows(n_rows)),
        };
        let buffers = vec![
            loss.logits,
            loss.targets,
            loss.targets,
            loss.dy,
            loss.row_loss,
            loss.weight,
        ];
        self.push(Phase::OutputAndLoss, kernel, &lp, buffers, groups);
        self.column_sum(
            &k.column_sum,
            Phase::OutputAndLoss,
            loss.row_loss,
            0..n_rows,
            1,
            loss.stats,
            0,
            1.0,
        );
        let buffers = vec![
            loss.logits,
            loss.targets,
            loss.targets,
            loss.dy,
            loss.stats,
            loss.weight,
        ];
        self.push(Phase::OutputAndLoss, &k.mean_loss, &lp, buffers, (1, 1, 1));
    }

    pub(crate) fn finish(self, gpu: &Gpu) -> Recorded {
        let buffer = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("dispatch parameters"),
                contents: &self.uniforms,
                // Bound as a uniform by most kernels, as read-only storage by recurrence.wgsl.
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE,
            });
        let mut phases: Vec<(Phase, Vec<Dispatch>)> = Vec::new();
        for spec in self.specs {
            let mut entries = vec![wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &buffer,
                offset: 0,
                size: wgpu::BufferSize::new(spec.size),
            })];
            entries.extend(spec.buffers.iter().map(|b| b.as_entire_binding()));
            let dispatch = Dispatch {
                pipeline: spec.kernel.pipeline.clone(),
                bind_group: spec.kernel.bind(&gpu.device, &entries),
                offsets: vec![spec.offset],
                groups: spec.groups,
                meter: gpu.meter.clone(),
            };
            match phases.last_mut() {
                Some((phase, list)) if *phase == spec.phase => list.push(dispatch),
                _ => phases.push((spec.phase, vec![dispatch])),
            }
        }
        Recorded(phases)
    }
}

/// A step's dispatches, recorded once, by phase in the order they run.
pub(crate) struct Recorded(pub(crate) Vec<(Phase, Vec<Dispatch>)>);

impl Recorded {
    /// Records every dispatch into a compute pass.
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.0
            .iter()
            .flat_map(|(_, d)| d)
            .for_each(|d| d.record(pass));
    }

    /// Records the forward pass and the loss alone (evaluation).
    pub(crate) fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>) {
        let forward = self.0.iter().filter(|(phase, _)| phase.is_forward());
        forward.flat_map(|(_, d)| d).for_each(|d| d.record(pass));
    }

    /// Dispatches per step.
    pub(crate) fn dispatches(&self) -> usize {
        self.0.iter().map(|(_, d)| d.len()).sum()
    }
}

/// The loss of a step's outputs: its kind, sizes and buffers.
pub(crate) struct Loss<'a> {
    pub(crate) kind: InputKind,
    /// T·B.
    pub(crate) rows: usize,
    /// O.
    pub(crate) classes: usize,
    /// y (T·B, O).
    pub(crate) logits: &'a wgpu::Buffer,
    /// Token ids (T·B) or values (T·B, O).
    pub(crate) targets: &'a wgpu::Buffer,
    /// ∂L/∂y (T·B, O).
    pub(crate) dy: &'a wgpu::Buffer,
    /// Per-row loss (T·B).
    pub(crate) row_loss: &'a wgpu::Buffer,
    /// Each row's weight in the mean loss.
    pub(crate) weight: &'a wgpu::Buffer,
    /// [the mean loss, …].
    pub(crate) stats: &'a wgpu::Buffer,
}

/// Where a product reads A.
#[derive(Clone, Copy)]
pub(crate) enum A<'a> {
    /// A buffer of its own.
    Buffer(&'a wgpu::Buffer),
}

/// Where a product reads B.
#[derive(Clone, Copy)]
pub(crate) enum B<'a> {
    /// A buffer.
    Buffer(&'a wgpu::Buffer),
    /// The one-hot matrix of these token ids: B[p, j] = (tokens[p] == j).
    OneHot(&'a wgpu::Buffer),
}

/// What a product does with its sums S before it stores them (see matmul.wgsl).
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a> {
    /// C = S.
    None,
    /// C = S + bias[j], the bias at this offset of this buffer.
    Bias(&'a wgpu::Buffer, usize),
    /// C = C + S: the product added to what C holds.
    Accumulate,
}

/// One product to plan: its sizes and operands, and what happens to its sums.
pub(crate) struct Matmul<'a> {
    pub(crate) product: Product,
    pub(crate) a: A<'a>,
    pub(crate) b: B<'a>,
    pub(crate) c: &'a wgpu::Buffer,
    pub(crate) epilogue: Epilogue<'a>,
}
