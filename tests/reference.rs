//! The CPU reference, pinned: a case worked by hand, and central finite differences in f64 on
//! every parameter and on h_0. (The PyTorch oracle pins it a third way, in `oracle.rs`.)

use unroll::cell::Cell;
use unroll::cpu;
use unroll::model::{Batch, Inputs, ModelConfig, Params, Targets};

/// I = H = O = 1, B = 1, T = 2, dense, worked by hand:
///   U = 0.5, W = −0.3, b_ih = 0.1, b_hh = 0, V = 2, c = −1, h_0 = 0, x = (1, −1),
///   targets = (0.5, 0)
///   a_1 = 0.5·1 + 0.1 = 0.6                      h_1 = tanh 0.6 = 0.53704956699803530
///   a_2 = 0.5·(−1) − 0.3·h_1 + 0.1               h_2 = tanh a_2 = −0.50880415218383930
///   y_t = 2 h_t − 1
///   L   = (½(y_1 − 0.5)² + ½ y_2²) / 2           = 1.0630337043790792
///   dy_1 = (y_1 − 0.5)/2, dy_2 = y_2/2
///   dA_2 = 2 dy_2 (1 − h_2²),  dA_1 = (2 dy_1 + dA_2 W)(1 − h_1²)
///   dV = dy_1 h_1 + dy_2 h_2,  dc = dy_1 + dy_2,  dW = dA_2 h_1,  dU = dA_1 − dA_2,
///   db_ih = db_hh = dA_1 + dA_2,  dh_0 = dA_1 W
#[test]
fn hand_worked_case() {
    let config = ModelConfig::dense(1, 1, 1);
    let params = Params {
        config,
        data: vec![0.5f64, -0.3, 0.1, 0.0, 2.0, -1.0],
    };
    let batch = Batch {
        batch: 1,
        steps: 2,
        inputs: Inputs::Dense(vec![1.0, -1.0]),
        targets: Targets::Dense(vec![0.5, 0.0]),
        h0: vec![0.0],
        c0: vec![],
        lengths: None,
    };
    let out = cpu::step(&params, &batch);
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() <= 1e-15,
            "{what}: got {got:.17}, worked by hand {want:.17}"
        );
    };
    close(out.output[0], 0.5370495669980353, "h_1");
    close(out.output[1], -0.5088041521838393, "h_2");
    close(out.loss, 1.0630337043790792, "loss");
    // Gradients in the table's layout: U, W, b_ih, b_hh, V, c.
    close(out.grads[0], 1.511428709385074, "dU");
    close(out.grads[1], -0.8030429709350286, "dW");
    close(out.grads[2], -1.4791443039173144, "db_ih");
    close(out.grads[3], -1.4791443039173144, "db_hh");
    close(out.grads[4], 0.3989188035356859, "dV");
    close(out.grads[5], -1.221754585185804, "dc");
    close(out.dh0[0], -0.004842660820163914, "dh0");
}

/// Central differences on every parameter: `max |numeric − analytic| ≤ 1e-6 · max |analytic|`
/// for each tensor.
fn finite_differences(config: ModelConfig, batch: usize, steps: usize, seed: u64) {
    let params: Params<f64> = Params::init(config, seed).cast();
    let data = Batch::random(&config, batch, steps, true, seed + 1);
    let analytic = cpu::step(&params, &data);
    let eps = 1e-6;
    let mut p = params.clone();
    for slot in config.table().entries {
        let mut max_diff: f64 = 0.0;
        let mut max_ref: f64 = 0.0;
        for i in slot.offset..slot.offset + slot.len {
            let orig = p.data[i];
            p.data[i] = orig + eps;
            let up = cpu::step(&p, &data).loss;
            p.data[i] = orig - eps;
            let down = cpu::step(&p, &data).loss;
            p.data[i] = orig;
            let numeric = (up - down) / (2.0 * eps);
            max_diff = max_diff.max((numeric - analytic.grads[i]).abs());
            max_ref = max_ref.max(analytic.grads[i].abs());
        }
        assert!(
            max_ref > 0.0,
            "d{} is all zero: the check would prove nothing",
            slot.name
        );
        let rel = max_diff / max_ref;
        assert!(
            rel <= 1e-6,
            "d{}: finite differences disagree, relative error {rel:.3e}",
            slot.name
        );
    }
}

#[test]
fn finite_differences_tokens() {
    finite_differences(ModelConfig::tokens(5, 4), 2, 4, 1);
}

#[test]
fn finite_differences_dense() {
    finite_differences(ModelConfig::dense(3, 4, 2), 2, 4, 2);
}

/// dh_0 by central differences. h_0 is stored in f32, so the values and the step are powers of two
/// that f32 holds exactly.
#[test]
fn finite_differences_h0() {
    let config = ModelConfig::tokens(5, 4);
    let params: Params<f64> = Params::init(config, 3).cast();
    let mut data = Batch::random(&config, 2, 3, false, 4);
    for (i, h) in data.h0.iter_mut().enumerate() {
        *h = (i as f32 - 3.5) / 8.0;
    }
    let analytic = cpu::step(&params, &data).dh0;
    let eps = 2f32.powi(-12);
    let mut max_diff: f64 = 0.0;
    let mut max_ref: f64 = 0.0;
    for (i, &want) in analytic.iter().enumerate() {
        let orig = data.h0[i];
        data.h0[i] = orig + eps;
        let up = cpu::step(&params, &data).loss;
        data.h0[i] = orig - eps;
        let down = cpu::step(&params, &data).loss;
        data.h0[i] = orig;
        let numeric = (up - down) / (2.0 * eps as f64);
        max_diff = max_diff.max((numeric - want).abs());
        max_ref = max_ref.max(want.abs());
    }
    assert!(max_ref > 0.0);
    assert!(
        max_diff / max_ref <= 1e-6,
        "dh0: relative error {:.3e}",
        max_diff / max_ref
    );
}

/// The inference stepper (sampling, forecasting) computes the forward pass of the reference, for
/// every cell at one and two layers.
#[test]
fn stepper_matches_the_reference_forward() {
    let cells = [Cell::Rnn, Cell::RnnRelu, Cell::Gru, Cell::Lstm];
    let configs = cells.into_iter().flat_map(|cell| {
        [1, 2].into_iter().flat_map(move |l| {
            [ModelConfig::tokens(7, 9), ModelConfig::dense(3, 9, 3)].map(|c| c.with_cell(cell, l))
        })
    });
    for config in configs {
        let params = Params::init(config, 5);
        let batch = Batch::random(&config, 1, 6, false, 6);
        let fwd = cpu::forward(&params, &batch);
        let mut s = unroll::sample::Stepper::new(&params).unwrap();
        for t in 0..6 {
            match &batch.inputs {
                Inputs::Tokens(x) => s.feed_token(x[t]),
                Inputs::Dense(x) => s.feed(&x[t * 3..(t + 1) * 3]),
            }
            let want = &fwd.logits[t * config.output..(t + 1) * config.output];
            for (a, b) in s.output().iter().zip(want) {
                assert!((a - b).abs() <= 1e-6, "{config:?} t={t}: {a} vs {b}");
            }
        }
    }
}
