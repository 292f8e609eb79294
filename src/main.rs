//! The `unroll` command line: parses arguments and calls the library.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

mod args;
mod args_check;
mod args_device;
mod args_given;
mod args_seq;
mod cli_classify;
use args::{AdapterArgs, BenchArgs, Device, ForecastArgs, Given, SampleArgs, TrainArgs};
use args_check::CheckArgs;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::check::check;
use unroll::checkpoint::Checkpoint;
use unroll::footprint::Work;
use unroll::gpu::{Gpu, ModelStep, info_report};
use unroll::owned::Kind;
use unroll::train::{Resume, RunOptions, Task, train};

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
    /// Classify labelled sequences with a classifier's checkpoint; writes a CSV of the classes'
    /// probabilities.
    Predict(args_seq::PredictArgs),
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

fn run_check(args: &CheckArgs, given: &Given<'_>) -> Result<bool> {
    args.check_flags(given)?;
    // The outputs are refused before any work: a file unroll did not write stays as it is.
    if let Some(path) = &args.save_case {
        Kind::CheckCase.check_replaceable(path)?;
    }
    if let Some(path) = &args.dump {
        Kind::CheckDump.check_replaceable(path)?;
    }
    let gpu = match args.device {
        Device::Gpu => Some(Gpu::new(&args.adapter.choice())?),
        Device::Cpu => None,
    };
    let recurrence = args.adapter.recurrence;
    let case = match &args.case {
        Some(path) => Case::load(path)?,
        None => {
            let config = args.model();
            config.validate()?;
            // The GPU's buffers and the host's, before anything of the model's size exists.
            if let Some(gpu) = &gpu {
                ModelStep::check_fits(gpu, config, (args.batch, args.steps), recurrence)?;
            }
            let work = Work::case_and_check(args.batch, args.steps);
            unroll::footprint::check_host(&config, &work)?;
            let random = RandomCase {
                batch: args.batch,
                steps: args.steps,
                seed: args.seed,
                init_scale: args.init_scale,
                random_state: args.random_h0,
            };
            let mut case = Case::random(config, random)?;
            if let Some(lengths) = &args.lengths.lengths {
                case.batch = case.batch.with_lengths(lengths.clone());
                case.batch.validate(&config)?;
            }
            case
        }
    };
    if let Some(path) = &args.save_case {
        case.save(path)?;
        println!("case written to {}", path.display());
    }
    let report = check(gpu.as_ref(), &case, recurrence, args.dump.as_deref())?;
    print_report(&report);
    Ok(report.pass())
}

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

/// With --resume: what the resumed run takes from the command line, said before it starts.
fn resume(args: &TrainArgs, given: &Given<'_>) -> Option<Resume> {
    let ck = args.resume.as_ref()?;
    let cfg = &args.config;
    let r = Resume {
        checkpoint: ck.clone(),
        iters: given.has("iters").then_some(cfg.iters),
        data: cfg.data.clone().filter(|_| given.has("data")),
        sample_len: given.has("sample_len").then_some(cfg.sample_len),
        max_bytes: given.has("max_bytes"),
    };
    let overridden: Vec<String> = ["iters", "data", "sample_len"]
        .iter()
        .filter(|f| given.has(f))
        .map(|f| args::flag(f))
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
    Some(r)
}

/// What the user asked to stop a run: the first Ctrl-C or SIGTERM finishes the step and writes a
/// checkpoint; a second exits at once (the checkpoint on disk is whole either way: it is only
/// ever replaced by an atomic rename). Holds the signal's number, 0 until one comes.
fn on_interrupt(count: Arc<AtomicUsize>, signal: Arc<AtomicUsize>) -> Result<()> {
    let first = move |sig: usize| {
        signal.store(sig, Ordering::SeqCst);
        if count.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("\ninterrupted twice: exiting now; the last checkpoint written is intact");
            std::process::exit(128 + sig as i32);
        }
        eprintln!(
            "\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to exit at once)"
        );
    };
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        std::thread::spawn(move || {
            for sig in signals.forever() {
                first(sig as usize);
            }
        });
    }
    #[cfg(not(unix))]
    ctrlc::set_handler(move || first(2))?;
    Ok(())
}

fn run_train(args: &TrainArgs, given: &Given<'_>) -> Result<bool> {
    args.check_flags(given)?;
    let job = join_job()?;
    if job.is_some() && !args.devices.is_empty() {
        anyhow::bail!(
            "--devices trains on several adapters in one process, and this one is a rank of an \
             MPI job, which has an adapter per rank\n  hint: drop --devices (each rank picks the \
             adapter of its place on its machine), or run without mpirun"
        );
    }
    let stopped = match job {
        None => train_here(args, given, None)?,
        // A rank that fails ends the whole job: the others would wait for it in the next exchange.
        Some(job) => match train_here(args, given, Some(job.clone())) {
            Ok(stopped) => {
                // MPI is finalised (its last handle dropped) before the process exits.
                drop(job);
                stopped
            }
            Err(e) => {
                eprintln!("error on rank {} of {}: {e:#}", job.rank(), job.size());
                job.abort(2)
            }
        },
    };
    if let Some(code) = stopped {
        std::process::exit(code);
    }
    Ok(true)
}

/// The MPI job this process is a rank of, where a launcher started several.
#[cfg(feature = "mpi")]
fn join_job() -> Result<Option<unroll::collective::Job>> {
    if unroll::collective::launched_ranks() <= 1 {
        return Ok(None);
    }
    let mpi = unroll::collective::Mpi::init()?;
    Ok(Some(unroll::collective::Job(std::rc::Rc::new(mpi))))
}

/// Without MPI a process is a job of its own (a launch of several was refused in `main`).
#[cfg(not(feature = "mpi"))]
fn join_job() -> Result<Option<unroll::collective::Job>> {
    Ok(None)
}

/// Trains in this process (a job's rank, or the whole run); returns the exit status of a run
/// that an interrupt stopped.
fn train_here(
    args: &TrainArgs,
    given: &Given<'_>,
    job: Option<unroll::collective::Job>,
) -> Result<Option<i32>> {
    let resume = resume(args, given);
    let cfg = args.config();
    let (interrupt, signal) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    on_interrupt(interrupt.clone(), signal.clone())?;
    let opts = RunOptions {
        out_dir: out_dir(args),
        force: args.force,
        max_bytes: args.max_bytes,
        self_check: !args.no_self_check,
        device: args.device,
        adapter: args.adapter.choice(),
        recurrence: args.adapter.recurrence,
        tune: unroll::tune::Tuning::in_user_cache(args.tune),
        resume,
        quiet: args.quiet,
        interrupt: Some(interrupt),
        accumulate: args.accumulate,
        devices: args.devices.clone(),
        job,
    };
    let s = train(&cfg, &opts)?;
    if opts.is_leader() {
        print_summary(&s, cfg.task);
    }
    if let Some(job) = &opts.job {
        // A rank that exits first with an interrupt's status would have the launcher end the
        // others before rank 0 has written and printed everything.
        job.barrier();
    }
    if s.interrupted {
        // As a shell reports a process that a signal ended: 128 + the signal's number (SIGINT's
        // for a rank that another rank's signal stopped).
        let signal = match signal.load(Ordering::SeqCst) {
            0 => 2,
            s => s as i32,
        };
        return Ok(Some(128 + signal));
    }
    Ok(None)
}

/// The closing lines of a run: where it ended, its files, its sample and how the sample scores.
fn print_summary(s: &unroll::train::TrainSummary, task: Task) {
    println!("device: {}", s.device);
    let baseline = match task {
        Task::Text => "unigram entropy",
        Task::Series => "repeat-last-value forecast",
        Task::Classify => "the training classes' frequencies",
    };
    let val = if s.val_loss.is_nan() {
        "not measured yet".to_string()
    } else {
        format!("{:.4}", s.val_loss)
    };
    if s.train_loss.is_nan() {
        // A resumed run that was already complete, or one stopped before its first report.
        println!(
            "step {}: no training loss reported; validation loss {val} ({baseline} {:.4})",
            s.step, s.baseline_loss
        );
    } else {
        println!(
            "step {}: train loss {:.4}, validation loss {val} ({baseline} {:.4}), {:.0} tokens/s",
            s.step, s.train_loss, s.baseline_loss, s.tokens_per_s
        );
    }
    if let Some(c) = &s.classified {
        cli_classify::print_classified(c);
    }
    println!("checkpoint: {}", s.checkpoint.display());
    if let Some((b, path)) = &s.best {
        println!(
            "best:       {} (step {}, validation loss {:.4})",
            path.display(),
            b.step,
            b.val_loss
        );
    }
    println!("metrics:    {}", s.metrics.display());
    println!("loss plot:  {}", s.plot.display());
    if !s.sample.is_empty() {
        println!("sample:\n{}", s.sample);
    }
    if let Some(k) = s.sample_score {
        println!(
            "sample score: {} of the sample's {} complete lines are right equations ({} \
             well-formed); a sample of the same length from the character frequencies alone: {} \
             of {}",
            k.correct, k.lines, k.well_formed, k.unigram_correct, k.unigram_lines
        );
    }
}

fn run_info(args: &AdapterArgs, given: &Given<'_>) -> Result<bool> {
    given.refuse(
        &["recurrence"],
        false,
        "`unroll info` lists adapters and runs no step",
    )?;
    print!("{}", info_report(&args.choice())?);
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

fn run_forecast(args: &ForecastArgs, given: &Given<'_>) -> Result<bool> {
    given.refuse(
        &["max_bytes"],
        args.data.is_some(),
        "--max-bytes limits the file of --data, and the built-in series is no file",
    )?;
    let ck = Checkpoint::load(&args.checkpoint)?;
    let norm = ck.info.normalization.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: the checkpoint is not a series model (no column statistics); use `unroll sample`",
            args.checkpoint.display()
        )
    })?;
    let mut inputs = vec![args.checkpoint.as_path()];
    inputs.extend(args.data.as_deref());
    // The outputs are refused before any work: a file unroll did not write stays as it is.
    unroll::forecast::check_forecast_outputs(&args.out, &inputs)?;
    let seed = ck.info.train.as_ref().map_or(1, |t| t.seed);
    let table = unroll::series::read_table(args.data.as_deref(), seed, args.max_bytes)?;
    let rows = unroll::forecast::forecast(&ck.params, &norm, &table, args.horizon)?;
    let plot = unroll::forecast::write_forecast(&args.out, &norm, &table, &rows, &inputs)?;
    println!("forecast of {} steps: {}", args.horizon, args.out.display());
    println!("plot: {}", plot.display());
    Ok(true)
}

fn run_bench(args: &BenchArgs, given: &Given<'_>) -> Result<bool> {
    use unroll::bench::{BenchConfig, bench_cpu, bench_gpu, table, tune_config};
    args.check_flags(given)?;
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
        let tune = given.has("tune").then_some(args.tune);
        return run_bench_cells(args, &configs, tune);
    }
    if !args.exchange.is_empty() {
        return run_bench_exchange(args);
    }
    if !args.sync.is_empty() {
        return run_bench_sync(args);
    }
    if args.products {
        return run_bench_products(args, &configs);
    }
    let mut results = Vec::new();
    let cache = unroll::tune_cache::default_dir();
    for c in &configs {
        let gpu = Gpu::new(&args.adapter.choice())?;
        let tuning = (args.tune, cache.as_deref());
        let tuned = tune_config(&gpu, c, args.adapter.recurrence, tuning)?;
        print_tuned(c, "elman", &tuned, args.json);
        let timing = (args.warmup, args.steps);
        results.push(bench_gpu(gpu, c, tuned.variant, timing, args.profile)?);
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
/// `bench --products`: the products alone on each kernel.
fn run_bench_products(args: &BenchArgs, configs: &[unroll::bench::BenchConfig]) -> Result<bool> {
    use unroll::bench_products::{bench_products, product_table};
    let gpu = Gpu::new(&args.adapter.choice())?;
    eprintln!("adapter: {}", unroll::gpu::describe(&gpu.info));
    // Each shape's rows on stderr as they come, so that a run cut short keeps what it measured.
    let json = args.json;
    let rows = bench_products(&gpu, configs, (args.warmup, args.steps), |done| {
        if !json {
            eprint!("{}", product_table(done));
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", product_table(&rows));
    }
    Ok(true)
}

/// `bench --sync`: the co-residency probe, the gap between dependent dispatches, and a grid
/// barrier's round at each workgroup count.
fn run_bench_sync(args: &BenchArgs) -> Result<bool> {
    use unroll::gpu::{barrier_round, dispatch_gap, probe_resident};
    let gpu = Gpu::new(&args.adapter.choice())?;
    let repeats = args.steps.clamp(1, 50);
    println!("adapter: {}", unroll::gpu::describe(&gpu.info));
    println!(
        "co-resident workgroups of 64 (probe): {}",
        probe_resident(&gpu)
    );
    let gap = dispatch_gap(&gpu, 1000, repeats)?;
    println!("dependent dispatches: {gap:.2} µs apart (median of {repeats})");
    for &g in &args.sync {
        match barrier_round(&gpu, g, 100, repeats)? {
            Some(us) => println!("grid barrier, {g} workgroups: {us:.2} µs a round"),
            None => println!("grid barrier, {g} workgroups: they did not all run at once"),
        }
    }
    Ok(true)
}

/// `bench --exchange`: every rank times its exchange; rank 0 prints the table.
fn run_bench_exchange(args: &BenchArgs) -> Result<bool> {
    use unroll::bench_exchange::{bench_exchange, exchange_table};
    let job = join_job()?;
    let mut choice = args.adapter.choice();
    if let Some(j) = &job
        && !choice.names_one()
    {
        choice.local_rank = Some(j.local_rank());
    }
    let run = || -> Result<unroll::bench_exchange::ExchangeBench> {
        let gpu = Gpu::new(&choice)?;
        Ok(bench_exchange(
            &gpu,
            job.as_ref(),
            &args.exchange,
            (args.warmup, args.steps),
        )?)
    };
    let rows = match (run(), &job) {
        (Ok(rows), _) => rows,
        (Err(e), None) => return Err(e),
        (Err(e), Some(j)) => {
            eprintln!("error on rank {} of {}: {e:#}", j.rank(), j.size());
            j.abort(2)
        }
    };
    if job.as_ref().is_none_or(|j| j.rank() == 0) {
        print!("{}", exchange_table(&rows));
    }
    if let Some(j) = &job {
        j.barrier();
    }
    Ok(true)
}

/// `bench --cell`: each cell's step against the Elman step, per configuration; with `--tune`,
/// then each cell's step tuned (the variants' times with `full`).
fn run_bench_cells(
    args: &BenchArgs,
    configs: &[unroll::bench::BenchConfig],
    tune: Option<unroll::tune::TuneMode>,
) -> Result<bool> {
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
    if let Some(mode) = tune {
        let cache = unroll::tune_cache::default_dir();
        for c in configs {
            for &cell in &cells {
                let target = unroll::tune::Target {
                    config: unroll::model::ModelConfig::tokens(c.vocab, c.hidden)
                        .with_cell(cell, args.layers),
                    shape: (c.batch, c.steps),
                    recurrence: args.adapter.recurrence,
                };
                let tuned = unroll::tune::tune(&gpu, &target, mode, cache.as_deref())?;
                print_tuned(
                    c,
                    &format!("{} × {}", cell.name(), args.layers),
                    &tuned,
                    args.json,
                );
            }
        }
    }
    Ok(true)
}

/// A configuration's tuning: its warnings, the choice, and (a full tuning) every variant's
/// time; on stdout, or on stderr beside JSON.
fn print_tuned(c: &unroll::bench::BenchConfig, model: &str, t: &unroll::tune::Tuned, json: bool) {
    for w in &t.warnings {
        eprintln!("warning: {w}");
    }
    let mut text = format!(
        "{},{},{} {model}: {}\n",
        c.hidden,
        c.batch,
        c.steps,
        t.summary()
    );
    if !t.timings.is_empty() {
        text += &t.table();
    }
    match json {
        true => eprint!("{text}"),
        false => print!("{text}"),
    }
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

/// Refuses a launch of several processes (by mpirun) where this build has no MPI, or for a
/// command other than `train`, which alone runs as one job over several processes.
fn launch_applies(command: &Command) -> Result<()> {
    let ranks = unroll::collective::check_launch()?;
    let spans = match command {
        Command::Train(_) => true,
        Command::Bench(b) => !b.exchange.is_empty(),
        _ => false,
    };
    if ranks > 1 && !spans {
        anyhow::bail!(
            "this command was started as one of {ranks} processes (by mpirun or a similar \
             launcher), and only `unroll train` and `unroll bench --exchange` run as one job \
             over several\n  hint: run it without mpirun"
        );
    }
    Ok(())
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
    let (sub, _) = matches.subcommand().unwrap_or(("", &matches));
    let explicit = explicit_flags(&matches, sub);
    let given = Given(&explicit);
    if let Err(e) = launch_applies(&cli.command) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Info(a) => run_info(a, &given),
        Command::Check(a) => run_check(a, &given),
        Command::Train(a) => run_train(a, &given),
        Command::Sample(a) => run_sample(a),
        Command::Forecast(a) => run_forecast(a, &given),
        Command::Predict(a) => cli_classify::run_predict(a, &given),
        Command::Bench(a) => run_bench(a, &given),
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
