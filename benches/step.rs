//! Kernel and step benchmarks on the adapter that WGPU_BACKEND / WGPU_ADAPTER_NAME pick:
//! `WGPU_BACKEND=vulkan cargo bench --bench step`.
//!
//! - matmul: the products of one (H=128, B=32, T=64, vocabulary 65) step, and 1024³, each on the
//!   kernel a step picks (`matmul4` or `matmul`) and on the tiled kernel; the throughput column is
//!   FLOP/s (2·M·N·K per product).
//! - recurrence: one full training step with each recurrence strategy, at a small and a large shape.
//! - step: one full training step (forward, loss, backward, SGD), tokens/s.
//!
//! Every measured iteration waits for the GPU, so the GPU's work is inside the timed region.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use unroll::gpu::{
    AdapterChoice, Gpu, GpuTrainer, Kernels, MatmulProbe, Products, Recurrence, TrainerShape,
};
use unroll::model::{Batch, ModelConfig, Params};
use unroll::optim::{OptimizerConfig, OptimizerKind};

fn gpu() -> Gpu {
    Gpu::new(&AdapterChoice::default()).expect(
        "no GPU adapter: install one (apt-get install -y mesa-vulkan-drivers libvulkan1) and set WGPU_BACKEND",
    )
}

fn matmul(c: &mut Criterion) {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    // (name, M, N, K, B's row stride) with A and B row-major, as the step lays them out
    let shapes = [
        ("forward step h W^T (32x128x128)", 32, 128, 128, 128),
        ("output y = h V^T (2048x65x128)", 2048, 65, 128, 68),
        ("dh = dy V (2048x128x65)", 2048, 128, 65, 128),
        ("dW-sized (128x128x2048)", 128, 128, 2048, 128),
        ("square 1024^3", 1024, 1024, 1024, 1024),
    ];
    // Every shape on the kernel a step picks (matmul4 or matmul), and on the tiled kernel.
    let kinds = [Products::Blocked, Products::Tiled];
    for ((name, m, n, k, b_stride), products) in shapes
        .into_iter()
        .flat_map(|s| kinds.into_iter().map(move |p| (s, p)))
    {
        let probe = MatmulProbe::new(&gpu, &kernels, (m, n, k), b_stride, products);
        probe.run(&gpu, 1).unwrap();
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let label = format!("{name} [{}]", probe.kernel());
        group.bench_function(BenchmarkId::from_parameter(label), |bench| {
            bench.iter_custom(|iters| {
                let t0 = Instant::now();
                probe.run(&gpu, iters as usize).unwrap();
                t0.elapsed()
            })
        });
    }
    group.finish();
}

fn sgd() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr: 1e-3,
        clip: 0.0,
        ..OptimizerConfig::default()
    }
}

fn time_steps(trainer: &mut GpuTrainer, batch: &Batch, iters: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        trainer
            .train_step(&batch.inputs, &batch.targets, false, false)
            .unwrap();
        trainer.gpu().wait("a benchmark step").unwrap();
    }
    t0.elapsed()
}

fn steps(
    c: &mut Criterion,
    group_name: &str,
    shapes: &[(usize, usize, usize)],
    strategies: &[Option<Recurrence>],
) {
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for &(h, b, t) in shapes {
        for &recurrence in strategies {
            let config = ModelConfig::tokens(65, h);
            let shape = TrainerShape {
                recurrence,
                ..TrainerShape::new(b, t)
            };
            let mut trainer =
                GpuTrainer::new(gpu(), config, shape, sgd(), &Params::init(config, 1)).unwrap();
            let batch = Batch::random(&config, b, t, false, 2);
            group.throughput(Throughput::Elements((b * t) as u64));
            let name = match recurrence {
                Some(r) => format!("H={h} B={b} T={t} {r:?}"),
                None => format!("H={h} B={b} T={t}"),
            };
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter_custom(|iters| time_steps(&mut trainer, &batch, iters))
            });
        }
    }
    group.finish();
}

fn recurrence(c: &mut Criterion) {
    let both = [Some(Recurrence::Ordered), Some(Recurrence::Grid)];
    steps(c, "recurrence", &[(100, 1, 25), (128, 32, 64)], &both);
}

fn step(c: &mut Criterion) {
    steps(c, "step", &[(128, 32, 64)], &[None]);
}

criterion_group!(benches, matmul, recurrence, step);
criterion_main!(benches);
