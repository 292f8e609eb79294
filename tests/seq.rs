//! The CPU reference for whole sequences (bidirectional layers, variable lengths, the `last` and
//! `mean` heads), pinned two ways:
//! - by the PyTorch cases in `tests/fixtures/seq/` (made by `tests/fixtures/seq_reference.py`,
//!   through `pack_padded_sequence`): every tensor they hold, within 1e-10 · max |ref| in f64 and
//!   1e-5 in f32;
//! - by central finite differences in f64 on every parameter, h0 and c0, for every cell at L = 1
//!   and 2, in one and two directions, with mixed lengths (1 and T among them), for each head.

mod common;

use std::path::PathBuf;
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::check;
use unroll::compare::compare_all;
use unroll::cpu::step;
use unroll::model::{Batch, Head, InputKind, Inputs, ModelConfig, Params, Targets, result_names};

fn seq_cases() -> Vec<PathBuf> {
    let files = common::fixtures("tests/fixtures/seq");
    assert_eq!(files.len(), 12, "every sequence case is checked");
    files
}

#[test]
fn the_reference_reproduces_every_sequence_case() {
    for path in seq_cases() {
        let o = Case::load(&path).unwrap();
        let (nb, nt, c) = (o.batch.batch, o.batch.steps, o.params.config);
        let what = path.display().to_string();
        // Every result the model has is in the file, and is compared.
        assert_eq!(o.expected.len(), result_names(&c).len(), "{what}");
        assert_eq!(o.expected_f32.len(), result_names(&c).len(), "{what}");
        let got64 = step(&o.params, &o.batch).tensors(&c, nb, nt);
        common::assert_all_pass(
            &format!("{what} in f64"),
            &compare_all(&o.expected, &got64, 1e-10),
        );
        let got32 = step(&o.params.cast::<f32>(), &o.batch).tensors(&c, nb, nt);
        common::assert_all_pass(
            &format!("{what} in f32"),
            &compare_all(&o.expected, &got32, 1e-5),
        );
        let report = check(None, &o, None, None).unwrap();
        assert!(report.pass(), "{}", report.render());
    }
}

#[test]
fn the_cases_cover_what_they_are_named_for() {
    let mut seen = (0, 0, [0; 3]);
    for path in seq_cases() {
        let o = Case::load(&path).unwrap();
        let (c, name) = (o.params.config, path.file_name().unwrap().to_string_lossy());
        assert_eq!(c.bidirectional, name.contains("_bi_"), "{name}");
        assert_eq!(o.batch.lengths.is_some(), name.contains("_len_"), "{name}");
        let head = ["_step_", "_last_", "_mean_"].map(|h| name.contains(h));
        assert_eq!(head, Head::ALL.map(|h| h == c.head), "{name}");
        seen.0 += c.bidirectional as usize;
        seen.1 += o.batch.lengths.is_some() as usize;
        (0..3).for_each(|i| seen.2[i] += head[i] as usize);
    }
    // (bidirectional, lengths, [per step, last, mean]) of the 12 cases.
    assert_eq!(seen, (8, 6, [6, 4, 2]));
}

/// The parameters a case file holds are exactly the table's: PyTorch's `state_dict` names and
/// shapes for `bidirectional=True` (`…_reverse` after each layer's forward direction).
#[test]
fn the_table_names_every_parameter_as_pytorch_does() {
    let not_params = ["inputs", "targets", "labels", "lengths", "h0", "c0"];
    for path in seq_cases() {
        let o = Case::load(&path).unwrap();
        let f = unroll::tensorfile::TensorFile::open(&path).unwrap();
        let results = result_names(&o.params.config);
        let mut stored: Vec<String> = f
            .names()
            .into_iter()
            .filter(|n| !n.starts_with("f32.") && !not_params.contains(&n.as_str()))
            .filter(|n| !results.contains(n))
            .collect();
        let table = o.params.config.table();
        let mut names: Vec<String> = table.entries.iter().map(|e| e.name.clone()).collect();
        stored.sort();
        names.sort();
        assert_eq!(stored, names, "{}", path.display());
    }
    let table = ModelConfig::tokens(7, 5)
        .with_cell(Cell::Gru, 2)
        .bidirectional()
        .table();
    let order: Vec<&str> = table.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        order[4..8],
        [
            "rnn.weight_ih_l0_reverse",
            "rnn.weight_hh_l0_reverse",
            "rnn.bias_ih_l0_reverse",
            "rnn.bias_hh_l0_reverse"
        ]
    );
    assert_eq!(table.layer(1, 0).weight_ih.shape, [15, 10]);
    assert_eq!(table.layer(1, 1).state, 3);
    assert_eq!(table.get("decoder.weight").unwrap().shape, [7, 10]);
}

/// A small random model and batch with lengths 1, T and one between.
fn small(config: ModelConfig, seed: u64) -> (Params<f64>, Batch) {
    let r = RandomCase {
        batch: 3,
        steps: 4,
        seed,
        init_scale: Some(0.6),
        random_state: true,
    };
    let case = Case::random(config, r).unwrap();
    (case.params, case.batch.with_lengths(vec![4, 1, 3]))
}

fn config(cell: Cell, layers: usize, kind: InputKind) -> ModelConfig {
    match kind {
        InputKind::Tokens => ModelConfig {
            output: 3,
            ..ModelConfig::tokens(5, 3)
        },
        InputKind::Dense => ModelConfig::dense(4, 3, 3),
    }
    .with_cell(cell, layers)
}

#[test]
fn finite_differences_pin_every_gradient_of_whole_sequences() {
    let mut seed = 40;
    for cell in Cell::ALL {
        for layers in [1, 2] {
            for (i, head) in Head::ALL.into_iter().enumerate() {
                for bidirectional in [false, true] {
                    let kind = [InputKind::Tokens, InputKind::Dense][(i + layers) % 2];
                    let c = ModelConfig {
                        bidirectional,
                        ..config(cell, layers, kind).with_head(head)
                    };
                    seed += 1;
                    let (params, batch) = small(c, seed);
                    common::assert_finite_differences(&params, &batch, &c.to_string());
                }
            }
        }
    }
}

/// Writes `v` at every padded step of a batch: inputs (and per-step targets) there.
fn scramble_padding(batch: &mut Batch, config: &ModelConfig) {
    let nb = batch.batch;
    let padded: Vec<usize> = (0..batch.steps * nb)
        .filter(|p| p / nb >= batch.length(p % nb))
        .collect();
    assert!(!padded.is_empty());
    for &p in &padded {
        match &mut batch.inputs {
            Inputs::Tokens(x) => x[p] = (x[p] + 1) % config.input as u32,
            Inputs::Dense(x) => x[p * config.input..][..config.input].fill(9.0),
        }
        match &mut batch.targets {
            Targets::Tokens(y) => y[p] = (y[p] + 1) % config.output as u32,
            Targets::Dense(y) => y[p * config.output..][..config.output].fill(-9.0),
            Targets::Labels(_) => {}
        }
    }
}

#[test]
fn padded_steps_change_nothing() {
    for cell in Cell::ALL {
        for head in Head::ALL {
            for kind in [InputKind::Tokens, InputKind::Dense] {
                let c = config(cell, 2, kind).with_head(head).bidirectional();
                let (params, batch) = small(c, 7);
                let mut other = batch.clone();
                scramble_padding(&mut other, &c);
                assert_ne!(batch, other);
                assert_eq!(step(&params, &batch), step(&params, &other), "{c}");
            }
        }
    }
}

#[test]
fn full_lengths_are_no_lengths() {
    for head in Head::ALL {
        let c = config(Cell::Lstm, 2, InputKind::Dense)
            .with_head(head)
            .bidirectional();
        let (params, batch) = small(c, 9);
        let full = Batch {
            lengths: Some(vec![4; 3]),
            ..batch.clone()
        };
        let none = Batch {
            lengths: None,
            ..batch
        };
        assert_eq!(step(&params, &full), step(&params, &none), "{c}");
    }
}

/// PyTorch's rules that the oracle states: h_n of the top forward direction is the output at
/// each sequence's last step, the top reverse direction's is the output at step 0, and the
/// output is zero at padded steps.
#[test]
fn last_states_sit_where_pytorch_puts_them() {
    let c = config(Cell::Gru, 2, InputKind::Tokens).bidirectional();
    let (params, batch) = small(c, 11);
    let out = step(&params, &batch);
    let (nb, nh, nd) = (3, c.hidden, c.features());
    for b in 0..nb {
        let n = batch.length(b);
        let at = |t: usize| &out.output[(t * nb + b) * nd..][..nd];
        let h_n = |s: usize| &out.h_n[(s * nb + b) * nh..][..nh];
        assert_eq!(h_n(2), &at(n - 1)[..nh]);
        assert_eq!(h_n(3), &at(0)[nh..]);
        for t in n..batch.steps {
            assert!(at(t).iter().all(|&v| v == 0.0), "b={b} t={t}");
        }
    }
}

#[test]
fn bad_lengths_and_labels_are_refused_with_what_to_do() {
    let c = config(Cell::Rnn, 1, InputKind::Tokens).with_head(Head::Last);
    let (_, batch) = small(c, 3);
    for (lengths, needle) in [
        (vec![4, 0, 3], "sequence 1 has length 0"),
        (vec![4, 5, 3], "sequence 1 has length 5"),
        (vec![4, 3], "2 lengths for a batch of 3"),
    ] {
        let err = batch
            .clone()
            .with_lengths(lengths)
            .validate(&c)
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let bad = Batch {
        targets: Targets::Labels(vec![0, 3, 1]),
        ..batch.clone()
    };
    let err = bad.validate(&c).unwrap_err().to_string();
    assert!(err.contains("label 3 is outside"), "{err}");
    let per_step = Batch {
        targets: Targets::Tokens(vec![0; 12]),
        ..batch
    };
    let err = per_step.validate(&c).unwrap_err().to_string();
    assert!(err.contains("needs one label per sequence"), "{err}");
}

fn unroll(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_runs_sequence_cases_and_generated_models_on_the_reference_and_the_gpu() {
    let case = "tests/fixtures/seq/seq_gru_L2_bi_tokens_len_last_I13_H9_B4_T7_s15.safetensors";
    let out = unroll(&["check", "--device", "cpu", "--case", case]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(
        text.contains("bidirectional, last head, lengths 3,1,4,7"),
        "{text}"
    );
    assert!(text.contains("grad.rnn.weight_hh_l1_reverse") && text.contains("features"));
    assert!(text.ends_with("check passed\n"), "{text}");
    let generated = [
        "check",
        "--device",
        "cpu",
        "--cell",
        "lstm",
        "--layers",
        "2",
        "--bidirectional",
        "--head",
        "mean",
        "--hidden",
        "5",
        "--input",
        "7",
        "--batch",
        "3",
        "--steps",
        "4",
        "--lengths",
        "4,1,2",
        "--random-h0",
    ];
    let out = unroll(&generated);
    assert!(out.status.success(), "{}", common::text(&out));
    // On the GPU: the case and the generated model, compared with the reference, pass.
    let on_gpu: Vec<&str> = ["check"]
        .into_iter()
        .chain(generated[3..].iter().copied())
        .collect();
    for args in [&["check", "--case", case][..], &on_gpu[..]] {
        let out = unroll(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("check passed"),
            "{args:?}\n{}",
            common::text(&out)
        );
    }
    // The flags that generate a model do not apply to a stored case.
    let out = unroll(&[
        "check",
        "--device",
        "cpu",
        "--case",
        case,
        "--bidirectional",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--bidirectional does not apply"),
        "{err}"
    );
}

#[test]
fn a_saved_sequence_case_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.safetensors");
    let c = config(Cell::Gru, 2, InputKind::Dense)
        .with_head(Head::Last)
        .bidirectional();
    let (params, batch) = small(c, 13);
    let case = Case {
        params,
        batch,
        expected: vec![],
        expected_f32: vec![],
    };
    case.save(&path).unwrap();
    let back = Case::load(&path).unwrap();
    assert_eq!(back.params.config, c);
    assert_eq!(back.batch, case.batch);
    let (nb, nt) = (3, 4);
    let want = step(&case.params, &case.batch).tensors(&c, nb, nt);
    common::assert_all_pass("saved case", &compare_all(&back.expected, &want, 0.0));
    assert_eq!(back.expected.len(), result_names(&c).len());
}
