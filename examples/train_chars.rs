//! Trains a character-level LSTM on a string and samples from it.
//!
//! cargo run --release --example train_chars [-- cpu]
use unroll::data::{Streams, Vocab};
use unroll::{Cell, Device, ModelConfig, Params, TrainOptions, Trainer};

fn main() -> unroll::Result<()> {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(200);
    let device = match std::env::args().nth(1).as_deref() {
        Some("cpu") => Device::Cpu,
        _ => Device::Gpu,
    };
    let vocab = Vocab::from_text(&text);
    let (batch, steps) = (16, 32);
    let data = Streams::new(&vocab.encode(text.as_bytes())?, batch, steps, "training")?;
    let config = ModelConfig::tokens(vocab.len(), 64).with_cell(Cell::Lstm, 2);
    let options = TrainOptions::new(batch, steps);
    let mut trainer = Trainer::new(device, Params::init(config, 1), options)?;
    println!("{} parameters on {}", config.num_params(), trainer.device());
    for round in 1..=6 {
        let stats = trainer.fit(&data, 25)?;
        println!("step {:4}  loss {:.3} nats/char", 25 * round, stats.loss);
    }
    let prime = vocab.encode(b"the ")?;
    let sample = unroll::sample::sample(&trainer.params()?, &prime, 120, 0.5, 7)?;
    println!("the {}", vocab.decode(&sample));
    Ok(())
}
