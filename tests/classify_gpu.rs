//! Training classifiers of whole sequences on the GPU: the trainer's steps for batches of their
//! own B and T against the CPU reference's, step by step (loss, gradient norm, parameters,
//! predictions), and a run that resumes bit for bit.

mod common;

use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::dropout::DropoutSpec;
use unroll::engine::{CpuTrainer, Engine};
use unroll::gpu::{AdapterChoice, Gpu, GpuTrainer, TrainerShape};
use unroll::model::{Batch, Head, ModelConfig, Params};
use unroll::optim::OptimizerConfig;

/// A batch of whole sequences of the model: B, T, its lengths, zero initial states.
fn batch(config: ModelConfig, (nb, nt): (usize, usize), lengths: Vec<usize>, seed: u64) -> Batch {
    let r = RandomCase {
        batch: nb,
        steps: nt,
        seed,
        init_scale: None,
        random_state: false,
    };
    Case::random(config, r).unwrap().batch.with_lengths(lengths)
}

#[test]
fn gpu_training_on_whole_sequences_matches_the_cpu() {
    let _ = common::gpu();
    for (head, dropout) in [(Head::Last, None), (Head::Mean, Some(0.3))] {
        let config = ModelConfig::dense(3, 7, 4)
            .with_cell(Cell::Lstm, 2)
            .with_head(head)
            .bidirectional();
        let dropout = dropout.map(|p| DropoutSpec { p, seed: 5 });
        let optim = OptimizerConfig::default();
        let params = Params::init(config, 3);
        let shape = TrainerShape {
            dropout,
            ..TrainerShape::new(5, 9)
        };
        let gpu = Gpu::new(&AdapterChoice::default()).unwrap();
        let mut g = GpuTrainer::new(gpu, config, shape, optim, &params).unwrap();
        let mut c = CpuTrainer::new(params.clone(), 5, 9, optim)
            .unwrap()
            .with_dropout(dropout);
        // The training step's shape, shorter T (another step), fewer rows, T = 1.
        let batches = [
            batch(config, (5, 9), vec![9, 1, 4, 7, 2], 1),
            batch(config, (5, 4), vec![4, 3, 1, 4, 2], 2),
            batch(config, (3, 6), vec![6, 2, 5], 3),
            batch(config, (5, 9), vec![3, 9, 9, 1, 5], 4),
            batch(config, (2, 1), vec![1, 1], 5),
            batch(config, (5, 4), vec![1, 1, 4, 2, 3], 6),
        ];
        for (k, b) in batches.iter().enumerate() {
            let sg = g.train_sequences(b, true).unwrap().unwrap();
            let sc = Engine::train_sequences(&mut c, b, true).unwrap().unwrap();
            let what = format!("{head:?}, step {k}");
            assert!(
                (sg.loss - sc.loss).abs() <= 1e-5 * sc.loss.abs(),
                "{what}: loss {} and {}",
                sg.loss,
                sc.loss
            );
            assert!(
                (sg.grad_norm - sc.grad_norm).abs() <= 1e-5 * sc.grad_norm,
                "{what}: norm {} and {}",
                sg.grad_norm,
                sc.grad_norm
            );
            let (pg, pc) = (g.params().unwrap(), Engine::params(&c).unwrap());
            common::assert_close(&format!("{what}: parameters"), &pg.data, &pc.data);
            let (yg, yc) = (g.predict(b).unwrap(), Engine::predict(&mut c, b).unwrap());
            common::assert_close(&format!("{what}: predictions"), &yg, &yc);
        }
        let moved = params
            .data
            .iter()
            .zip(&Engine::params(&c).unwrap().data)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(moved > 1e-3, "the parameters barely moved ({moved})");
    }
}
