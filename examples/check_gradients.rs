//! Builds a case of one's own (a 2-layer GRU on dense inputs, odd sizes, random initial state),
//! runs one training step on the GPU and on the CPU reference, and compares every tensor: the
//! loss, the outputs, the final state and each parameter's gradient.
//!
//! cargo run --release --example check_gradients
use unroll::case::{Case, RandomCase};
use unroll::gpu::{AdapterChoice, Gpu, describe};
use unroll::{Cell, ModelConfig};

fn main() -> unroll::Result<()> {
    let config = ModelConfig::dense(7, 13, 5).with_cell(Cell::Gru, 2);
    let settings = RandomCase {
        batch: 3,
        steps: 9,
        seed: 2024,
        init_scale: None,
        random_state: true,
    };
    let case = Case::random(config, settings)?;
    let gpu = Gpu::new(&AdapterChoice::default())?;
    println!("GPU: {}", describe(&gpu.info));
    let report = unroll::check::check(Some(&gpu), &case, None, None)?;
    println!("{}", report.render());
    if !report.pass() {
        eprintln!("the GPU and the CPU reference disagree");
        std::process::exit(1);
    }
    Ok(())
}
