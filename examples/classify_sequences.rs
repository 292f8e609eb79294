//! Trains a bidirectional GRU to classify sequences of their own lengths, on the CPU reference:
//! a `.ts` file of the UEA/UCR archive if one is given, else three generated shapes (rising,
//! falling, oscillating) of 5 to 40 steps.
//!
//! cargo run --release --example classify_sequences [-- TRAIN.ts TEST.ts]
use unroll::dataset::{SequenceBatches, Validation};
use unroll::model::Head;
use unroll::sequences::LabelledSequences;
use unroll::{Cell, Device, ModelConfig, Params, TrainOptions, Trainer};

/// `n` sequences of one channel, class i % 3.
fn shapes(n: usize, seed: usize) -> LabelledSequences {
    let mut text = String::from("@classLabel true rise fall wave\n@data\n");
    for i in 0..n {
        let len = 5 + (i * 13 + seed) % 36;
        let noise = |t: usize| (((i * 31 + t * 17 + seed) % 11) as f32 - 5.0) * 0.03;
        let values: Vec<String> = (0..len)
            .map(|t| {
                let x = t as f32 / len as f32;
                let v = [x, 1.0 - x, (6.0 * x).sin()][i % 3];
                (v + noise(t)).to_string()
            })
            .collect();
        text += &format!("{}:{}\n", values.join(","), ["rise", "fall", "wave"][i % 3]);
    }
    unroll::ts_file::parse(&text)
        .expect("a valid .ts text")
        .into()
}

fn main() -> unroll::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let (mut train, mut test) = match &files[..] {
        [a, b] => {
            let read = |p: &str| unroll::ts_file::read(p.as_ref(), 1 << 30).map(Into::into);
            (read(a)?, read(b)?)
        }
        _ => (shapes(90, 0), shapes(45, 7)),
    };
    let stats = train.channel_stats().expect("dense channels");
    train.normalize(&stats);
    test.normalize(&stats);
    let channels = stats.mean.len();
    let config = ModelConfig::dense(channels, 32, train.classes.len())
        .with_cell(Cell::Gru, 1)
        .with_head(Head::Last)
        .bidirectional();
    let batch = 8;
    let data = SequenceBatches::new(train.clone(), config, batch, 1);
    let val = Validation::Sequences(SequenceBatches::new(test, config, batch, 1).all());
    println!(
        "{config}: {} training sequences, {:.1} % of the batches' steps padding",
        train.len(),
        100.0 * data.padded_share()
    );
    let options = TrainOptions::new(batch, train.max_len());
    let mut trainer = Trainer::new(Device::Cpu, Params::init(config, 1), options)?;
    for round in 1..=6 {
        let stats = trainer.fit(&data, 50)?;
        let score = trainer.score(&val)?;
        println!(
            "step {:4}  loss {:.3}  test loss {:.3}  test accuracy {:.1} %",
            50 * round,
            stats.loss,
            score.loss,
            100.0 * score.accuracy.unwrap_or(0.0)
        );
    }
    Ok(())
}
