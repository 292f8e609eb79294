//! GPU against the CPU reference for whole sequences: every cell × L ∈ {1, 2} × {one, two
//! directions} × {equal lengths, mixed lengths with 1 and T among them} × each head × {tokens,
//! dense}, at odd sizes (H = 5, no multiple of 4), with nonzero h_0 and c_0, through both
//! orderings of the recurrence; T = 1, B = 1, one larger case per cell, the PyTorch sequence
//! cases (`tests/fixtures/seq/`), and a step repeated bit for bit. Every output and gradient is
//! compared by name within the tolerance of tests/stack_agreement.rs.

mod common;

use common::{assert_all_pass, gpu};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::{compare_gpu, compare_step};
use unroll::gpu::{Gpu, Kernels, Recurrence};
use unroll::model::{Head, InputKind, ModelConfig};

const RECURRENCES: [Recurrence; 2] = [Recurrence::Ordered, Recurrence::Grid];

/// Sizes of one case: I, H, O, B, T.
type Sizes = (usize, usize, usize, usize, usize);

fn config(cell: Cell, layers: usize, kind: InputKind, (i, h, o, _, _): Sizes) -> ModelConfig {
    match kind {
        InputKind::Tokens => ModelConfig {
            output: o,
            ..ModelConfig::tokens(i, h)
        },
        InputKind::Dense => ModelConfig::dense(i, h, o),
    }
    .with_cell(cell, layers)
}

/// A random case of the model at sizes `z`, with `lengths` (None: every sequence T long).
fn case(config: ModelConfig, z: Sizes, lengths: Option<Vec<usize>>, seed: u64) -> Case {
    let r = RandomCase {
        batch: z.3,
        steps: z.4,
        seed,
        init_scale: Some(0.6),
        random_state: true,
    };
    let mut case = Case::random(config, r).unwrap();
    if let Some(l) = lengths {
        case.batch = case.batch.with_lengths(l);
    }
    case
}

fn agree(gpu: &Gpu, kernels: &Kernels, case: &Case, recurrences: &[Recurrence]) {
    for &r in recurrences {
        let rows = compare_gpu(gpu, kernels, case, Some(r)).unwrap();
        let what = format!(
            "{} lengths {:?} {r:?}",
            case.params.config, case.batch.lengths
        );
        assert_all_pass(&what, &rows);
    }
}

const ODD: Sizes = (7, 5, 6, 3, 4);

#[test]
fn every_cell_direction_length_and_head_matches_the_cpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let mut seed = 100;
    for cell in Cell::ALL {
        for layers in [1, 2] {
            for bidirectional in [false, true] {
                for lengths in [None, Some(vec![4, 1, 3])] {
                    for head in Head::ALL {
                        for kind in [InputKind::Tokens, InputKind::Dense] {
                            let c = ModelConfig {
                                bidirectional,
                                ..config(cell, layers, kind, ODD).with_head(head)
                            };
                            seed += 1;
                            agree(
                                &gpu,
                                &kernels,
                                &case(c, ODD, lengths.clone(), seed),
                                &RECURRENCES,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn one_step_one_row_and_a_larger_case_of_each_cell_match_the_cpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let mut seed = 500;
    for cell in Cell::ALL {
        for (z, lengths) in [
            ((3, 6, 4, 2, 1), None),
            ((5, 6, 3, 1, 5), Some(vec![3])),
            (
                (9, 33, 5, 17, 23),
                Some((0..17).map(|b| 1 + (b * 7) % 23).collect()),
            ),
        ] {
            for head in Head::ALL {
                let c = config(cell, 2, InputKind::Dense, z)
                    .with_head(head)
                    .bidirectional();
                seed += 1;
                agree(
                    &gpu,
                    &kernels,
                    &case(c, z, lengths.clone(), seed),
                    &RECURRENCES,
                );
            }
        }
    }
}

#[test]
fn the_pytorch_sequence_cases_match_on_the_gpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let files = common::fixtures("tests/fixtures/seq");
    assert_eq!(files.len(), 12);
    for file in files {
        let case = Case::load(&file).unwrap();
        agree(&gpu, &kernels, &case, &RECURRENCES);
    }
}

#[test]
fn a_bidirectional_step_with_lengths_repeats_bit_for_bit() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    for (cell, head) in [(Cell::Gru, Head::Mean), (Cell::Lstm, Head::Last)] {
        let c = config(cell, 2, InputKind::Tokens, ODD)
            .with_head(head)
            .bidirectional();
        let case = case(c, ODD, Some(vec![2, 4, 1]), 9);
        for r in RECURRENCES {
            let step = common::step(&gpu, &kernels, c, (3, 4), (r, None)).unwrap();
            let params = case.params.cast();
            let first = step.run_and_read(&gpu, &params, &case.batch).unwrap();
            let again = step.run_and_read(&gpu, &params, &case.batch).unwrap();
            assert_eq!(first, again, "{c} {r:?}");
        }
    }
}

/// A step's buffers serve batch after batch: a batch of other lengths after one of full lengths
/// (whose states, gradients and gates fill every step) still matches the CPU.
#[test]
fn a_step_reused_for_other_lengths_matches_the_cpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    for cell in Cell::ALL {
        for head in Head::ALL {
            let c = config(cell, 2, InputKind::Dense, ODD)
                .with_head(head)
                .bidirectional();
            let full = case(c, ODD, None, 21);
            let mixed = case(c, ODD, Some(vec![1, 4, 2]), 22);
            for r in RECURRENCES {
                let step = common::step(&gpu, &kernels, c, (3, 4), (r, None)).unwrap();
                step.run_and_read(&gpu, &full.params.cast(), &full.batch)
                    .unwrap();
                let out = step
                    .run_and_read(&gpu, &mixed.params.cast(), &mixed.batch)
                    .unwrap();
                let rows = compare_step(&out, &mixed.params, &mixed.batch);
                assert_all_pass(&format!("{c} after full lengths, {r:?}"), &rows);
            }
        }
    }
}

/// A bidirectional layer's two directions run in the same recurrence dispatches: with ordered
/// dispatches, five more timesteps add 5 forward and 5 backward stages per layer, as they do for
/// one direction (counted where dispatches are recorded).
#[test]
fn both_directions_share_each_recurrence_dispatch() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let count = |c: ModelConfig, t: usize| {
        let ordered = (Recurrence::Ordered, None);
        let step = common::step(&gpu, &kernels, c, (3, t), ordered).unwrap();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let before = gpu.meter.read().dispatches;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            step.record(&mut pass);
        }
        drop(encoder);
        gpu.meter.read().dispatches - before
    };
    let uni = config(Cell::Gru, 2, InputKind::Dense, ODD).with_head(Head::Last);
    let bi = uni.bidirectional();
    let added = |c: ModelConfig| count(c, 9) - count(c, 4);
    assert_eq!(added(uni), 5 * 2 * 2);
    assert_eq!(added(bi), 5 * 2 * 2);
}

/// The sequence kernels' grids past 65,535 workgroups in one dimension: B = 70,000 rows of
/// D = 64 features (the features, 70,000 workgroups of 64) over T = 2 steps (the output by time
/// and its split, 140,000), lengths 1 and 2 (an Elman layer: a GRU's saved gates at this size
/// pass lavapipe's binding limit).
#[test]
fn sequence_grids_past_65535_workgroups_match_the_cpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let z = (2, 32, 2, 70_000, 2);
    let lengths: Vec<usize> = (0..z.3).map(|b| 1 + b % 2).collect();
    for head in [Head::PerStep, Head::Mean] {
        let c = config(Cell::Rnn, 1, InputKind::Dense, z)
            .with_head(head)
            .bidirectional();
        agree(
            &gpu,
            &kernels,
            &case(c, z, Some(lengths.clone()), 31),
            &[Recurrence::Ordered],
        );
    }
}
