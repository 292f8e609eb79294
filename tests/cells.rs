//! The CPU reference for stacked RNN (tanh, relu), GRU and LSTM layers, pinned two ways:
//! - by the PyTorch cases in `tests/fixtures/cells/` (made by `tests/fixtures/cells_reference.py`):
//!   loss, output, h_n, c_n, logits and every gradient, within 1e-10 · max |ref| in f64 and
//!   1e-5 in f32;
//! - by central finite differences in f64 on every parameter and on h0 and c0, for every cell at
//!   L = 1 and L = 2, tokens and dense.

mod common;

use unroll::case::Case;
use unroll::cell::Cell;
use unroll::check::check;
use unroll::compare::{Comparison, compare_all, table};
use unroll::cpu::step;
use unroll::model::{Batch, InputKind, Inputs, ModelConfig, Params, Targets};

fn assert_pass(title: &str, rows: &[Comparison]) {
    assert!(!rows.is_empty());
    assert!(rows.iter().all(Comparison::pass), "{}", table(title, rows));
}

#[test]
fn the_reference_reproduces_every_pytorch_case() {
    let files = common::fixtures("tests/fixtures/cells");
    assert_eq!(files.len(), 7, "every oracle case is checked");
    for path in files {
        let o = Case::load(&path).unwrap();
        let (nb, nt, c) = (o.batch.batch, o.batch.steps, o.params.config);
        // Every tensor the file holds is compared, and every parameter has its gradient there.
        assert_eq!(
            o.expected.len(),
            5 + c.table().entries.len() + 2 * c.cell.has_cell_state() as usize,
            "{}",
            path.display()
        );
        let got64 = step(&o.params, &o.batch).tensors(&c, nb, nt);
        assert_pass(
            &format!("{} in f64", path.display()),
            &compare_all(&o.expected, &got64, 1e-10),
        );
        let got32 = step(&o.params.cast::<f32>(), &o.batch).tensors(&c, nb, nt);
        assert_pass(
            &format!("{} in f32", path.display()),
            &compare_all(&o.expected, &got32, 1e-5),
        );
        // What `unroll check --device cpu --case` reports on it passes too.
        let report = check(None, &o, None, None).unwrap();
        assert!(report.pass(), "{}", report.render());
    }
}

/// A small model of every kind with random parameters and state.
fn small(cell: Cell, layers: usize, kind: InputKind, seed: u64) -> (Params<f64>, Batch) {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let config = match kind {
        InputKind::Tokens => ModelConfig {
            output: 3,
            ..ModelConfig::tokens(5, 4)
        },
        InputKind::Dense => ModelConfig::dense(5, 4, 3),
    }
    .with_cell(cell, layers);
    let (nb, nt) = (2, 3);
    let params: Vec<f64> = (0..config.table().len)
        .map(|_| rng.random_range(-0.6..0.6))
        .collect();
    let state = |rng: &mut rand::rngs::StdRng| {
        (0..layers * nb * config.hidden)
            .map(|_| rng.random_range(-0.5f32..0.5))
            .collect::<Vec<f32>>()
    };
    let (inputs, targets) = match kind {
        InputKind::Tokens => (
            Inputs::Tokens((0..nt * nb).map(|_| rng.random_range(0..5u32)).collect()),
            Targets::Tokens((0..nt * nb).map(|_| rng.random_range(0..3u32)).collect()),
        ),
        InputKind::Dense => (
            Inputs::Dense(
                (0..nt * nb * 5)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect(),
            ),
            Targets::Dense(
                (0..nt * nb * 3)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect(),
            ),
        ),
    };
    let h0 = state(&mut rng);
    let c0 = if cell.has_cell_state() {
        state(&mut rng)
    } else {
        vec![]
    };
    (
        Params {
            config,
            data: params,
        },
        Batch {
            batch: nb,
            steps: nt,
            inputs,
            targets,
            h0,
            c0,
            lengths: None,
        },
    )
}

#[test]
fn finite_differences_pin_every_gradient_of_every_cell() {
    for cell in [Cell::Rnn, Cell::RnnRelu, Cell::Gru, Cell::Lstm] {
        for layers in [1, 2] {
            for kind in [InputKind::Tokens, InputKind::Dense] {
                let (params, batch) = small(cell, layers, kind, 7 + layers as u64);
                let what = format!("{cell:?} L={layers} {kind}");
                common::assert_finite_differences(&params, &batch, &what);
            }
        }
    }
}

#[test]
fn the_table_names_every_parameter_as_pytorch_does() {
    let config = ModelConfig::tokens(29, 37).with_cell(Cell::Lstm, 2);
    let table = config.table();
    let names: Vec<(&str, &[usize])> = table
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.shape.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            ("rnn.weight_ih_l0", &[148, 29][..]),
            ("rnn.weight_hh_l0", &[148, 37][..]),
            ("rnn.bias_ih_l0", &[148][..]),
            ("rnn.bias_hh_l0", &[148][..]),
            ("rnn.weight_ih_l1", &[148, 37][..]),
            ("rnn.weight_hh_l1", &[148, 37][..]),
            ("rnn.bias_ih_l1", &[148][..]),
            ("rnn.bias_hh_l1", &[148][..]),
            ("decoder.weight", &[29, 37][..]),
            ("decoder.bias", &[29][..]),
        ]
    );
    let last = table.entries.last().unwrap();
    assert_eq!(table.len, last.offset + last.len);
}

#[test]
fn check_reproduces_every_case_of_stacked_cells_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("tests/fixtures/cells").unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "safetensors") {
            continue;
        }
        let dump = dir.path().join("dump.safetensors");
        for device in ["cpu", "gpu"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
                .args(["check", "--device", device, "--case"])
                .arg(&path)
                .arg("--dump")
                .arg(&dump)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {text}{err}", path.display());
            assert!(
                text.contains("grad.rnn.weight_hh_l0") && text.ends_with("check passed\n"),
                "{text}"
            );
            assert_eq!(text.contains("GPU ("), device == "gpu", "{text}");
            // The dump holds each path's results under the case's names.
            let f = unroll::tensorfile::TensorFile::open(&dump).unwrap();
            assert!(f.has("cpu.grad.rnn.weight_ih_l0") && f.has("cpu.logits"));
            assert_eq!(f.has("gpu.grad.rnn.weight_ih_l0"), device == "gpu");
        }
    }
}

/// A checkpoint of each cell holds exactly the parameters that `torch.nn.{RNN,GRU,LSTM}` with
/// `num_layers=L` and an `nn.Linear` have: the names and shapes of their `state_dict()`, as
/// PyTorch wrote them into the cases of `tests/fixtures/cells/` (so that
/// `load_state_dict(strict=True)` takes it).
#[test]
fn checkpoints_hold_pytorchs_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("tests/fixtures/cells").unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "safetensors") {
            continue;
        }
        let case = Case::load(&path).unwrap();
        let params = |f: &unroll::tensorfile::TensorFile| -> Vec<(String, Vec<usize>)> {
            let mut v: Vec<(String, Vec<usize>)> = f
                .names()
                .into_iter()
                .filter(|n| n.starts_with("rnn.") || n.starts_with("decoder."))
                .map(|n| {
                    let shape = f.floats(&n, None).unwrap().0;
                    (n, shape)
                })
                .collect();
            v.sort();
            v
        };
        let pytorch = params(&unroll::tensorfile::TensorFile::open(&path).unwrap());
        let ck = unroll::checkpoint::Checkpoint {
            params: case.params.cast(),
            info: unroll::checkpoint::RunInfo {
                format: unroll::checkpoint::FORMAT,
                config: case.params.config,
                vocab: None,
                normalization: None,
                train: None,
                step: 0,
                best: None,
                classes: None,
            },
            optimizer: None,
            hidden: None,
            positions: None,
        };
        let saved = dir.path().join("ck.safetensors");
        ck.save(&saved).unwrap();
        let ours = params(&unroll::tensorfile::TensorFile::open(&saved).unwrap());
        assert_eq!(ours, pytorch, "{}", path.display());
        assert!(ours.len() >= 6);
    }
}

#[test]
fn initial_parameters_are_drawn_in_pytorchs_bounds() {
    // H = 8: the recurrence's bound 1/√8; bidirectional, the decoder reads 2H = 16: 1/√16.
    for bidirectional in [false, true] {
        let config = ModelConfig {
            bidirectional,
            ..ModelConfig::dense(3, 8, 5).with_cell(Cell::Lstm, 2)
        };
        let params = Params::init(config, 9);
        let table = config.table();
        let largest = |names: &[&str]| {
            let of = |e: &&unroll::param_table::Entry| names.iter().any(|n| e.name.starts_with(n));
            let entries = table.entries.iter().filter(of);
            entries
                .flat_map(|e| e.of(&params.data))
                .fold(0.0f32, |a, v| a.max(v.abs()))
        };
        let (rnn, decoder) = (largest(&["rnn."]), largest(&["decoder."]));
        let k = 1.0 / 8f32.sqrt();
        let k_decoder = if bidirectional { 0.25 } else { k };
        assert!(rnn <= k && rnn > 0.9 * k, "{rnn} against {k}");
        assert!(
            decoder <= k_decoder && decoder > 0.8 * k_decoder,
            "bidirectional {bidirectional}: {decoder} against {k_decoder}"
        );
    }
}
