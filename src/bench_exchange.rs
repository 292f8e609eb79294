//! `unroll bench --exchange P,…`: what a data-parallel step adds to the step itself, measured on
//! this machine: the read-back of P gradients (and the loss) from the adapter, the fixed-order
//! reduction over the job's ranks ([`crate::collective`]), and the write of the mean back. Under
//! `mpirun -np N` every rank times its own; rank 0 reports the medians.
//!
//! Beside them, the communication model of the README, with its two constants measured in the
//! same run: the latency α of an exchange of one value per rank, and the link's bandwidth, taken
//! as half of this machine's memcpy bandwidth (MPI's shared memory copies each byte in and out):
//! `exchange ≈ α + 2·(N−1)/N·P·4 / B_link`.

use crate::collective::Job;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::gpu::context::map_read_f32_into;
use crate::gpu::plan::storage;
use crate::median::median;
use std::time::Instant;

/// The medians of one size.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeTiming {
    /// P, the parameters exchanged.
    pub params: usize,
    /// N, the ranks.
    pub ranks: usize,
    /// Milliseconds to read the gradients back (copy, map, copy out).
    pub read_back_ms: f64,
    /// Milliseconds of the reduction over the ranks.
    pub exchange_ms: f64,
    /// Milliseconds to write the mean back (and wait for it).
    pub write_ms: f64,
    /// The model's exchange, milliseconds.
    pub model_exchange_ms: f64,
}

/// What [`bench_exchange`] measured: the model's constants and a row per size.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeBench {
    /// α: milliseconds of an exchange of one value per rank.
    pub alpha_ms: f64,
    /// The model's link bandwidth, bytes per second (half of the memcpy bandwidth).
    pub link_bytes_per_s: f64,
    /// One row per size.
    pub rows: Vec<ExchangeTiming>,
}

/// Times `sizes` for `steps` repetitions (after `warmup`) on `gpu`, over `job`'s ranks (one when
/// `None`). Every rank of the job calls it; rank 0's timings are returned.
pub fn bench_exchange(
    gpu: &Gpu,
    job: Option<&Job>,
    sizes: &[usize],
    (warmup, steps): (usize, usize),
) -> Result<ExchangeBench> {
    let ranks = job.map_or(1, |j| j.size());
    let alpha = time_exchange(job, 1, (warmup, steps.max(20)));
    let link = memcpy_bandwidth() / 2.0;
    let mut rows = Vec::new();
    for &p in sizes {
        let buffer = gpu.scoped("allocating the exchange's buffers", || {
            storage(gpu, "g", p + 1)
        })?;
        let staging = gpu.scoped("allocating the exchange's buffers", || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gradients read-back"),
                size: (p as u64 + 1) * 4,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let bytes = (p as u64 + 1) * 4;
        let (mut read, mut write) = (Vec::new(), Vec::new());
        let mut values = Vec::new();
        for i in 0..warmup + steps {
            let t = Instant::now();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&buffer, 0, &staging, 0, bytes);
            gpu.submit(encoder);
            map_read_f32_into(gpu, &staging, bytes, "reading back", &mut values)?;
            let read_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            gpu.write(&buffer, 0, bytemuck::cast_slice(&values));
            gpu.wait("writing the mean back")?;
            if i >= warmup {
                read.push(read_ms);
                write.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let model = alpha + 2.0 * (ranks as f64 - 1.0) / ranks as f64 * p as f64 * 4.0 / link * 1e3;
        rows.push(ExchangeTiming {
            params: p,
            ranks,
            read_back_ms: median(&mut read),
            exchange_ms: time_exchange(job, p + 1, (warmup, steps)),
            write_ms: median(&mut write),
            model_exchange_ms: if ranks > 1 { model } else { 0.0 },
        });
    }
    Ok(ExchangeBench {
        alpha_ms: alpha,
        link_bytes_per_s: link,
        rows,
    })
}

/// The median milliseconds of the reduction of `n` values over the ranks, each repetition
/// started together (a barrier first, so a rank's lateness is not counted as the exchange's).
fn time_exchange(job: Option<&Job>, n: usize, (warmup, steps): (usize, usize)) -> f64 {
    let mut values: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.01).collect();
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        if let Some(j) = job {
            j.barrier();
        }
        let t = Instant::now();
        match job {
            Some(j) => j.ordered_mean(&mut values, j.size()),
            None => crate::shares::add_in_order(&mut values, std::iter::empty(), 1),
        };
        std::hint::black_box(&values);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    median(&mut times)
}

/// This machine's memcpy bandwidth, bytes per second (the median of copies of 64 MiB).
fn memcpy_bandwidth() -> f64 {
    let n = 16 << 20;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(&src);
            std::hint::black_box(&dst);
            (n * 4) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    median(&mut rates)
}

/// The table of [`bench_exchange`]'s rows, under the model's constants.
pub fn exchange_table(bench: &ExchangeBench) -> String {
    let ranks = bench.rows.first().map_or(1, |r| r.ranks);
    let mut s = format!(
        "{ranks} ranks; model: α = {:.3} ms, B_link = {:.2} GB/s (half of memcpy)\n",
        bench.alpha_ms,
        bench.link_bytes_per_s / 1e9
    );
    s += "        P  ranks  read-back ms  exchange ms  model ms  write ms  total ms\n";
    for r in &bench.rows {
        let model = match r.ranks {
            1 => "-".to_string(),
            _ => format!("{:.3}", r.model_exchange_ms),
        };
        s += &format!(
            "{:>9}  {:>5}  {:>12.3}  {:>11.3}  {:>8}  {:>8.3}  {:>8.3}\n",
            r.params,
            r.ranks,
            r.read_back_ms,
            r.exchange_ms,
            model,
            r.write_ms,
            r.read_back_ms + r.exchange_ms + r.write_ms
        );
    }
    s
}
