//! GPU against the CPU reference for stacked layers of every cell: every output and gradient of
//! one step, by name, within `max(1e-5 · max |ref|, 4 × the reference's own f32 error)` of the
//! reference in f64, at odd sizes (a multiple of no workgroup size), T = 1, B = 1, nonzero h_0
//! and c_0, L = 1, 2, 3, tokens and dense.

mod common;

use common::{assert_all_pass, gpu};
use rand::{RngExt, SeedableRng};
use unroll::cell::{Cell, StackConfig};
use unroll::check_stack::compare_gpu_stack;
use unroll::cpu_stack::StackBatch;
use unroll::gpu::Kernels;
use unroll::model::{InputKind, Inputs, Targets};

const CELLS: [Cell; 4] = [Cell::Rnn, Cell::RnnRelu, Cell::Gru, Cell::Lstm];

/// Sizes of one case: I, H, O, B, T.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    input: usize,
    hidden: usize,
    output: usize,
    batch: usize,
    steps: usize,
}

/// A model and batch with parameters uniform in ±`scale` and initial states in ±0.5.
fn case(
    cell: Cell,
    layers: usize,
    kind: InputKind,
    z: Sizes,
    seed: u64,
) -> (StackConfig, Vec<f64>, StackBatch) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let config = StackConfig {
        cell,
        layers,
        kind,
        input: z.input,
        hidden: z.hidden,
        output: z.output,
    };
    let scale = 1.0 / (z.hidden as f64).sqrt();
    let params = (0..config.table().len)
        .map(|_| rng.random_range(-scale..scale) as f32 as f64)
        .collect();
    let rows = z.batch * z.steps;
    let state_len = layers * z.batch * z.hidden;
    let mut uniform =
        |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
    let h0 = uniform(state_len, 0.5);
    let c0 = if cell.has_cell_state() {
        uniform(state_len, 0.5)
    } else {
        vec![]
    };
    let (inputs, targets) = match kind {
        InputKind::Tokens => (
            Inputs::Tokens(
                (0..rows)
                    .map(|_| rng.random_range(0..z.input as u32))
                    .collect(),
            ),
            Targets::Tokens(
                (0..rows)
                    .map(|_| rng.random_range(0..z.output as u32))
                    .collect(),
            ),
        ),
        InputKind::Dense => (
            Inputs::Dense(
                (0..rows * z.input)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect(),
            ),
            Targets::Dense(
                (0..rows * z.output)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect(),
            ),
        ),
    };
    let batch = StackBatch {
        batch: z.batch,
        steps: z.steps,
        inputs,
        targets,
        h0,
        c0,
    };
    (config, params, batch)
}

fn agree(cells: &[Cell], layers: &[usize], sizes: &[Sizes]) {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let mut seed = 1;
    for &cell in cells {
        for &l in layers {
            for kind in [InputKind::Tokens, InputKind::Dense] {
                for &z in sizes {
                    seed += 1;
                    let (config, params, batch) = case(cell, l, kind, z, seed);
                    let rows = compare_gpu_stack(&gpu, &kernels, &config, &params, &batch).unwrap();
                    assert_all_pass(&format!("{cell:?} L={l} {kind} {z:?}"), &rows);
                }
            }
        }
    }
}

const ODD: Sizes = Sizes {
    input: 7,
    hidden: 5,
    output: 6,
    batch: 3,
    steps: 4,
};
const ONE_STEP: Sizes = Sizes {
    input: 3,
    hidden: 9,
    output: 5,
    batch: 2,
    steps: 1,
};
const ONE_ROW: Sizes = Sizes {
    input: 5,
    hidden: 6,
    output: 3,
    batch: 1,
    steps: 5,
};

#[test]
fn every_cell_and_depth_matches_the_cpu_at_small_odd_sizes() {
    agree(&CELLS, &[1, 2, 3], &[ODD, ONE_STEP, ONE_ROW]);
}

#[test]
fn a_larger_model_of_each_cell_matches_the_cpu() {
    // T·B = 1,024 rows: the weight gradients split into workgroup layers and sum them in order.
    let z = Sizes {
        input: 65,
        hidden: 256,
        output: 65,
        batch: 16,
        steps: 64,
    };
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    for (i, cell) in CELLS.into_iter().enumerate() {
        let (config, params, batch) = case(cell, 2, InputKind::Tokens, z, 100 + i as u64);
        let rows = compare_gpu_stack(&gpu, &kernels, &config, &params, &batch).unwrap();
        assert_all_pass(&format!("{cell:?} L=2 {z:?}"), &rows);
    }
}

#[test]
fn long_sums_run_in_chunks_and_match_the_cpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let cases = [
        // dh_next = dr W sums G·H = 8,400 > 8,192 terms: two chunks of K.
        (
            Cell::Gru,
            1,
            InputKind::Tokens,
            Sizes {
                input: 3,
                hidden: 2_800,
                output: 2,
                batch: 1,
                steps: 2,
            },
        ),
        // a = x U^T sums I = 8,500 terms.
        (
            Cell::Lstm,
            2,
            InputKind::Dense,
            Sizes {
                input: 8_500,
                hidden: 3,
                output: 2,
                batch: 2,
                steps: 3,
            },
        ),
        // Column sums over T·B = 16,400 > 16,384 rows (db, dc, the mean loss): two row chunks.
        (
            Cell::Gru,
            2,
            InputKind::Tokens,
            Sizes {
                input: 7,
                hidden: 5,
                output: 3,
                batch: 164,
                steps: 100,
            },
        ),
    ];
    for (i, (cell, l, kind, z)) in cases.into_iter().enumerate() {
        let (config, params, batch) = case(cell, l, kind, z, 200 + i as u64);
        let rows = compare_gpu_stack(&gpu, &kernels, &config, &params, &batch).unwrap();
        assert_all_pass(&format!("{cell:?} L={l} {kind} {z:?}"), &rows);
    }
}
