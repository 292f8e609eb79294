//! The trainer end to end: learning, optimizer agreement, resuming, checkpoints.

mod common;

use std::path::Path;
use unroll::cell::Cell;
use unroll::checkpoint::Checkpoint;
use unroll::data::{Streams, arithmetic_score, builtin_corpus};
use unroll::engine::{CpuTrainer, Engine};
use unroll::gpu::{AdapterChoice, GpuTrainer, Products, Recurrence, Tiles, TrainerShape, Variant};
use unroll::model::{ModelConfig, Params};
use unroll::optim::{OptimizerConfig, OptimizerKind};
use unroll::tensorfile::TensorFile;
use unroll::train::{Device, Resume, RunOptions, TrainConfig, train};
use unroll::tune::{TuneMode, Tuning};

fn small(iters: u64) -> TrainConfig {
    TrainConfig {
        hidden: 64,
        batch: 16,
        seq_len: 24,
        iters,
        eval_every: 50,
        log_every: 10,
        checkpoint_every: 0,
        sample_len: 0,
        ..TrainConfig::default()
    }
}

fn opts(dir: &Path, device: Device) -> RunOptions {
    RunOptions {
        out_dir: dir.to_owned(),
        force: false,
        max_bytes: unroll::data::DEFAULT_MAX_BYTES,
        self_check: true,
        device,
        adapter: AdapterChoice::default(),
        recurrence: None,
        tune: Tuning::off(),
        resume: None,
        quiet: true,
        interrupt: None,
        accumulate: 1,
        devices: Vec::new(),
        job: None,
    }
}

#[test]
fn learns_the_builtin_corpus() {
    let _ = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let s = train(&small(400), &opts(dir.path(), Device::Gpu)).unwrap();
    // The unigram entropy of the corpus is ~2.6 nats; a model that learnt the line structure is
    // far below it.
    assert!(s.baseline_loss > 2.4, "unigram entropy {}", s.baseline_loss);
    assert!(
        s.val_loss < s.baseline_loss as f32 - 0.8,
        "validation loss {} is not well below the unigram entropy {}",
        s.val_loss,
        s.baseline_loss
    );
    let ck = Checkpoint::load(&s.checkpoint).unwrap();
    let vocab = ck.info.vocab.clone().unwrap();
    let newline = vocab.token('\n').unwrap();
    let score = |params: &Params<f32>| {
        let tokens = unroll::sample::sample(params, &[newline], 2000, 0.5, 7).unwrap();
        arithmetic_score(&vocab.decode(&tokens))
    };
    let (trained, _) = score(&ck.params);
    let (untrained, _) = score(&Params::init(ck.params.config, 99));
    assert!(
        trained > 0.7 && trained > untrained + 0.5,
        "well-formed lines: trained {trained:.2}, untrained {untrained:.2}"
    );
    // The metrics file and the plot exist and hold the run.
    let metrics = std::fs::read_to_string(&s.metrics).unwrap();
    assert_eq!(
        metrics.lines().count(),
        1 + 40,
        "a header and a row per 10 steps"
    );
    let svg = std::fs::read_to_string(&s.plot).unwrap();
    assert!(svg.contains("<svg") && svg.contains("validation"));
}

/// The GPU trainer (step + optimizer.wgsl) and the CPU trainer (cpu.rs + optim.rs) take the same
/// steps with SGD, whose update is linear in the gradients: loss, gradient norm and parameters
/// agree after several updates, with clipping and learning-rate decay active.
/// Six SGD steps with clipping on the GPU and on the CPU reference, the state carried between
/// them, for the fused Elman step and for stacked layers of every gated cell (h and c of each
/// layer carried).
#[test]
fn gpu_training_matches_cpu() {
    let _ = common::gpu();
    for (cell, layers, dropout) in [
        (Cell::Rnn, 1, 0.0),
        (Cell::RnnRelu, 2, 0.0),
        (Cell::Gru, 2, 0.0),
        (Cell::Lstm, 3, 0.0),
        (Cell::Lstm, 2, 0.3),
    ] {
        training_matches(cell, layers, dropout);
    }
}

fn training_matches(cell: Cell, layers: usize, dropout: f32) {
    let dropout = (dropout > 0.0).then_some(unroll::dropout::DropoutSpec {
        p: dropout,
        seed: 3,
    });
    let text = builtin_corpus(400, 3);
    let vocab = unroll::data::Vocab::from_text(&text);
    let tokens = vocab.encode(text.as_bytes()).unwrap();
    let (b, t) = (4, 12);
    let streams = Streams::new(&tokens, b, t, "training").unwrap();
    let config = ModelConfig::tokens(vocab.len(), 40).with_cell(cell, layers);
    let optim = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr: 0.5,
        clip: 0.05,
        decay: 0.5,
        decay_every: 3,
        ..OptimizerConfig::default()
    };
    let params = Params::init(config, 5);
    let mut g = GpuTrainer::new(
        gpu_context(),
        config,
        TrainerShape {
            dropout,
            ..TrainerShape::new(b, t)
        },
        optim,
        &params,
    )
    .unwrap();
    let mut c = CpuTrainer::new(params.clone(), b, t, optim)
        .unwrap()
        .with_dropout(dropout);
    for k in 0..6 {
        let (x, y) = streams.chunk(k);
        let sg = g.train_step(&x, &y, k == 0, true).unwrap().unwrap();
        let sc = Engine::train_step(&mut c, &x, &y, k == 0, true)
            .unwrap()
            .unwrap();
        assert!(
            (sg.loss - sc.loss).abs() <= 1e-5 * sc.loss.abs(),
            "{cell:?} × {layers}, step {k}: loss {} and {}",
            sg.loss,
            sc.loss
        );
        assert!(
            sc.grad_norm > optim.clip,
            "clipping must be active (norm {})",
            sc.grad_norm
        );
        assert!(
            (sg.grad_norm - sc.grad_norm).abs() <= 1e-5 * sc.grad_norm,
            "{cell:?} × {layers}, step {k}: norm"
        );
    }
    let pg = g.params().unwrap();
    let pc = Engine::params(&c).unwrap();
    common::assert_close("parameters after 6 SGD steps", &pg.data, &pc.data);
    let (hg, hc) = (g.hidden().unwrap(), Engine::hidden(&c).unwrap());
    assert_eq!(hc.len(), config.carry_len(b));
    common::assert_close("the carried state", &hg, &hc);
    let moved = params
        .data
        .iter()
        .zip(&pc.data)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        moved > 1e-3,
        "the parameters barely moved ({moved}): the test would prove nothing"
    );
    assert_eq!(g.optimizer_state().unwrap().step, 6);
}

/// The GPU's evaluation (forward and loss from a zero state carried through the chunks, on its own
/// batch size) gives the CPU's loss, for both recurrence strategies.
#[test]
fn gpu_evaluation_matches_cpu() {
    use unroll::gpu::Recurrence;
    let _ = common::gpu();
    let text = builtin_corpus(600, 4);
    let vocab = unroll::data::Vocab::from_text(&text);
    let tokens = vocab.encode(text.as_bytes()).unwrap();
    let streams = Streams::new(&tokens, 3, 10, "validation").unwrap();
    let chunks: Vec<_> = (0..4).map(|k| streams.chunk(k)).collect();
    let lstm = ModelConfig::tokens(vocab.len(), 36).with_cell(Cell::Lstm, 2);
    let runs = [
        (ModelConfig::tokens(vocab.len(), 36), Recurrence::Ordered),
        (ModelConfig::tokens(vocab.len(), 36), Recurrence::Grid),
        (lstm, Recurrence::Ordered),
    ];
    for (config, recurrence) in runs {
        let params = Params::init(config, 8);
        let mut c = CpuTrainer::new(params.clone(), 5, 10, OptimizerConfig::default()).unwrap();
        let want = Engine::evaluate(&mut c, &chunks).unwrap();
        let shape = TrainerShape {
            eval_batch: Some(3),
            recurrence: Some(recurrence),
            ..TrainerShape::new(5, 10)
        };
        let mut g = GpuTrainer::new(
            gpu_context(),
            config,
            shape,
            OptimizerConfig::default(),
            &params,
        )
        .unwrap();
        let got = g.evaluate(&chunks).unwrap();
        assert!(
            (got - want).abs() <= 1e-5 * want,
            "{:?} × {}, {recurrence:?}: GPU {got}, CPU {want}",
            config.cell,
            config.layers
        );
    }
}

fn gpu_context() -> unroll::gpu::Gpu {
    unroll::gpu::Gpu::new(&AdapterChoice::default()).unwrap()
}

/// optimizer.wgsl against optim.rs on the same gradients, for every optimizer, with clipping and
/// decay: the update rules agree element by element. (Fed gradients computed separately by each
/// path, Adagrad and Adam would not agree this closely: they divide each gradient element by its
/// own magnitude, so the two paths' rounding differences in a tiny gradient element become
/// differences of a learning-rate's size in its update.)
#[test]
fn gpu_optimizer_matches_cpu() {
    use rand::{RngExt, SeedableRng};
    let _ = common::gpu();
    // 23,165 parameters: the norm's first stage runs 6 workgroups.
    let config = ModelConfig::tokens(65, 100);
    let n = config.num_params();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adagrad,
        OptimizerKind::Adam,
    ] {
        let optim = OptimizerConfig {
            kind,
            lr: 0.01,
            clip: 1.0,
            decay: 0.5,
            decay_every: 2,
            ..OptimizerConfig::default()
        };
        let params = Params::init(config, 4);
        let mut g = GpuTrainer::new(
            gpu_context(),
            config,
            TrainerShape::new(1, 1),
            optim,
            &params,
        )
        .unwrap();
        let mut p = params.data.clone();
        let mut state = unroll::optim::OptimizerState::new(n);
        for step in 0..5 {
            // Gradients over several orders of magnitude, some exactly zero; the norm is above
            // the clip on odd steps and below it on even ones.
            let scale = if step % 2 == 1 { 1.0 } else { 0.01 };
            let grads: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 7 == 0 {
                        0.0
                    } else {
                        scale * rng.random_range(-1.0f32..1.0) * 10f32.powi(-(i as i32 % 4))
                    }
                })
                .collect();
            let norm_gpu = g.apply_gradients(&grads).unwrap();
            let norm_cpu = unroll::optim::update(&optim, &mut p, &grads, &mut state);
            assert!(
                (norm_gpu - norm_cpu).abs() <= 1e-6 * norm_cpu,
                "{kind:?}: norm {norm_gpu} vs {norm_cpu}"
            );
        }
        let got = g.params().unwrap().data;
        common::assert_close(&format!("{kind:?} parameters"), &got, &p);
        let s = g.optimizer_state().unwrap();
        common::assert_close(&format!("{kind:?} m"), &s.m, &state.m);
        common::assert_close(&format!("{kind:?} v"), &s.v, &state.v);
        assert_eq!(s.step, 5);
        common::assert_close(&format!("{kind:?} bias corrections"), &s.bias, &state.bias);
    }
}

fn resume_matches_straight(device: Device, cell: Cell, layers: usize, dropout: f32) {
    let off = || Tuning::off();
    resume_matches_straight_with(device, (cell, layers, dropout), None, [off(), off(), off()]);
}

/// A straight run of 60 steps against one of 30 resumed to 60, bit for bit: the three runs
/// (straight, first part, resumed) choosing their variants as `tunings` say.
fn resume_matches_straight_with(
    device: Device,
    (cell, layers, dropout): (Cell, usize, f32),
    recurrence: Option<unroll::gpu::Recurrence>,
    tunings: [Tuning; 3],
) {
    let dir = tempfile::tempdir().unwrap();
    let straight_dir = dir.path().join("straight");
    let split_dir = dir.path().join("split");
    let mut cfg = small(60);
    cfg.cell = cell;
    cfg.layers = layers;
    cfg.dropout = dropout;
    cfg.hidden = 32;
    cfg.batch = 4;
    cfg.eval_every = 20;
    cfg.checkpoint_every = 30;
    let opts = |dir: &Path, run: usize| RunOptions {
        recurrence,
        tune: tunings[run].clone(),
        ..opts(dir, device)
    };
    let straight = train(&cfg, &opts(&straight_dir, 0)).unwrap();
    // Stop at 30 (the periodic checkpoint is the end of this run), then resume to 60.
    cfg.iters = 30;
    train(&cfg, &opts(&split_dir, 1)).unwrap();
    cfg.iters = 60;
    let mut o = opts(&split_dir, 2);
    o.resume = Some(Resume {
        iters: Some(60),
        ..Resume::from(split_dir.join("model.safetensors"))
    });
    let resumed = train(&cfg, &o).unwrap();
    let a = Checkpoint::load(&straight.checkpoint).unwrap();
    let b = Checkpoint::load(&resumed.checkpoint).unwrap();
    assert_eq!(b.info.step, 60);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&a.params.data),
        bits(&b.params.data),
        "{cell:?} × {layers}: parameters differ bitwise"
    );
    assert_eq!(
        bits(&a.optimizer.as_ref().unwrap().m),
        bits(&b.optimizer.as_ref().unwrap().m)
    );
    assert_eq!(
        bits(a.hidden.as_ref().unwrap()),
        bits(b.hidden.as_ref().unwrap())
    );
    assert_eq!(straight.val_loss.to_bits(), resumed.val_loss.to_bits());
}

#[test]
fn resume_matches_straight_cpu() {
    resume_matches_straight(Device::Cpu, Cell::Rnn, 1, 0.0);
    resume_matches_straight(Device::Cpu, Cell::Lstm, 2, 0.25);
}

#[test]
fn resume_matches_straight_gpu() {
    let _ = common::gpu();
    for (cell, layers, dropout) in [
        (Cell::Rnn, 1, 0.0),
        (Cell::RnnRelu, 2, 0.0),
        (Cell::Gru, 2, 0.25),
        (Cell::Lstm, 2, 0.0),
        (Cell::Lstm, 3, 0.25),
    ] {
        resume_matches_straight(Device::Gpu, cell, layers, dropout);
    }
}

#[test]
fn resume_matches_straight_gpu_grid() {
    let _ = common::gpu();
    let grid = Some(unroll::gpu::Recurrence::Grid);
    for run in [(Cell::Gru, 2, 0.25), (Cell::Lstm, 2, 0.0)] {
        let off = || Tuning::off();
        resume_matches_straight_with(Device::Gpu, run, grid, [off(), off(), off()]);
    }
}

#[test]
fn resume_matches_straight_gpu_with_other_variants_and_a_tuned_one() {
    // The straight run, the first part and the resumed part each run another variant (tiled
    // products and tiles of their own; the default; a full tuning into a cache), and all agree
    // bit for bit: a variant changes the speed, never the bits.
    let gpu = common::gpu();
    let cache = tempfile::tempdir().unwrap();
    let tiled = Variant {
        recurrence: Recurrence::Ordered,
        tiles: Some(Tiles {
            units: 16,
            row_block: 2,
        }),
        subgroups: gpu.subgroups,
        products: Products::Tiled,
    };
    let full = Tuning {
        mode: TuneMode::Full,
        cache: Some(cache.path().to_owned()),
        fixed: None,
    };
    for run in [(Cell::Gru, 2, 0.25), (Cell::Lstm, 1, 0.0)] {
        let tunings = [Tuning::fixed(tiled), Tuning::off(), full.clone()];
        resume_matches_straight_with(Device::Gpu, run, None, tunings);
    }
    let files = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(files, 2, "one tuning file per model");
}

#[test]
fn same_seed_same_loss_curve() {
    let _ = common::gpu();
    for device in [Device::Cpu, Device::Gpu] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small(40);
        cfg.hidden = 24;
        cfg.batch = 4;
        let runs: Vec<String> = ["a", "b"]
            .iter()
            .map(|name| {
                let s = train(&cfg, &opts(&dir.path().join(name), device)).unwrap();
                let csv = std::fs::read_to_string(s.metrics).unwrap();
                // step, train loss, val loss: the timing columns differ from run to run.
                csv.lines()
                    .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        assert_eq!(
            runs[0], runs[1],
            "{device:?}: two runs with one seed differ"
        );
    }
}

#[test]
fn checkpoint_round_trip_in_pytorch_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(10);
    cfg.hidden = 20;
    cfg.batch = 3;
    let s = train(&cfg, &opts(dir.path(), Device::Cpu)).unwrap();
    let ck = Checkpoint::load(&s.checkpoint).unwrap();
    let (i, h) = (ck.params.config.input, ck.params.config.hidden);
    let f = TensorFile::open(&s.checkpoint).unwrap();
    for (name, shape) in [
        ("rnn.weight_ih_l0", vec![h, i]),
        ("rnn.weight_hh_l0", vec![h, h]),
        ("rnn.bias_ih_l0", vec![h]),
        ("rnn.bias_hh_l0", vec![h]),
        ("decoder.weight", vec![i, h]),
        ("decoder.bias", vec![i]),
        ("state.hidden", vec![1, 3, h]),
    ] {
        f.f32s(name, &shape).unwrap();
    }
    assert_eq!(
        f.f32s("rnn.weight_hh_l0", &[h, h]).unwrap(),
        ck.params.get("rnn.weight_hh_l0")
    );
    // Written again and read back: the same bits.
    let again = dir.path().join("again.safetensors");
    ck.save(&again).unwrap();
    let back = Checkpoint::load(&again).unwrap();
    assert_eq!(ck, back);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&s.checkpoint).unwrap()
    );
}

#[test]
fn learns_the_builtin_series_better_than_repeating_the_last_value() {
    let _ = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        task: unroll::train::Task::Series,
        hidden: 48,
        batch: 16,
        seq_len: 32,
        iters: 800,
        eval_every: 100,
        checkpoint_every: 0,
        optim: OptimizerConfig {
            lr: 5e-3,
            ..OptimizerConfig::default()
        },
        ..TrainConfig::default()
    };
    let s = train(&cfg, &opts(dir.path(), Device::Gpu)).unwrap();
    assert!(
        (s.val_loss as f64) < 0.6 * s.baseline_loss,
        "validation loss {} against the repeat-last-value forecast's {}",
        s.val_loss,
        s.baseline_loss
    );
    // The checkpoint keeps the columns' statistics, and the forecast undoes them.
    let ck = Checkpoint::load(&s.checkpoint).unwrap();
    let norm = ck.info.normalization.clone().unwrap();
    assert_eq!(norm.input_names, ["a", "b"]);
    let table = unroll::series::builtin_series(cfg.seed);
    let forecast = unroll::forecast::forecast(&ck.params, &norm, &table, 5).unwrap();
    assert_eq!(forecast.len(), 5);
    // Next-step forecasts stay within the range the series has.
    for row in &forecast {
        assert!(
            row[0] > -2.0 && row[0] < 5.0 && row[1] > -2.0 && row[1] < 2.0,
            "{row:?}"
        );
    }
}

/// Nothing is wasted per step: one submission, no wait unless the loss is reported, only the
/// batch's token ids uploaded, 8 bytes (the loss and the gradient norm) read back on reporting
/// steps alone, and no buffer, bind group or pipeline created after the first step.
#[test]
fn a_training_step_costs_one_submission_and_only_the_tokens() {
    let _ = common::gpu();
    let config = ModelConfig::tokens(30, 64);
    let (b, t) = (8, 16);
    let mut g = GpuTrainer::new(
        gpu_context(),
        config,
        TrainerShape::new(b, t),
        OptimizerConfig::default(),
        &Params::init(config, 1),
    )
    .unwrap();
    let batch = unroll::model::Batch::random(&config, b, t, false, 2);
    g.train_step(&batch.inputs, &batch.targets, true, true)
        .unwrap();
    let hal = |g: &GpuTrainer| {
        let c = g.gpu().device.get_internal_counters().hal;
        (
            c.buffers.read(),
            c.bind_groups.read(),
            c.compute_pipelines.read(),
            c.shader_modules.read(),
        )
    };
    let resources = hal(&g);
    assert!(
        resources.0 > 0 && resources.1 > 0 && resources.2 > 0,
        "wgpu counts its resources: {resources:?}"
    );
    let before = g.counters();
    for i in 1..=20 {
        let report = i % 5 == 0;
        let stats = g
            .train_step(&batch.inputs, &batch.targets, false, report)
            .unwrap();
        assert_eq!(
            stats.is_some(),
            report,
            "step {i}: a loss is returned on reporting steps only"
        );
    }
    let after = g.counters();
    g.gpu().wait("the test").unwrap();
    assert_eq!(after.steps - before.steps, 20);
    assert_eq!(
        after.submissions - before.submissions,
        20,
        "one submission per step"
    );
    assert_eq!(
        after.waits - before.waits,
        4,
        "a wait on each of the 4 reporting steps, no other"
    );
    assert_eq!(
        after.bytes_uploaded - before.bytes_uploaded,
        20 * 2 * (b * t * 4) as u64,
        "inputs and targets, u32 each"
    );
    assert_eq!(after.bytes_read_back - before.bytes_read_back, 4 * 8);
    assert_eq!(
        (after.dispatches - before.dispatches) as usize,
        20 * g.dispatches_per_step(),
        "the recorded dispatches, no more"
    );
    assert_eq!(
        hal(&g),
        resources,
        "(buffers, bind groups, pipelines, shader modules) after 20 more steps"
    );
}

/// Evaluation is counted where it happens: per chunk one submission, one wait and the 4 bytes of
/// its loss, and the forward dispatches recorded; and the memory the trainer reports is what wgpu
/// allocated for its buffers.
#[test]
fn evaluation_and_memory_are_measured() {
    let _ = common::gpu();
    let gpu = gpu_context();
    let buffers_before = gpu.device.get_internal_counters().hal.buffer_memory.read();
    let config = ModelConfig::tokens(30, 64);
    let (b, t, eval_b) = (8, 16, 3);
    let shape = TrainerShape {
        eval_batch: Some(eval_b),
        ..TrainerShape::new(b, t)
    };
    let mut g = GpuTrainer::new(
        gpu,
        config,
        shape,
        OptimizerConfig::default(),
        &Params::init(config, 1),
    )
    .unwrap();
    let allocated = g
        .gpu()
        .device
        .get_internal_counters()
        .hal
        .buffer_memory
        .read()
        - buffers_before;
    let reported = g.memory_bytes() as isize;
    eprintln!("memory: reported {reported} bytes, wgpu's buffer_memory grew by {allocated}");
    if allocated > 0 {
        // wgpu rounds allocations up to its alignment; never down, and not by a buffer's worth.
        assert!(
            reported <= allocated && allocated - reported < reported / 10,
            "reported {reported} bytes, wgpu allocated {allocated}"
        );
    } else {
        // Backends without the counter: every buffer's size is counted at least once.
        let n = (config.num_params() * 4) as isize;
        assert!(
            reported > 5 * n,
            "params, grads, m, v and the steps: {reported}"
        );
    }
    let chunks: Vec<_> = (0..5)
        .map(|k| {
            let batch = unroll::model::Batch::random(&config, eval_b, t, false, k);
            (batch.inputs, batch.targets)
        })
        .collect();
    let before = g.counters();
    let loss = g.evaluate(&chunks).unwrap();
    let after = g.counters();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    assert_eq!(after.submissions - before.submissions, 5);
    assert_eq!(after.waits - before.waits, 5, "one wait per chunk's loss");
    assert_eq!(after.bytes_read_back - before.bytes_read_back, 5 * 4);
    assert_eq!(
        after.bytes_uploaded - before.bytes_uploaded,
        5 * 2 * (eval_b * t * 4) as u64
    );
    let forward = after.dispatches - before.dispatches;
    assert!(
        forward > 5 && forward < 5 * g.dispatches_per_step() as u64,
        "the forward pass of each chunk, not the whole step: {forward}"
    );
}
