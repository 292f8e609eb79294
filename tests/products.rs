//! The tiled product (`matmul_tiled` in `shaders/matmul.wgsl`: 64×64 tiles of C from tiles of A
//! and B in workgroup memory) for every product of a step, against the CPU reference as
//! tests/stack_agreement.rs compares: every cell at L = 1, 2, 3, tokens (a one-hot B) and dense,
//! sizes that are multiples of neither the tile nor its K step, T = 1, B = 1, nonzero h_0 and
//! c_0; weight gradients split over T·B ≥ 1,024 rows; K past one chunk of the loop budget
//! (I = 8,500); a vocabulary of 70,000 (more columns than one row of tiles covers); T·B past
//! 65,535 · 32 rows (the products cut into row blocks); both directions with mixed lengths and
//! each head; both orderings of the recurrence.

mod common;

use common::{assert_all_pass, gpu};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::compare_gpu_with;
use unroll::gpu::{Gpu, Kernels, Products, Recurrence, StepOptions};
use unroll::model::{Head, InputKind, ModelConfig};

fn config(
    cell: Cell,
    layers: usize,
    kind: InputKind,
    (i, h, o): (usize, usize, usize),
) -> ModelConfig {
    match kind {
        InputKind::Tokens => ModelConfig {
            output: o,
            ..ModelConfig::tokens(i, h)
        },
        InputKind::Dense => ModelConfig::dense(i, h, o),
    }
    .with_cell(cell, layers)
}

fn case(config: ModelConfig, (batch, steps): (usize, usize), seed: u64) -> Case {
    let r = RandomCase {
        batch,
        steps,
        seed,
        init_scale: None,
        random_state: true,
    };
    Case::random(config, r).unwrap()
}

/// The case's step on the tiled products, with ordering `r`, against the reference.
fn agree(gpu: &Gpu, kernels: &Kernels, case: &Case, r: Recurrence) {
    let options = StepOptions {
        recurrence: Some(r),
        products: Products::Tiled,
        ..Default::default()
    };
    let rows = compare_gpu_with(gpu, kernels, case, options).unwrap();
    let what = format!(
        "{} B={} T={} lengths {:?} {r:?}, tiled products",
        case.params.config, case.batch.batch, case.batch.steps, case.batch.lengths
    );
    assert_all_pass(&what, &rows);
}

#[test]
fn every_cell_and_depth_matches_the_cpu_on_tiled_products() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let mut seed = 1;
    for cell in Cell::ALL {
        for layers in [1, 2, 3] {
            for kind in [InputKind::Tokens, InputKind::Dense] {
                for (sizes, shape) in [
                    ((7, 5, 6), (3, 4)),
                    ((3, 9, 5), (2, 1)),
                    ((5, 6, 3), (1, 5)),
                ] {
                    seed += 1;
                    let c = case(config(cell, layers, kind, sizes), shape, seed);
                    agree(&gpu, &kernels, &c, Recurrence::Ordered);
                }
            }
        }
        seed += 1;
        let c = case(config(cell, 2, InputKind::Dense, (7, 5, 6)), (3, 4), seed);
        agree(&gpu, &kernels, &c, Recurrence::Grid);
    }
}

#[test]
fn long_sums_and_wide_products_match_the_cpu_on_tiled_products() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    // T·B = 1,040 rows: the weight gradients split into layers of rows, summed in order; H = 70
    // and O = 67 cut tiles and K steps.
    let c = case(
        config(Cell::Lstm, 2, InputKind::Tokens, (67, 70, 67)),
        (16, 65),
        40,
    );
    agree(&gpu, &kernels, &c, Recurrence::Ordered);
    // I = 8,500: K of the input projection's gradient (dh = da U) and of the input projection
    // itself past one chunk.
    let c = case(
        config(Cell::Gru, 1, InputKind::Dense, (8_500, 12, 5)),
        (3, 2),
        41,
    );
    agree(&gpu, &kernels, &c, Recurrence::Ordered);
    // A vocabulary of 70,000: the output's N and the one-hot gather's columns over 1,094 tiles.
    let c = case(
        config(Cell::Rnn, 1, InputKind::Tokens, (70_000, 8, 70_000)),
        (2, 2),
        42,
    );
    agree(&gpu, &kernels, &c, Recurrence::Ordered);
}

#[test]
fn whole_sequences_match_the_cpu_on_tiled_products() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    for (i, cell) in Cell::ALL.into_iter().enumerate() {
        for head in Head::ALL {
            let config = config(cell, 2, InputKind::Dense, (5, 7, 4))
                .with_head(head)
                .bidirectional();
            let mut c = case(config, (4, 6), 300 + i as u64);
            c.batch = c.batch.with_lengths(vec![6, 1, 4, 3]);
            agree(&gpu, &kernels, &c, Recurrence::Ordered);
        }
    }
}

#[test]
fn products_past_one_grid_dimension_of_row_blocks_match_the_cpu_on_tiled_products() {
    // T·B = 2,200,000 rows: the products over every row (the input projection, the decoder, the
    // weight gradients' operands) are cut into blocks of 65,535 · 32 rows, so the tiled kernel
    // runs the block past the first grid's worth of rows too.
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let config = config(Cell::Rnn, 1, InputKind::Dense, (3, 4, 2));
    let (batch, steps) = (1_100_000, 2);
    assert!(batch * steps > 65_535 * 32);
    agree(
        &gpu,
        &kernels,
        &case(config, (batch, steps), 91),
        Recurrence::Ordered,
    );
}
