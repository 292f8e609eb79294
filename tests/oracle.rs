//! The GPU step and both precisions of the CPU reference against the PyTorch oracle
//! (`tests/fixtures/grad_ref_V65_H32_B4_T16_seed7.safetensors`, made by `grad_reference.py`).

mod common;

use std::path::Path;
use unroll::case::Case;
use unroll::check::{RTOL_F32, RTOL_F64, check};
use unroll::compare::compare_all;
use unroll::cpu;
use unroll::gpu::Recurrence;
use unroll::model::Params;

const ORACLE: &str = "tests/fixtures/grad_ref_V65_H32_B4_T16_seed7.safetensors";

fn oracle() -> Case {
    Case::load(Path::new(ORACLE)).expect("the oracle fixture loads")
}

#[test]
fn cpu_f64_reproduces_the_oracle() {
    let case = oracle();
    let config = case.params.config;
    assert_eq!((config.input, config.hidden, config.output), (65, 32, 65));
    assert_eq!((case.batch.batch, case.batch.steps), (4, 16));
    let expected = &case.expected;
    // loss, output and h_n (from hs), logits, grad.h0 and the six parameters' gradients.
    assert_eq!(expected.len(), 11, "every oracle tensor is compared");
    assert_eq!(case.expected_f32.len(), 11, "and PyTorch's float32 results");
    let got = cpu::step(&case.params, &case.batch).tensors(&config, 4, 16);
    common::assert_all_pass("CPU f64 vs oracle", &compare_all(expected, &got, RTOL_F64));
}

#[test]
fn cpu_f32_reproduces_the_oracle() {
    let case = oracle();
    let config = case.params.config;
    let p32: Params<f32> = case.params.cast();
    let got = cpu::step(&p32, &case.batch).tensors(&config, 4, 16);
    common::assert_all_pass(
        "CPU f32 vs oracle",
        &compare_all(&case.expected, &got, RTOL_F32),
    );
}

#[test]
fn gpu_reproduces_the_oracle() {
    let gpu = common::gpu();
    for recurrence in [Recurrence::Ordered, Recurrence::Grid] {
        let report = check(Some(&gpu), &oracle(), Some(recurrence), None).unwrap();
        assert_eq!(report.sections.len(), 3);
        assert!(report.pass(), "{}", report.render());
    }
}

#[test]
fn check_dump_holds_both_paths() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.safetensors");
    check(Some(&gpu), &oracle(), None, Some(&path)).unwrap();
    let f = unroll::tensorfile::TensorFile::open(&path).unwrap();
    for prefix in ["gpu", "cpu"] {
        for (name, shape) in [
            ("loss", vec![]),
            ("output", vec![16, 4, 32]),
            ("h_n", vec![1, 4, 32]),
            ("grad.rnn.weight_ih_l0", vec![32, 65]),
            ("grad.rnn.weight_hh_l0", vec![32, 32]),
            ("grad.rnn.bias_ih_l0", vec![32]),
            ("grad.rnn.bias_hh_l0", vec![32]),
            ("grad.decoder.weight", vec![65, 32]),
            ("grad.decoder.bias", vec![65]),
            ("grad.h0", vec![1, 4, 32]),
        ] {
            f.f32s(&format!("{prefix}.{name}"), &shape).unwrap();
        }
    }
}
