//! The `unroll` command line: parses arguments and calls the library.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use unroll::check::{Case, check};
use unroll::gpu::{AdapterChoice, Gpu, info_report};
use unroll::model::{Batch, ModelConfig, Params};

#[derive(Parser)]
#[command(
    name = "unroll",
    version,
    about = "Train Elman RNNs on the GPU (wgpu), checked against a CPU reference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu finds and the one unroll would use, with its limits.
    Info(AdapterArgs),
    /// Run one training step on the GPU and on the CPU reference and compare every tensor.
    Check(CheckArgs),
}

#[derive(Args, Clone)]
struct AdapterArgs {
    /// Backend: vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else any).
    #[arg(long)]
    backend: Option<String>,
    /// Use the adapter whose name contains this (default: WGPU_ADAPTER_NAME, else wgpu's choice).
    #[arg(long)]
    adapter: Option<String>,
}

impl AdapterArgs {
    fn choice(&self) -> AdapterChoice {
        AdapterChoice {
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Device {
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Tokens,
    Dense,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// gpu: compare the GPU with the CPU reference; cpu: run the reference alone.
    #[arg(long, value_enum, default_value = "gpu")]
    device: Device,
    /// Read parameters, batch and expected results from a safetensors case (the oracle's layout).
    #[arg(long)]
    case: Option<PathBuf>,
    /// Write both paths' results to this safetensors file (`gpu.<name>`, `cpu.<name>`).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Input kind of the generated model.
    #[arg(long, value_enum, default_value = "tokens")]
    kind: Kind,
    /// I: vocabulary size (tokens) or input features (dense).
    #[arg(long, default_value_t = 65)]
    input: usize,
    /// H: hidden size.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// O: output features (dense; tokens use the vocabulary size).
    #[arg(long, default_value_t = 65)]
    output: usize,
    /// B: batch size.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// T: timesteps.
    #[arg(long, default_value_t = 32)]
    steps: usize,
    /// Start from a random h_0 instead of zeros.
    #[arg(long)]
    random_h0: bool,
    /// Seed for the parameters and the batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn run_check(args: &CheckArgs) -> Result<bool> {
    let case = match &args.case {
        Some(path) => Case::load(path)?,
        None => {
            let config = match args.kind {
                Kind::Tokens => ModelConfig::tokens(args.input, args.hidden),
                Kind::Dense => ModelConfig::dense(args.input, args.hidden, args.output),
            };
            config.validate()?;
            let batch = Batch::random(
                &config,
                args.batch,
                args.steps,
                args.random_h0,
                args.seed + 1,
            );
            batch.validate(&config)?;
            Case {
                params: Params::init(config, args.seed).cast(),
                batch,
                expected: None,
            }
        }
    };
    let gpu = match args.device {
        Device::Gpu => Some(Gpu::new(&args.adapter.choice())?),
        Device::Cpu => None,
    };
    let report = check(gpu.as_ref(), &case, args.dump.as_deref())?;
    print!("{}", report.render());
    if gpu.is_none() && case.expected.is_none() {
        println!("nothing to compare: --device cpu needs a --case with expected values");
    }
    println!(
        "{}",
        if report.pass() {
            "check passed"
        } else {
            "check FAILED"
        }
    );
    Ok(report.pass())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Info(a) => info_report(&a.choice())
            .map(|s| {
                print!("{s}");
                true
            })
            .map_err(Into::into),
        Command::Check(a) => run_check(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
