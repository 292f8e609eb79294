//! GPU against the CPU reference for stacked layers of every cell (the step training builds): every
//! output and gradient of one step, by name, within `max(1e-5 · max |ref|, 4 × the reference's own
//! f32 error)` of the reference in f64, at odd sizes (a multiple of no workgroup size), T = 1,
//! B = 1, nonzero h_0 and c_0, L = 1, 2, 3, tokens and dense, with both orderings of the
//! recurrence (ordered dispatches, or the grid barrier; where the grid's workgroups do not all run
//! at once, its fallback: tests/grid.rs shows the grid itself).

mod common;

use common::{assert_all_pass, gpu};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::RTOL_F32;
use unroll::check::compare_gpu;
use unroll::gpu::{Gpu, Kernels, ModelStep, Recurrence};
use unroll::model::{InputKind, ModelConfig};

const CELLS: [Cell; 4] = [Cell::Rnn, Cell::RnnRelu, Cell::Gru, Cell::Lstm];
const RECURRENCES: [Recurrence; 2] = [Recurrence::Ordered, Recurrence::Grid];

/// Sizes of one case: I, H, O, B, T.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    input: usize,
    hidden: usize,
    output: usize,
    batch: usize,
    steps: usize,
}

/// A model and batch with parameters uniform in ±1/√H and initial states in ±0.5.
fn case(cell: Cell, layers: usize, kind: InputKind, z: Sizes, seed: u64) -> Case {
    let config = match kind {
        InputKind::Tokens => ModelConfig {
            output: z.output,
            ..ModelConfig::tokens(z.input, z.hidden)
        },
        InputKind::Dense => ModelConfig::dense(z.input, z.hidden, z.output),
    }
    .with_cell(cell, layers);
    let random = RandomCase {
        batch: z.batch,
        steps: z.steps,
        seed,
        init_scale: None,
        random_state: true,
    };
    Case::random(config, random).unwrap()
}

/// The step training builds for the case's model and batch shape, with recurrence `r`.
fn step_with(gpu: &Gpu, kernels: &Kernels, case: &Case, r: Recurrence) -> ModelStep {
    let (c, b) = (case.params.config, &case.batch);
    let options = unroll::gpu::StepOptions {
        recurrence: Some(r),
        ..Default::default()
    };
    ModelStep::new(gpu, kernels, c, (b.batch, b.steps), options).unwrap()
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
                    let case = case(cell, l, kind, z, seed);
                    for r in RECURRENCES {
                        let rows = compare_gpu(&gpu, &kernels, &case, Some(r)).unwrap();
                        assert_all_pass(&format!("{cell:?} L={l} {kind} {z:?} {r:?}"), &rows);
                    }
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
        let case = case(cell, 2, InputKind::Tokens, z, 100 + i as u64);
        // On a software adapter the grid recurrence runs T = 64 in chunks of time.
        for r in RECURRENCES {
            let rows = compare_gpu(&gpu, &kernels, &case, Some(r)).unwrap();
            assert_all_pass(&format!("{cell:?} L=2 {z:?} {r:?}"), &rows);
        }
    }
}

/// The same step run twice gives the same bits: every reduction runs in a fixed order, the
/// recurrence's too.
#[test]
fn a_stacked_step_is_bitwise_repeatable() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let z = Sizes {
        input: 11,
        hidden: 24,
        output: 11,
        batch: 6,
        steps: 24,
    };
    for cell in [Cell::Gru, Cell::Lstm] {
        let case = case(cell, 2, InputKind::Tokens, z, 600);
        let b = &case.batch;
        let p32 = case.params.cast::<f32>();
        for r in RECURRENCES {
            let step = step_with(&gpu, &kernels, &case, r);
            let x = step.run_and_read(&gpu, &p32, b).unwrap();
            let y = step.run_and_read(&gpu, &p32, b).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(x.loss.to_bits(), y.loss.to_bits(), "{cell:?} {r:?}");
            assert_eq!(bits(&x.grads), bits(&y.grads), "{cell:?} {r:?}");
            assert_eq!(bits(&x.output), bits(&y.output), "{cell:?} {r:?}");
            assert_eq!(bits(&x.dh0), bits(&y.dh0), "{cell:?} {r:?}");
        }
    }
}

#[test]
fn grids_past_65535_workgroups_match_the_cpu() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let sizes = |hidden, batch, steps| Sizes {
        input: 3,
        hidden,
        output: 2,
        batch,
        steps,
    };
    let cases = [
        // B = 1,100,000 rows: the recurrence's tiles take the rows in blocks (tests/agreement.rs
        // has a grid of tiles past 65,535 workgroups).
        (Cell::Lstm, sizes(4, 1_100_000, 1)),
        // T·B = 2,200,000 rows: every product over the rows passes 65,535 × 32 rows.
        (Cell::Gru, sizes(3, 1_100_000, 2)),
    ];
    for (i, (cell, z)) in cases.into_iter().enumerate() {
        let case = case(cell, 1, InputKind::Tokens, z, 400 + i as u64);
        let (c, b) = (case.params.config, &case.batch);
        // The reference once (it is most of the time), both recurrences against it.
        let (nb, nt) = (b.batch, b.steps);
        let truth = unroll::cpu::step(&case.params, b).tensors(&c, nb, nt);
        let own = unroll::cpu::step(&case.params.cast::<f32>(), b).tensors(&c, nb, nt);
        for r in RECURRENCES {
            let step = step_with(&gpu, &kernels, &case, r);
            assert_eq!(step.recurrence(), r);
            let out = step.run_and_read(&gpu, &case.params.cast(), b).unwrap();
            let got = out.tensors(&c, nb, nt);
            let rows = unroll::compare::compare_with_yardstick(&truth, &own, &got, RTOL_F32);
            assert_all_pass(&format!("{cell:?} {z:?} {r:?}"), &rows);
        }
    }
}

#[test]
fn gates_wider_than_a_tile_match_the_cpu() {
    // G·H = 4,400 gate units: nine slices of at most 128 units, the last one short, in both
    // orderings.
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let z = Sizes {
        input: 3,
        hidden: 1_100,
        output: 2,
        batch: 3,
        steps: 2,
    };
    let case = case(Cell::Lstm, 1, InputKind::Tokens, z, 500);
    for r in RECURRENCES {
        let rows = compare_gpu(&gpu, &kernels, &case, Some(r)).unwrap();
        assert_all_pass(&format!("LSTM H = 1,100, {r:?}"), &rows);
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
        let case = case(cell, l, kind, z, 200 + i as u64);
        let rows = compare_gpu(&gpu, &kernels, &case, None).unwrap();
        assert_all_pass(&format!("{cell:?} L={l} {kind} {z:?}"), &rows);
    }
}

/// Dropout between the layers: the GPU's masks and the CPU reference's are the same bits, so a
/// training step agrees as without it; the masks act (the step differs from one without them) and
/// change with the update count.
#[test]
fn dropout_matches_the_cpu() {
    use unroll::check::compare_step;
    use unroll::dropout::DropoutSpec;
    use unroll::gpu::GpuStack;
    let gpu = gpu();
    let kernels = Kernels::new(&gpu.device);
    let spec = DropoutSpec {
        p: 0.3,
        seed: 1 << 40 | 9,
    };
    for (i, (cell, l, kind)) in [
        (Cell::Lstm, 3, InputKind::Tokens),
        (Cell::Gru, 2, InputKind::Dense),
        (Cell::RnnRelu, 2, InputKind::Tokens),
    ]
    .into_iter()
    .enumerate()
    {
        let case = case(cell, l, kind, ODD, 300 + i as u64);
        let (c, b) = (case.params.config, &case.batch);
        let shape = (b.batch, b.steps);
        let options = unroll::gpu::StepOptions {
            dropout: Some(spec),
            ..Default::default()
        };
        let stack = GpuStack::with_options(&gpu, &kernels, c, shape, options).unwrap();
        let p32 = case.params.cast::<f32>();
        let mut grads = Vec::new();
        for step in [5, 6] {
            stack.set_step(&gpu, step);
            let got = stack.run_and_read(&gpu, &p32.data, b).unwrap();
            let d = spec.at_step(step);
            let truth = unroll::cpu::step_with(&case.params, b, Some(&d));
            let own = unroll::cpu::step_with(&p32, b, Some(&d));
            let rows = unroll::compare::compare_with_yardstick(
                &truth.tensors(&c, b.batch, b.steps),
                &own.tensors(&c, b.batch, b.steps),
                &got.tensors(&c, b.batch, b.steps),
                unroll::check::RTOL_F32,
            );
            assert_all_pass(
                &format!("{cell:?} × {l} {kind}, dropout at step {step}"),
                &rows,
            );
            grads.push(got.grads);
        }
        let plain = compare_step(
            &{
                let s = GpuStack::new(&gpu, &kernels, c, b.batch, b.steps).unwrap();
                s.run_and_read(&gpu, &p32.data, b).unwrap()
            },
            &case.params,
            b,
        );
        assert!(
            plain.iter().all(|r| r.pass()),
            "without dropout the step agrees too"
        );
        let without = unroll::cpu::step(&p32, b).grads;
        assert_ne!(grads[0], without, "dropout changed nothing");
        assert_ne!(grads[0], grads[1], "another step drew the same masks");
    }
}
