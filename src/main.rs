//! The `unroll` command line: parses arguments and calls the library.

use anyhow::Result;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::check;
use unroll::checkpoint::Checkpoint;
use unroll::gpu::{AdapterChoice, Gpu, Recurrence, info_report};
use unroll::model::ModelConfig;
use unroll::optim::{OptimizerConfig, OptimizerKind};
use unroll::train::{RunOptions, Task, TrainConfig, train};

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
    /// Train a model: on the built-in arithmetic corpus by default, or on --data FILE.
    Train(Box<TrainArgs>),
    /// Generate text from a checkpoint.
    Sample(SampleArgs),
    /// Predict the next steps of a series from a checkpoint; writes a CSV and a plot.
    Forecast(ForecastArgs),
    /// Time full training steps on the GPU and on the CPU reference.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// A configuration H,B,T to time (repeatable; default: 100,1,25 128,32,64 512,32,64 1024,64,64).
    #[arg(long = "config", value_parser = parse_hbt)]
    configs: Vec<(usize, usize, usize)>,
    /// Vocabulary size (I = O).
    #[arg(long, default_value_t = 65)]
    vocab: usize,
    /// Timed steps per configuration.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Skip the CPU reference.
    #[arg(long)]
    no_cpu: bool,
    /// Seconds the CPU reference may take per configuration (at least one step runs).
    #[arg(long, default_value_t = 20.0)]
    cpu_budget: f64,
    /// Per-phase GPU times from timestamp queries.
    #[arg(long)]
    profile: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Time stacked layers of these cells (comma-separated) against the Elman step of the same
    /// H, B, T, in one run, instead of the training-step benchmark.
    #[arg(long, value_enum, value_delimiter = ',')]
    cell: Vec<CellArg>,
    /// L: layers of the cells timed with --cell.
    #[arg(long, default_value_t = 1)]
    layers: usize,
}

fn parse_hbt(s: &str) -> std::result::Result<(usize, usize, usize), String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("`{s}`: {e}; expected H,B,T such as 128,32,64"))?;
    match v[..] {
        [h, b, t] if h > 0 && b > 0 && t > 0 => Ok((h, b, t)),
        _ => Err(format!(
            "`{s}`: expected three positive sizes H,B,T such as 128,32,64"
        )),
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// text: next-character prediction; series: next-step prediction on a CSV.
    #[arg(long, value_enum, default_value = "text")]
    task: Task,
    /// The data: a text file, or a CSV for --task series (default: the built-in data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The most bytes --data may hold (the file is read into memory whole).
    #[arg(long, default_value_t = unroll::data::DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    /// Text: use the 256 byte values as the vocabulary (any file, UTF-8 or not).
    #[arg(long)]
    bytes: bool,
    /// Series: input columns, by name or 0-based index (default: all).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Series: target columns (default: the input columns).
    #[arg(long, value_delimiter = ',')]
    target: Vec<String>,
    /// gpu (default) or cpu (the reference path: slow, bitwise repeatable).
    #[arg(long, value_enum, default_value = "gpu")]
    device: unroll::train::Device,
    /// Hidden size H.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[command(flatten)]
    cell: CellArgs,
    /// Dropout on the output of every layer but the top one, in training (as PyTorch's
    /// `dropout`; needs --layers 2 or more).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Parallel streams B.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timesteps per chunk T (truncated BPTT length).
    #[arg(long, default_value_t = 32)]
    seq_len: usize,
    /// Training steps in all (with --resume: the total to reach).
    #[arg(long, default_value_t = 1500)]
    iters: u64,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = 2e-3, allow_negative_numbers = true)]
    lr: f32,
    /// Momentum (SGD).
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Clip the gradient's global norm to this (0: off).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    clip: f32,
    /// Multiply the learning rate by this every --lr-decay-every steps.
    #[arg(long, default_value_t = 1.0)]
    lr_decay: f32,
    /// The decay period in steps.
    #[arg(long, default_value_t = 1000)]
    lr_decay_every: u32,
    /// Fraction of the data held out (from its end) for validation.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    val_fraction: f64,
    /// Evaluate on the whole validation data every N steps (one loss read back per chunk; such a
    /// step reports its training loss too).
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    /// Report the training loss every N steps (read back from the GPU; other training steps do
    /// not wait for it).
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Write a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Seed of the initial parameters and of the built-in data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Characters of the sample printed at the end.
    #[arg(long, default_value_t = 300)]
    sample_len: usize,
    /// Where the checkpoint (model.safetensors), metrics.csv and loss.svg go (default:
    /// runs/default; with --resume, the checkpoint's own directory). A directory holding files
    /// that unroll did not write is refused unless --force.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into --out even if it holds files that unroll did not write (model.safetensors,
    /// metrics.csv and loss.svg there are replaced).
    #[arg(long)]
    force: bool,
    /// Continue the run of this checkpoint: its model, data encoding and training configuration
    /// are kept; --iters (the total to reach), --data, --out and the device flags may be given.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress bar: a log line per evaluation.
    #[arg(long)]
    quiet: bool,
    /// Skip the check before training on the GPU: one step at the model's sizes (B and T capped
    /// at 4 and 8) compared with the CPU reference.
    #[arg(long)]
    no_self_check: bool,
}

#[derive(Args)]
struct SampleArgs {
    /// The checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 500)]
    len: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Text that primes the hidden state (default: a newline).
    #[arg(long, default_value = "\n")]
    prime: String,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct ForecastArgs {
    /// The checkpoint of a series model.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The history to warm up on (default: the built-in series).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Steps to predict.
    #[arg(long, default_value_t = 200)]
    horizon: usize,
    /// The forecast CSV (a plot is written beside it, .svg).
    #[arg(long, default_value = "forecast.csv")]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct AdapterArgs {
    /// Backend: vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else any).
    #[arg(long)]
    backend: Option<String>,
    /// Use the adapter whose name contains this (default: WGPU_ADAPTER_NAME, else wgpu's choice).
    #[arg(long)]
    adapter: Option<String>,
    /// How the GPU runs the recurrences: one dispatch per timestep, or one persistent dispatch
    /// for all of them (default: chosen per shape).
    #[arg(long, value_enum)]
    recurrence: Option<Recurrence>,
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
    /// Write the case (parameters, batch and the expected results in f64) to this file, in the
    /// layout --case reads: to check it again elsewhere, or to attach it to a report.
    #[arg(long)]
    save_case: Option<PathBuf>,
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
    /// Draw every weight uniform in ±S instead of PyTorch's ±1/√H (e.g. 0.4 at H=96: a chaotic
    /// model, on which float32 itself loses digits).
    #[arg(long)]
    init_scale: Option<f64>,
    #[command(flatten)]
    cell: CellArgs,
}

/// The cell and depth of a model.
#[derive(Args, Clone, Copy)]
struct CellArgs {
    /// The cell of every layer, as `torch.nn` has it: RNN (Elman), GRU or LSTM.
    #[arg(long, value_enum, default_value = "rnn")]
    cell: CellArg,
    /// L: stacked layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// The nonlinearity of an `rnn` cell.
    #[arg(long, value_enum, default_value = "tanh")]
    nonlinearity: Nonlinearity,
}

impl CellArgs {
    fn cell(&self) -> Cell {
        self.cell.cell(self.nonlinearity == Nonlinearity::Relu)
    }
}

/// A recurrent cell, as PyTorch names it.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum CellArg {
    Rnn,
    Gru,
    Lstm,
}

impl CellArg {
    /// The cell, with relu for an `rnn` where asked.
    fn cell(self, relu: bool) -> Cell {
        match (self, relu) {
            (CellArg::Rnn, false) => Cell::Rnn,
            (CellArg::Rnn, true) => Cell::RnnRelu,
            (CellArg::Gru, _) => Cell::Gru,
            (CellArg::Lstm, _) => Cell::Lstm,
        }
    }
}

/// The nonlinearity of the Elman cell.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Nonlinearity {
    Tanh,
    Relu,
}

impl CheckArgs {
    /// The generated model.
    fn model(&self) -> ModelConfig {
        let config = match self.kind {
            Kind::Tokens => ModelConfig::tokens(self.input, self.hidden),
            Kind::Dense => ModelConfig::dense(self.input, self.hidden, self.output),
        };
        config.with_cell(self.cell.cell(), self.cell.layers)
    }
}

/// Prints a check's tables and its verdict.
fn print_report(report: &unroll::check::CheckReport) {
    print!("{}", report.render());
    let verdict = if report.pass() {
        "check passed"
    } else {
        "check FAILED"
    };
    println!("{verdict}");
}

fn run_check(args: &CheckArgs) -> Result<bool> {
    let case = match &args.case {
        Some(path) => Case::load(path)?,
        None => {
            let config = args.model();
            config.validate()?;
            let random = RandomCase {
                batch: args.batch,
                steps: args.steps,
                seed: args.seed,
                init_scale: args.init_scale,
                random_state: args.random_h0,
            };
            Case::random(config, random)?
        }
    };
    for path in [&args.save_case, &args.dump].into_iter().flatten() {
        unroll::rundir::check_replaceable(path)?;
    }
    if let Some(path) = &args.save_case {
        case.save(path)?;
        println!("case written to {}", path.display());
    }
    let gpu = match args.device {
        Device::Gpu => Some(Gpu::new(&args.adapter.choice())?),
        Device::Cpu => None,
    };
    let recurrence = args.adapter.recurrence;
    let report = check(gpu.as_ref(), &case, recurrence, args.dump.as_deref())?;
    print_report(&report);
    Ok(report.pass())
}

/// The flags of `train` that a resumed run takes from its checkpoint: giving one with --resume
/// is an error rather than a change that would be silently ignored.
const FIXED_ON_RESUME: [&str; 23] = [
    "task",
    "bytes",
    "columns",
    "target",
    "hidden",
    "cell",
    "layers",
    "nonlinearity",
    "dropout",
    "batch",
    "seq_len",
    "optimizer",
    "lr",
    "momentum",
    "clip",
    "lr_decay",
    "lr_decay_every",
    "val_fraction",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "seed",
    "sample_len",
];

/// Where a run writes: --out, else the resumed checkpoint's directory, else runs/default.
fn out_dir(args: &TrainArgs) -> PathBuf {
    match (&args.out, &args.resume) {
        (Some(out), _) => out.clone(),
        (None, Some(ck)) => match ck.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        },
        (None, None) => PathBuf::from("runs/default"),
    }
}

fn run_train(args: &TrainArgs, explicit: &[String]) -> Result<bool> {
    if let Some(ck) = &args.resume {
        let fixed: Vec<String> = FIXED_ON_RESUME
            .iter()
            .filter(|f| explicit.iter().any(|e| e == *f))
            .map(|f| format!("--{}", f.replace('_', "-")))
            .collect();
        if !fixed.is_empty() {
            anyhow::bail!(
                "--resume continues the run as {} configured it; {} would change it\n  hint: drop {}, \
                 or start a new run (with --resume only --iters, --data, --out and the device \
                 and display flags apply)",
                ck.display(),
                fixed.join(", "),
                if fixed.len() == 1 { "it" } else { "them" }
            );
        }
        let overridden: Vec<String> = ["iters", "data"]
            .iter()
            .filter(|f| explicit.iter().any(|e| e == *f))
            .map(|f| format!("--{f}"))
            .collect();
        println!(
            "resuming {}: model, data encoding and training configuration from the checkpoint{}; writing to {}",
            ck.display(),
            if overridden.is_empty() {
                String::new()
            } else {
                format!("; given here: {}", overridden.join(", "))
            },
            out_dir(args).display()
        );
    }
    let cfg = TrainConfig {
        task: args.task,
        data: args.data.clone(),
        bytes: args.bytes,
        columns: args.columns.clone(),
        targets: args.target.clone(),
        hidden: args.hidden,
        cell: args.cell.cell(),
        layers: args.cell.layers,
        dropout: args.dropout,
        batch: args.batch,
        seq_len: args.seq_len,
        iters: args.iters,
        optim: OptimizerConfig {
            kind: args.optimizer,
            lr: args.lr,
            momentum: args.momentum,
            clip: args.clip,
            decay: args.lr_decay,
            decay_every: args.lr_decay_every,
            ..OptimizerConfig::default()
        },
        val_fraction: args.val_fraction,
        eval_every: args.eval_every,
        log_every: args.log_every,
        checkpoint_every: args.checkpoint_every,
        val_chunks: 0,
        seed: args.seed,
        sample_len: args.sample_len,
    };
    // First Ctrl-C or SIGTERM: finish the step, checkpoint, stop. Second: exit at once (the
    // checkpoint on disk is whole either way: it is only ever replaced by an atomic rename).
    let interrupt = Arc::new(AtomicUsize::new(0));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || {
        if flag.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("\ninterrupted twice: exiting now; the last checkpoint written is intact");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to exit at once)"
        );
    })?;
    let opts = RunOptions {
        out_dir: out_dir(args),
        force: args.force,
        max_bytes: args.max_bytes,
        self_check: !args.no_self_check,
        device: args.device,
        adapter: args.adapter.choice(),
        recurrence: args.adapter.recurrence,
        resume: args.resume.clone(),
        quiet: args.quiet,
        interrupt: Some(interrupt),
    };
    let s = train(&cfg, &opts)?;
    println!("device: {}", s.device);
    let baseline = match cfg.task {
        Task::Text => "unigram entropy",
        Task::Series => "repeat-last-value forecast",
    };
    if s.train_loss.is_nan() {
        // A resumed run that was already complete: no step was taken.
        println!(
            "step {}: no step left to take; validation loss {:.4} ({baseline} {:.4})",
            s.step, s.val_loss, s.baseline_loss
        );
    } else {
        println!(
            "step {}: train loss {:.4}, validation loss {:.4} ({baseline} {:.4}), {:.0} tokens/s",
            s.step, s.train_loss, s.val_loss, s.baseline_loss, s.tokens_per_s
        );
    }
    println!("checkpoint: {}", s.checkpoint.display());
    println!("metrics:    {}", s.metrics.display());
    println!("loss plot:  {}", s.plot.display());
    if !s.sample.is_empty() {
        println!("sample:\n{}", s.sample);
    }
    if s.interrupted {
        std::process::exit(130);
    }
    Ok(true)
}

fn run_sample(args: &SampleArgs) -> Result<bool> {
    let ck = Checkpoint::load(&args.checkpoint)?;
    let vocab = ck.info.vocab.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: the checkpoint has no vocabulary (a series model?); use `unroll forecast`",
            args.checkpoint.display()
        )
    })?;
    if args.len == 0 {
        anyhow::bail!("--len is 0: nothing to sample\n  hint: pass --len of 1 or more");
    }
    let prime_text = args.prime.replace("\\n", "\n");
    let prime = vocab.encode(prime_text.as_bytes())?;
    let tokens = unroll::sample::sample(&ck.params, &prime, args.len, args.temperature, args.seed)?;
    println!("{}{}", prime_text, vocab.decode(&tokens));
    Ok(true)
}

fn run_forecast(args: &ForecastArgs) -> Result<bool> {
    let ck = Checkpoint::load(&args.checkpoint)?;
    let norm = ck.info.normalization.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: the checkpoint is not a series model (no column statistics); use `unroll sample`",
            args.checkpoint.display()
        )
    })?;
    let seed = ck.info.train.as_ref().map_or(1, |t| t.seed);
    let table =
        unroll::series::read_table(args.data.as_deref(), seed, unroll::data::DEFAULT_MAX_BYTES)?;
    let rows = unroll::series::forecast(&ck.params, &norm, &table, args.horizon)?;
    let mut inputs = vec![args.checkpoint.as_path()];
    inputs.extend(args.data.as_deref());
    let plot = unroll::series::write_forecast(&args.out, &norm, &table, &rows, &inputs)?;
    println!("forecast of {} steps: {}", args.horizon, args.out.display());
    println!("plot: {}", plot.display());
    Ok(true)
}

fn run_bench(args: &BenchArgs) -> Result<bool> {
    use unroll::bench::{BenchConfig, bench_cpu, bench_gpu, table};
    let configs: Vec<BenchConfig> = if args.configs.is_empty() {
        BenchConfig::standard()
            .into_iter()
            .map(|c| BenchConfig {
                vocab: args.vocab,
                ..c
            })
            .collect()
    } else {
        args.configs
            .iter()
            .map(|&(hidden, batch, steps)| BenchConfig {
                hidden,
                batch,
                steps,
                vocab: args.vocab,
            })
            .collect()
    };
    if args.steps == 0 {
        anyhow::bail!(
            "--steps is 0: nothing to time\n  hint: pass --steps of 1 or more (20 by default)"
        );
    }
    if !args.cell.is_empty() {
        return run_bench_cells(args, &configs);
    }
    let mut results = Vec::new();
    for c in &configs {
        let gpu = Gpu::new(&args.adapter.choice())?;
        results.push(bench_gpu(
            gpu,
            c,
            args.adapter.recurrence,
            args.warmup,
            args.steps,
            args.profile,
        )?);
        if !args.no_cpu {
            results.push(bench_cpu(
                c,
                args.steps,
                std::time::Duration::from_secs_f64(args.cpu_budget),
            )?);
        }
        if !args.json {
            eprint!(
                "{}",
                table(&results[results.len() - 1 - (!args.no_cpu) as usize..])
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", table(&results));
    }
    Ok(true)
}

/// `bench --cell`: each cell's step against the Elman step, per configuration.
fn run_bench_cells(args: &BenchArgs, configs: &[unroll::bench::BenchConfig]) -> Result<bool> {
    use unroll::bench_cells::{bench_cells, cell_table};
    let cells: Vec<Cell> = args.cell.iter().map(|&c| c.cell(false)).collect();
    let gpu = Gpu::new(&args.adapter.choice())?;
    let mut rows = Vec::new();
    for c in configs {
        let timing = (args.warmup, args.steps);
        let found = bench_cells(
            &gpu,
            c,
            &cells,
            args.layers,
            args.adapter.recurrence,
            timing,
        )?;
        if !args.json {
            eprint!("{}", cell_table(&found));
        }
        rows.extend(found);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", cell_table(&rows));
    }
    Ok(true)
}

/// The flags of a subcommand given on the command line (not defaulted).
fn explicit_flags(matches: &clap::ArgMatches, sub: &str) -> Vec<String> {
    matches
        .subcommand_matches(sub)
        .map(|m| {
            m.ids()
                .filter(|id| {
                    m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
                })
                .map(|id| id.as_str().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn main() -> ExitCode {
    // Output piped into a program that stops reading (`| head`) ends unroll quietly, as it does
    // any Unix tool, instead of a panic on the failed write.
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        Command::Info(a) => info_report(&a.choice())
            .map(|s| {
                print!("{s}");
                true
            })
            .map_err(Into::into),
        Command::Check(a) => run_check(a),
        Command::Train(a) => run_train(a, &explicit_flags(&matches, "train")),
        Command::Sample(a) => run_sample(a),
        Command::Forecast(a) => run_forecast(a),
        Command::Bench(a) => run_bench(a),
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
