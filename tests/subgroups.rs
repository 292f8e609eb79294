//! The recurrence's subgroup variant (`shaders/recurrence_subgroup.wgsl`), where a subgroup's
//! lanes load neighbouring columns of the states and share them by shuffles. On an adapter with
//! subgroup operations (lavapipe), every output and gradient of a step is bit for bit the plain
//! variant's and within the reference's tolerance of the CPU: every cell, L = 1, 2, 3, tokens and
//! dense, H a multiple of 4 (the states load as vec4s and are shuffled) and not, 1 to 4 rows per
//! invocation, H wider than a subgroup's loads and than a tile (lanes of a tile past H), T = 1,
//! B = 1, two directions with mixed lengths, ordered and grid (weights in workgroup memory). On
//! an adapter without them (llvmpipe through GL), asking for the variant is a clear error.

mod common;

use common::{assert_all_pass, gpu};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::compare_step;
use unroll::gpu::{Gpu, Kernels, ModelStep, Recurrence, StepOptions, Tiles};
use unroll::model::{InputKind, ModelConfig, StepOutput};

/// How a step is built: its ordering, its tiles (None: chosen) and its sharing of states.
fn options(r: Recurrence, tiles: Option<Tiles>, subgroups: bool) -> StepOptions {
    StepOptions {
        recurrence: Some(r),
        tiles,
        subgroups: Some(subgroups),
        ..Default::default()
    }
}

/// One step of the case, built with `options`, and the ordering it ran.
fn run(gpu: &Gpu, kernels: &Kernels, case: &Case, o: StepOptions) -> (StepOutput<f32>, Recurrence) {
    let (c, b) = (case.params.config, &case.batch);
    let step = ModelStep::new(gpu, kernels, c, (b.batch, b.steps), o).unwrap();
    let out = step.run_and_read(gpu, &case.params.cast(), b).unwrap();
    (out, step.stack.running())
}

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
        init_scale: Some(0.6),
        random_state: true,
    };
    Case::random(config, r).unwrap()
}

/// The subgroup variant against the plain one (bit for bit) and the CPU reference, for one case
/// and ordering; asserts that a grid asked to run on one tile did run.
fn agree(gpu: &Gpu, kernels: &Kernels, case: &Case, r: Recurrence, tiles: Option<Tiles>) {
    let what = format!(
        "{} B={} T={} lengths {:?} {r:?} {tiles:?}",
        case.params.config, case.batch.batch, case.batch.steps, case.batch.lengths
    );
    let (plain, _) = run(gpu, kernels, case, options(r, tiles, false));
    let (shared, ran) = run(gpu, kernels, case, options(r, tiles, true));
    if r == Recurrence::Grid && tiles.is_some() {
        assert_eq!(ran, Recurrence::Grid, "{what}: the grid fell back");
    }
    assert!(
        common::bits(&shared) == common::bits(&plain),
        "{what}: the subgroup variant's bits differ from the plain variant's"
    );
    let rows = compare_step(&shared, &case.params, &case.batch);
    assert_all_pass(&format!("{what}, subgroups"), &rows);
}

/// Whether the adapter has subgroup operations; where it has none, asking for them must be
/// refused with a message that says so (the assertion every test makes there).
fn has_subgroups(gpu: &Gpu, kernels: &Kernels) -> bool {
    if gpu.subgroups {
        return true;
    }
    let config = ModelConfig::tokens(5, 8);
    let o = options(Recurrence::Ordered, None, true);
    let e = match ModelStep::new(gpu, kernels, config, (2, 3), o) {
        Ok(_) => panic!("a subgroup step was built on an adapter without subgroup operations"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("subgroup operations"), "unclear refusal: {e}");
    eprintln!("this adapter has no subgroup operations: the variant is refused, as it must be");
    false
}

#[test]
fn every_cell_and_depth_shares_states_bit_for_bit() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    if !has_subgroups(&gpu, &kernels) {
        return;
    }
    let mut seed = 1;
    for cell in Cell::ALL {
        for layers in [1, 2, 3] {
            for kind in [InputKind::Tokens, InputKind::Dense] {
                // H = 8 and 5 (a multiple of 4 and not), B = 3 (three rows per invocation).
                for h in [8, 5] {
                    seed += 1;
                    let c = case(config(cell, layers, kind, (7, h, 6)), (3, 4), seed);
                    for r in [Recurrence::Ordered, Recurrence::Grid] {
                        agree(&gpu, &kernels, &c, r, None);
                    }
                }
            }
        }
    }
}

#[test]
fn edges_of_the_lanes_rows_and_tiles_share_states_bit_for_bit() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    if !has_subgroups(&gpu, &kernels) {
        return;
    }
    let mut seed = 100;
    for cell in Cell::ALL {
        // T = 1 and B = 1; B = 2 and 6 (two rows per invocation, and two groups of four);
        // H = 132: 33 quads, more than one tile of 32 and than one round of any subgroup's
        // loads, so lanes past H load nothing and the second slice has one live quad of 32.
        for (sizes, shape) in [
            ((3, 12, 5), (2, 1)),
            ((5, 16, 3), (1, 5)),
            ((9, 132, 4), (6, 3)),
        ] {
            seed += 1;
            let c = case(config(cell, 2, InputKind::Dense, sizes), shape, seed);
            agree(&gpu, &kernels, &c, Recurrence::Ordered, None);
        }
        // Slices of 8 units over H = 36: the last slice's tile has one quad that holds units
        // and one lane past H; blocks of 2 rows over B = 5.
        let tiles = Some(Tiles {
            units: 8,
            row_block: 2,
        });
        seed += 1;
        let c = case(
            config(cell, 1, InputKind::Tokens, (11, 36, 7)),
            (5, 3),
            seed,
        );
        agree(&gpu, &kernels, &c, Recurrence::Ordered, tiles);
    }
}

#[test]
fn the_grid_with_weights_in_workgroup_memory_shares_states_bit_for_bit() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    if !has_subgroups(&gpu, &kernels) {
        return;
    }
    // One tile (one workgroup, whose barrier always passes), so the grid runs and its tile's
    // weights sit in workgroup memory.
    let one = Some(Tiles {
        units: 20,
        row_block: 5,
    });
    for (i, cell) in Cell::ALL.into_iter().enumerate() {
        let c = case(
            config(cell, 2, InputKind::Tokens, (11, 20, 5)),
            (5, 9),
            200 + i as u64,
        );
        agree(&gpu, &kernels, &c, Recurrence::Grid, one);
    }
}

#[test]
fn both_directions_with_mixed_lengths_share_states_bit_for_bit() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    if !has_subgroups(&gpu, &kernels) {
        return;
    }
    for (i, cell) in Cell::ALL.into_iter().enumerate() {
        for head in unroll::model::Head::ALL {
            let config = config(cell, 2, InputKind::Dense, (5, 12, 4))
                .with_head(head)
                .bidirectional();
            let mut c = case(config, (4, 6), 300 + i as u64);
            c.batch = c.batch.with_lengths(vec![6, 1, 4, 3]);
            agree(&gpu, &kernels, &c, Recurrence::Ordered, None);
        }
    }
}
