//! A differential fuzzer: random shapes (I and O up to ~70,000, H up to ~300, T·B up to ~70,000 at
//! small H, both input kinds, every cell, one or two layers, random h_0 and c_0, both orderings of
//! the recurrence, its states shared by subgroup shuffles or not where the adapter has subgroup
//! operations), each run on the GPU and on the CPU reference and compared tensor by tensor as
//! `unroll check` does.
//!
//! `UNROLL_FUZZ_CASES` sets the number of cases (default 10), `UNROLL_FUZZ_SEED` the seed (default:
//! drawn from the clock and printed). A failure prints the seed, the case and the command that
//! reruns it.

mod common;

use rand::{RngExt, SeedableRng};
use unroll::cell::Cell;
use unroll::check::compare_step;
use unroll::gpu::{Kernels, ModelStep, Recurrence, StepOptions};
use unroll::model::{Batch, ModelConfig, Params};

/// log-uniform in [lo, hi].
fn log_uniform(rng: &mut rand::rngs::StdRng, lo: usize, hi: usize) -> usize {
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    (rng.random_range(a..=b).exp().round() as usize).clamp(lo, hi)
}

struct Shape {
    config: ModelConfig,
    batch: usize,
    steps: usize,
    random_h0: bool,
    recurrence: Recurrence,
    /// Drawn on every adapter (so a seed draws the same shapes everywhere), used where the
    /// adapter has subgroup operations.
    subgroups: bool,
}

/// A random shape whose CPU reference stays quick (~2·10^7 multiply-adds).
fn draw(rng: &mut rand::rngs::StdRng) -> Shape {
    let dense = rng.random_bool(0.4);
    let hidden = if rng.random_bool(0.5) {
        log_uniform(rng, 1, 16)
    } else {
        log_uniform(rng, 1, 300)
    };
    let max_rows = if hidden <= 16 { 70_000 } else { 2_048 };
    // Half the cases the Elman model; the others a cell of up to 4 gates in one or two layers,
    // with the rows cut to keep the reference quick.
    let cell = match rng.random_range(0..6) {
        0..3 => None,
        k => Some((
            [Cell::Gru, Cell::Lstm, Cell::Rnn][k - 3],
            rng.random_range(1..=2),
        )),
    };
    let work = cell.map_or(1, |(c, l)| c.gates() * l);
    let rows = log_uniform(rng, 1, (max_rows / work).max(1));
    let steps = log_uniform(rng, 1, rows);
    let batch = rows.div_ceil(steps);
    let rows = batch * steps;
    let budget = 20_000_000 / (rows * work);
    let features = |rng: &mut rand::rngs::StdRng| {
        log_uniform(rng, 1, 70_000)
            .min((budget / hidden).max(1))
            .min(16_000_000 / rows)
            .max(1)
    };
    let input = features(rng);
    let output = features(rng);
    let config = if dense {
        ModelConfig::dense(input, hidden, output)
    } else {
        let mut c = ModelConfig::tokens(input, hidden);
        c.output = output;
        c
    };
    let config = match cell {
        None => config,
        Some((cell, layers)) => config.with_cell(cell, layers),
    };
    Shape {
        config,
        batch,
        steps,
        random_h0: rng.random_bool(0.5),
        recurrence: if rng.random_bool(0.5) {
            Recurrence::Ordered
        } else {
            Recurrence::Grid
        },
        subgroups: rng.random_bool(0.5),
    }
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let cases: usize = std::env::var("UNROLL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("UNROLL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("fuzz seed {seed} ({cases} cases)");
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu.device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for case in 0..cases {
        let s = draw(&mut rng);
        let what = format!(
            "case {case} of seed {seed}: {:?} B={} T={} h0 random: {}, {:?}, subgroups: {} \
             (rerun: UNROLL_FUZZ_SEED={seed} UNROLL_FUZZ_CASES={} cargo test --release --test fuzz)",
            s.config,
            s.batch,
            s.steps,
            s.random_h0,
            s.recurrence,
            s.subgroups && gpu.subgroups,
            case + 1
        );
        eprintln!("{what}");
        let params = Params::init(s.config, seed ^ case as u64);
        let data = Batch::random(
            &s.config,
            s.batch,
            s.steps,
            s.random_h0,
            seed.wrapping_add(case as u64),
        );
        let options = StepOptions {
            recurrence: Some(s.recurrence),
            subgroups: Some(s.subgroups && gpu.subgroups),
            ..Default::default()
        };
        let step = ModelStep::new(&gpu, &kernels, s.config, (s.batch, s.steps), options)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = step
            .run_and_read(&gpu, &params, &data)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        common::assert_all_pass(&what, &compare_step(&got, &params.cast(), &data));
    }
}
