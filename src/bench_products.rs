//! `unroll bench --products`: the products alone, on each kernel of `shaders/matmul.wgsl` (the
//! blocked `matmul4`/`matmul` a step picks by default, and the tiled `matmul_tiled`), at each
//! configuration's weight-gradient shape (dW = dr^T h: H × H summed over T·B rows) and at 1024³.
//! Each timed product is submitted and waited for; the rate is 2·M·N·K FLOPs over the median.

use crate::bench::BenchConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, MatmulProbe, Products};
use crate::median::median;
use std::time::Instant;

/// One product's timing on one kernel.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProductRow {
    /// What the product is: `dW at H,B,T` or `1024³`.
    pub shape: String,
    /// M: rows of C.
    pub m: usize,
    /// N: columns of C.
    pub n: usize,
    /// K: the length of each sum.
    pub k: usize,
    /// `matmul4`, `matmul` or `matmul_tiled`.
    pub kernel: &'static str,
    /// Products timed.
    pub timed: usize,
    /// Median milliseconds per product.
    pub median_ms: f64,
    /// 2·M·N·K / median.
    pub gflops: f64,
}

/// The shapes timed: every configuration's weight gradient, then 1024³.
fn shapes(configs: &[BenchConfig]) -> Vec<(String, (usize, usize, usize))> {
    let mut v: Vec<_> = (configs.iter())
        .map(|c| {
            let name = format!("dW at {},{},{}", c.hidden, c.batch, c.steps);
            (name, (c.hidden, c.hidden, c.batch * c.steps))
        })
        .collect();
    v.push(("1024³".into(), (1024, 1024, 1024)));
    v
}

/// Refuses a product whose operands do not fit one storage binding, before anything is
/// allocated.
fn check_fits(gpu: &Gpu, (m, n, k): (usize, usize, usize)) -> Result<()> {
    let most = gpu.limits().max_storage_buffer_binding_size as u128;
    let largest = [m * k, k * n, m * n].into_iter().max().unwrap_or(0) as u128 * 4;
    if largest > most {
        return Err(Error::config(
            format!(
                "a product of {m} × {n} over {k} needs an operand of {largest} bytes, more than \
                 the adapter's max_storage_buffer_binding_size ({most})"
            ),
            "time smaller --config values",
        ));
    }
    Ok(())
}

/// Times each shape on each kernel, `warmup` untimed products then `steps` timed ones, the
/// kernels interleaved product by product so that the machine's swings fall on both alike;
/// `done` sees each shape's rows as they are measured.
pub fn bench_products(
    gpu: &Gpu,
    configs: &[BenchConfig],
    (warmup, steps): (usize, usize),
    mut done: impl FnMut(&[ProductRow]),
) -> Result<Vec<ProductRow>> {
    let kernels = gpu.kernels()?;
    let mut rows = Vec::new();
    for (shape, (m, n, k)) in shapes(configs) {
        check_fits(gpu, (m, n, k))?;
        let probes = [Products::Blocked, Products::Tiled]
            .map(|p| MatmulProbe::new(gpu, &kernels, (m, n, k), n, p));
        let mut times = [Vec::with_capacity(steps), Vec::with_capacity(steps)];
        for round in 0..warmup + steps {
            for (probe, t) in probes.iter().zip(&mut times) {
                let t0 = Instant::now();
                probe.run(gpu, 1)?;
                if round >= warmup {
                    t.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        for (probe, t) in probes.iter().zip(&mut times) {
            let ms = median(t);
            rows.push(ProductRow {
                shape: shape.clone(),
                m,
                n,
                k,
                kernel: probe.kernel(),
                timed: t.len(),
                median_ms: ms,
                gflops: 2.0 * (m * n * k) as f64 / (ms * 1e-3) * 1e-9,
            });
        }
        done(&rows[rows.len() - 2..]);
    }
    Ok(rows)
}

/// The rows as a table.
pub fn product_table(rows: &[ProductRow]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:>18} {:<8} {:>6} {:>10} {:>9}",
        "product", "M × N × K", "kernel", "timed", "median ms", "GFLOP/s"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<20} {:>18} {:<8} {:>6} {:>10.3} {:>9.2}",
            r.shape,
            format!("{}×{}×{}", r.m, r.n, r.k),
            r.kernel,
            r.timed,
            r.median_ms,
            r.gflops
        );
    }
    s
}
