//! The GPU's tanh against the correctly rounded one, where the builtin of software adapters was
//! far off: near 0 (hundreds of ulps) and where a unit saturates (1.0 for 1 − 6·10⁻⁸, which made
//! 1 − h², and so the backward pass, wrong by up to 100 %). Every kernel that applies tanh is
//! reached: every cell's step inside the recurrence, in both orderings.

mod common;

use unroll::gpu::{Kernels, ModelStep, Recurrence, StepOptions};
use unroll::model::{Batch, Inputs, ModelConfig, Params, Targets};

/// The most ulps the GPU's h may stand from the correctly rounded value.
const ULPS: i64 = 8;

/// h of a model of one unit per layer whose weights are all 1 and biases 0, for inputs `xs`:
/// h = tanh(x) with one layer, tanh(tanh(x)) with two.
fn top_h(gpu: &unroll::gpu::Gpu, layers: usize, recurrence: Recurrence, xs: &[f32]) -> Vec<f32> {
    let config = ModelConfig::dense(1, 1, 1).with_cell(unroll::Cell::Rnn, layers);
    let mut params = Params::<f32>::zeros(config);
    for e in config.table().entries {
        if e.name.contains("weight") {
            params.data[e.offset] = 1.0;
        }
    }
    let n = xs.len();
    let kernels = Kernels::new(&gpu.device);
    let options = StepOptions {
        recurrence: Some(recurrence),
        ..Default::default()
    };
    let step = ModelStep::new(gpu, &kernels, config, (n, 1), options).unwrap();
    let batch = Batch {
        batch: n,
        steps: 1,
        inputs: Inputs::Dense(xs.to_vec()),
        targets: Targets::Dense(vec![0.0; n]),
        h0: vec![0.0; layers * n],
        c0: vec![],
        lengths: None,
    };
    step.run_and_read(gpu, &params, &batch).unwrap().output
}

#[test]
fn tanh_is_within_a_few_ulps_of_the_correctly_rounded_value() {
    let gpu = common::gpu();
    let n = 2048;
    let ranges = [
        (-0.7f32, 0.7f32),
        (0.3, 5.0),
        (-5.0, -0.3),
        (5.0, 12.0),
        (-12.0, -5.0),
    ];
    for layers in [1, 2] {
        for recurrence in [Recurrence::Ordered, Recurrence::Grid] {
            for (lo, hi) in ranges {
                let xs: Vec<f32> = (0..n)
                    .map(|i| lo + i as f32 * (hi - lo) / n as f32)
                    .collect();
                let got = top_h(&gpu, layers, recurrence, &xs);
                for (&x, &h) in xs.iter().zip(&got) {
                    // Each layer's h rounded to f32, as the GPU stores it.
                    let mut want = x;
                    for _ in 0..layers {
                        want = (want as f64).tanh() as f32;
                    }
                    let ulps = (h.to_bits() as i64 - want.to_bits() as i64).abs();
                    assert!(
                        ulps <= ULPS,
                        "{layers} layer(s), {recurrence:?}: tanh({x}) gave {h:e}, the correctly \
                         rounded value is {want:e} ({ulps} ulps off)"
                    );
                }
            }
        }
    }
}
