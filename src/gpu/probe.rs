//! One matmul.wgsl product on its own buffers, for benchmarks of the kernel alone.

use crate::error::Result;
use crate::gpu::context::Gpu;
use crate::gpu::kernels::{Kernels, MatmulVariant, Products};
use crate::gpu::phase::Phase;
use crate::gpu::plan::{A, B, Dispatch, Epilogue, Matmul, Plan, Product, rows};
use wgpu::util::DeviceExt;

/// One matmul.wgsl product on its own buffers, for benchmarks: C (M, N) = A (M, K) · B (K, N)
/// with A and B row-major, B's rows `b_row_stride` ≥ N apart (the step pads V^T's rows to O4).
pub struct MatmulProbe {
    dispatch: Dispatch,
    variant: MatmulVariant,
    _buffers: [wgpu::Buffer; 3],
}

impl MatmulProbe {
    /// The entry point the product runs on: `matmul_tiled`, `matmul4` or `matmul`.
    pub fn kernel(&self) -> &'static str {
        self.variant.entry()
    }

    /// Allocates A, B and C (filled with ones) and records the dispatch on `products`' kernel.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        (m, n, k): (usize, usize, usize),
        b_row_stride: usize,
        products: Products,
    ) -> Self {
        let filled = |label: &str, len: usize| {
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(&vec![1.0f32; len.max(4)]),
                    usage: wgpu::BufferUsages::STORAGE,
                })
        };
        let b_row_stride = b_row_stride.max(n);
        let (a, b, c) = (
            filled("A", m * k),
            filled("B", k * b_row_stride),
            filled("C", m * n),
        );
        let product = Product::new(m, n, k, rows(0, k), rows(0, b_row_stride), (0, n));
        let variant = product.variant_on(products, false);
        let mut plan = Plan {
            uniforms: Vec::new(),
            stride: 256usize.max(gpu.limits().min_uniform_buffer_offset_alignment as usize),
            specs: Vec::new(),
            products,
        };
        let matmul = Matmul {
            product,
            a: A::Buffer(&a),
            b: B::Buffer(&b),
            c: &c,
            epilogue: Epilogue::None,
        };
        plan.matmul(kernels, Phase::WeightGradients, matmul);
        let dispatch = plan.finish(gpu).0.remove(0).1.remove(0);
        Self {
            dispatch,
            variant,
            _buffers: [a, b, c],
        }
    }

    /// Records the product `repeats` times in one compute pass, submits, and waits.
    pub fn run(&self, gpu: &Gpu, repeats: usize) -> Result<()> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..repeats {
                self.dispatch.record(&mut pass);
            }
        }
        gpu.submit(encoder);
        gpu.wait("a matmul benchmark")
    }
}
