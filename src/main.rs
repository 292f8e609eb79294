//! The `unroll` command line: parses arguments and calls the library.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

mod args;
use args::{AdapterArgs, BenchArgs, CheckArgs, Device, ForecastArgs, SampleArgs, TrainArgs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::check;
use unroll::checkpoint::Checkpoint;
use unroll::gpu::{Gpu, info_report};
use unroll::train::{RunOptions, Task, train};

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

/// With --resume: refuses the flags the checkpoint fixes, and says what is taken from where.
fn check_resume(args: &TrainArgs, explicit: &[String]) -> Result<()> {
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
    Ok(())
}

fn run_train(args: &TrainArgs, explicit: &[String]) -> Result<bool> {
    check_resume(args, explicit)?;
    let cfg = args.config();
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
    let rows = unroll::forecast::forecast(&ck.params, &norm, &table, args.horizon)?;
    let mut inputs = vec![args.checkpoint.as_path()];
    inputs.extend(args.data.as_deref());
    let plot = unroll::forecast::write_forecast(&args.out, &norm, &table, &rows, &inputs)?;
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
