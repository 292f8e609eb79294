//! The grid barrier of the recurrence and its fallback (src/gpu/recurrence.rs). Where every
//! workgroup of a dispatch runs at once, the grid runs, with the ordered dispatches' results bit
//! for bit. Where the adapter cannot run them at once (more tiles than a software adapter has
//! threads), every step still finishes with the right result, through the fallback, within a
//! bound, beside two busy loops too; a trainer's update then comes from the step run again.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use unroll::cell::Cell;
use unroll::check::compare_step;
use unroll::gpu::TrainerShape;
use unroll::gpu::{GpuTrainer, Kernels, Recurrence, Tiles};
use unroll::model::{Batch, ModelConfig, Params};
use unroll::optim::OptimizerConfig;

#[test]
fn one_tile_runs_the_grid_and_matches_the_ordered_steps_bit_for_bit() {
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu.device);
    // H = 13 in one tile of 16 units and all B = 5 rows: one workgroup, whose barrier always
    // passes. T = 70 takes several grid dispatches on a software adapter (its loop budget).
    let one = Some(Tiles {
        units: 16,
        row_block: 5,
    });
    let cases = [
        ModelConfig::tokens(11, 13),
        ModelConfig::dense(3, 13, 2).with_cell(Cell::Gru, 2),
        ModelConfig::tokens(11, 13).with_cell(Cell::Lstm, 3),
        ModelConfig::dense(3, 13, 2).with_cell(Cell::RnnRelu, 1),
    ];
    for (i, config) in cases.into_iter().enumerate() {
        let (batch, steps) = (5, [9, 70][i % 2]);
        let params = Params::init(config, 40 + i as u64);
        let data = Batch::random(&config, batch, steps, true, 50 + i as u64);
        let grid = common::step(
            &gpu,
            &kernels,
            config,
            (batch, steps),
            (Recurrence::Grid, one),
        )
        .unwrap();
        let got = grid.run_and_read(&gpu, &params, &data).unwrap();
        assert_eq!(
            grid.recurrence(),
            Recurrence::Grid,
            "{config}: the grid fell back"
        );
        let ordered = common::step(
            &gpu,
            &kernels,
            config,
            (batch, steps),
            (Recurrence::Ordered, one),
        )
        .unwrap();
        let want = ordered.run_and_read(&gpu, &params, &data).unwrap();
        assert!(
            common::bits(&got) == common::bits(&want),
            "{config}: grid and ordered differ"
        );
        let rows = compare_step(&got, &params.cast(), &data);
        common::assert_all_pass(&format!("{config}, grid, T = {steps}"), &rows);
    }
}

/// The threads a software adapter runs workgroups on (one per CPU), None on a hardware GPU.
fn software_threads() -> Option<usize> {
    let cpu = common::gpu().info.device_type == wgpu::DeviceType::Cpu;
    cpu.then(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Spins on `cores` threads until the returned flag is set.
fn busy_loops(cores: usize) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..cores {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        });
    }
    stop
}

#[test]
fn an_impossible_grid_falls_back_and_finishes_right() {
    // 2 slices × 32 blocks of 4 units × 4 rows: 64 workgroups in a dispatch, far more than a
    // software adapter's threads run at once. The step must still end, right, and soon: the
    // first barrier's wait is bounded, then the step runs ordered.
    let config = ModelConfig::tokens(9, 8).with_cell(Cell::Lstm, 2);
    let (batch, steps) = (128, 6);
    let many = Some(Tiles {
        units: 4,
        row_block: 4,
    });
    let stop = busy_loops(2);
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let gpu = common::gpu();
        let kernels = Kernels::new(&gpu.device);
        let params = Params::init(config, 60);
        let data = Batch::random(&config, batch, steps, true, 61);
        let grid = common::step(
            &gpu,
            &kernels,
            config,
            (batch, steps),
            (Recurrence::Grid, many),
        )
        .unwrap();
        assert_eq!(grid.stack.recurrence_workgroups(), 64);
        let got = grid.run_and_read(&gpu, &params, &data).unwrap();
        let ran = grid.recurrence();
        let ordered = common::step(
            &gpu,
            &kernels,
            config,
            (batch, steps),
            (Recurrence::Ordered, many),
        )
        .unwrap();
        let want = ordered.run_and_read(&gpu, &params, &data).unwrap();
        let rows = compare_step(&got, &params.cast(), &data);
        let _ = send.send((ran, common::bits(&got) == common::bits(&want), rows));
    });
    let result = receive.recv_timeout(Duration::from_secs(600));
    stop.store(true, Ordering::Relaxed);
    let (ran, same, rows) = result.expect("the step did not finish within 10 minutes");
    if software_threads().is_some_and(|n| n < 64) {
        assert_eq!(
            ran,
            Recurrence::Ordered,
            "64 workgroups ran at once on a software adapter"
        );
    }
    assert!(
        same,
        "the fallback's results differ from the ordered step's"
    );
    common::assert_all_pass("LSTM × 2 through the fallback", &rows);
}

#[test]
fn a_trainer_whose_grid_fails_updates_from_the_step_run_again() {
    // B = 32, H = 16: eight tiles on a software adapter, more than its threads; the first step's
    // barrier fails, and that step and the next run ordered. The parameters after three steps
    // are those of a trainer that ran ordered from the start.
    let config = ModelConfig::tokens(7, 16).with_cell(Cell::Gru, 1);
    let params = Params::init(config, 70);
    let data = Batch::random(&config, 32, 8, false, 71);
    let run = |r: Recurrence| {
        let shape = TrainerShape {
            recurrence: Some(r),
            ..TrainerShape::new(32, 8)
        };
        let optim = OptimizerConfig::default();
        let mut t = GpuTrainer::new(common::gpu(), config, shape, optim, &params).unwrap();
        let losses: Vec<u32> = (0..3)
            .map(|i| {
                let s = t
                    .train_step(&data.inputs, &data.targets, i == 0, true)
                    .unwrap();
                s.unwrap().loss.to_bits()
            })
            .collect();
        let p: Vec<u32> = t
            .params()
            .unwrap()
            .data
            .iter()
            .map(|x| x.to_bits())
            .collect();
        (losses, p, t.step().recurrence())
    };
    let (grid_losses, grid_params, ran) = run(Recurrence::Grid);
    let (losses, params) = {
        let (l, p, _) = run(Recurrence::Ordered);
        (l, p)
    };
    if software_threads().is_some_and(|n| n < 8) {
        assert_eq!(
            ran,
            Recurrence::Ordered,
            "eight workgroups ran at once on fewer threads"
        );
    }
    assert_eq!(grid_losses, losses);
    assert!(
        grid_params == params,
        "the parameters differ after the fallback"
    );
}
