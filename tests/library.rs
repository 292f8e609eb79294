//! The library's front door as a program uses it: `Trainer` on either device, resuming from a
//! checkpoint's bytes, a series of one's own, and the errors of bad calls.

mod common;

use unroll::checkpoint::Checkpoint;
use unroll::data::{Streams, Vocab};
use unroll::series::SeriesStreams;
use unroll::{Batch, Cell, Error, ModelConfig, Params, TrainOptions, Trainer, gradients};

fn text_data(batch: usize, steps: usize) -> (Vocab, Streams) {
    let text = unroll::data::builtin_corpus(300, 4);
    let vocab = Vocab::from_text(&text);
    let tokens = vocab.encode(text.as_bytes()).unwrap();
    let streams = Streams::new(&tokens, batch, steps, "training").unwrap();
    (vocab, streams)
}

#[test]
fn a_trainer_on_the_gpu_follows_the_one_on_the_cpu() {
    let (vocab, data) = text_data(3, 7);
    let config = ModelConfig::tokens(vocab.len(), 9).with_cell(Cell::Gru, 2);
    let params = Params::init(config, 11);
    let options = TrainOptions::new(3, 7);
    let mut g = Trainer::on_gpu(common::gpu(), params.clone(), options.clone()).unwrap();
    let mut c = Trainer::on_cpu(params, options).unwrap();
    for _ in 0..4 {
        let (x, y) = data.chunk(g.steps_taken() as usize);
        let (sg, sc) = (g.step(&x, &y).unwrap(), c.step(&x, &y).unwrap());
        assert!(
            (sg.loss - sc.loss).abs() <= 1e-5 * sc.loss.abs(),
            "loss {} vs {}",
            sg.loss,
            sc.loss
        );
    }
    let (pg, pc) = (g.params().unwrap(), c.params().unwrap());
    let worst = pg
        .data
        .iter()
        .zip(&pc.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "parameters differ by up to {worst}");
}

#[test]
fn a_run_resumed_from_checkpoint_bytes_equals_a_straight_run() {
    let (vocab, data) = text_data(4, 6);
    let config = ModelConfig::tokens(vocab.len(), 8).with_cell(Cell::Lstm, 2);
    let params = Params::init(config, 5);
    let options = TrainOptions::new(4, 6);
    let mut straight = Trainer::on_gpu(common::gpu(), params.clone(), options.clone()).unwrap();
    straight.fit(&data, 8).unwrap();

    let mut first = Trainer::on_gpu(common::gpu(), params, options.clone()).unwrap();
    first.fit(&data, 4).unwrap();
    let bytes = first
        .checkpoint(Some(vocab.clone()))
        .unwrap()
        .to_bytes()
        .unwrap();
    let checkpoint = Checkpoint::from_bytes("resumed", bytes).unwrap();
    assert_eq!(checkpoint.info.vocab, Some(vocab));
    let mut resumed = Trainer::resume(unroll::Device::Gpu, &checkpoint, options).unwrap();
    resumed.fit(&data, 4).unwrap();

    assert_eq!(resumed.steps_taken(), 8);
    assert_eq!(
        resumed.params().unwrap().data,
        straight.params().unwrap().data,
        "N/2 + resume + N/2 must equal N steps bit for bit"
    );
}

#[test]
fn a_series_of_ones_own_trains_and_bad_shapes_are_errors() {
    let wave: Vec<f32> = (0..300).map(|r| (r as f32 * 0.3).cos()).collect();
    let data = SeriesStreams::from_rows(&wave, &wave, 1, 1, 2, 12).unwrap();
    let config = ModelConfig::dense(1, 6, 1).with_cell(Cell::Lstm, 1);
    let mut t = Trainer::on_gpu(
        common::gpu(),
        Params::init(config, 2),
        TrainOptions::new(2, 12),
    )
    .unwrap();
    let first = t.fit(&data, 1).unwrap().loss;
    let last = t.fit(&data, 40).unwrap().loss;
    assert!(last < first, "{first} -> {last}");

    for (x, y, i, o, b, s) in [
        (&wave[..299], &wave[..], 1, 1, 2, 12), // rows of x and y differ
        (&wave[..], &wave[..], 2, 1, 2, 12),    // 300 values are 150 rows of I = 2; y has 300
        (&wave[..], &wave[..], 0, 1, 2, 12),
        (&wave[..], &wave[..], 1, 1, 2, 0),
        (&wave[..], &wave[..], 1, 1, 0, 12),
        (&wave[..], &wave[..], 1, 1, 30, 12), // 30 streams of 13 rows need 390
    ] {
        match SeriesStreams::from_rows(x, y, i, o, b, s) {
            Err(Error::Config { .. }) => {}
            other => panic!("from_rows({i}, {o}, {b}, {s}) gave {other:?}"),
        }
    }
}

#[test]
fn bad_calls_are_clear_errors() {
    let (vocab, data) = text_data(2, 5);
    let config = ModelConfig::tokens(vocab.len(), 4);
    let mut t = Trainer::on_gpu(
        common::gpu(),
        Params::init(config, 1),
        TrainOptions::new(2, 5),
    )
    .unwrap();
    let zero = t.fit(&data, 0).unwrap_err().to_string();
    assert!(zero.contains("0 steps"), "{zero}");
    let eval = t.evaluate(&[data.chunk(0)]).unwrap_err().to_string();
    assert!(eval.contains("evaluation"), "{eval}");

    // A batch for another model (dense inputs for a token model): a clear error, no GPU work.
    let other = ModelConfig::dense(3, 4, 2);
    let batch = Batch::random(&other, 2, 5, false, 1);
    let params = Params::init(config, 1);
    let gpu = common::gpu();
    for device in [Some(&gpu), None] {
        match gradients(device, &params, &batch) {
            Err(Error::Config { .. }) => {}
            other => panic!(
                "gradients of a mismatched batch gave {:?}",
                other.map(|o| o.loss)
            ),
        }
    }
}
