//! The command line's flags: one `clap::Args` struct per command, and the shared groups
//! (adapter, cell) flattened into them.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use unroll::cell::Cell;
use unroll::train::TrainConfig;

pub(crate) use crate::args_device::{AdapterArgs, Device};
pub(crate) use crate::args_given::{Given, flag};

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
    /// A configuration H,B,T to time (repeatable; default: 100,1,25 128,32,64 512,32,64 1024,64,64).
    #[arg(long = "config", value_parser = parse_hbt)]
    pub(crate) configs: Vec<(usize, usize, usize)>,
    /// Vocabulary size (I = O).
    #[arg(long, default_value_t = 65)]
    pub(crate) vocab: usize,
    /// Timed steps per configuration.
    #[arg(long, default_value_t = 20)]
    pub(crate) steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub(crate) warmup: usize,
    /// Skip the CPU reference.
    #[arg(long)]
    pub(crate) no_cpu: bool,
    /// Seconds the CPU reference may take per configuration (at least one step runs).
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
    pub(crate) cpu_budget: f64,
    /// Per-phase GPU times from timestamp queries.
    #[arg(long)]
    pub(crate) profile: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Time stacked layers of these cells (comma-separated) against the Elman step of the same
    /// H, B, T, in one run, instead of the training-step benchmark.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) cell: Vec<CellArg>,
    /// L: layers of the cells timed with --cell.
    #[arg(long, default_value_t = 1)]
    pub(crate) layers: usize,
    /// Time a data-parallel step's exchange for these parameter counts (e.g.
    /// 20000,130000,1000000): the gradients' read-back, the reduction over the ranks of
    /// `mpirun -np N` (one without it) and the write back, beside the communication model.
    #[arg(long, value_delimiter = ',')]
    pub(crate) exchange: Vec<usize>,
    /// Time what orders a recurrence's timesteps, at these workgroup counts (e.g. 132,264,528:
    /// 1, 2 and 4 per multiprocessor of an H100 or H200): the gap between dependent dispatches,
    /// a grid barrier's round, and the co-residency probe's answer.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sync: Vec<usize>,
    /// Time the products alone, on each product kernel (blocked and tiled), at each
    /// configuration's weight-gradient shape (H × H over T·B rows) and at 1024³.
    #[arg(long)]
    pub(crate) products: bool,
    /// How the step's variant is chosen: off (per shape and adapter), quick (the cached choice,
    /// else a few variants timed within about 2 s), full (every variant timed). Prints each
    /// variant's time; the choice is kept in the user's cache directory ($XDG_CACHE_HOME/unroll).
    /// Given with --cell, each cell's step is tuned after the comparison.
    #[arg(long, value_enum, default_value = "quick")]
    pub(crate) tune: unroll::tune::TuneMode,
}

pub(crate) fn parse_hbt(s: &str) -> std::result::Result<(usize, usize, usize), String> {
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
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
    /// The run's configuration (its cell and depth from `cell`).
    #[command(flatten)]
    pub(crate) config: TrainConfig,
    #[command(flatten)]
    pub(crate) cell: CellArgs,
    #[command(flatten)]
    pub(crate) sequence: crate::args_seq::SequenceArgs,
    /// The most bytes --data may hold (the file is read into memory whole).
    #[arg(long, default_value_t = unroll::data::DEFAULT_MAX_BYTES)]
    pub(crate) max_bytes: u64,
    /// gpu (default) or cpu (the reference path: slow, bitwise repeatable).
    #[arg(long, value_enum, default_value = "gpu")]
    pub(crate) device: unroll::train::Device,
    /// Where the checkpoint (model.safetensors), metrics.csv and loss.svg go (default:
    /// runs/default; with --resume, the checkpoint's own directory). A directory holding files
    /// that unroll did not write is refused unless --force.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Write into --out even if it holds files that unroll did not write (model.safetensors,
    /// metrics.csv and loss.svg there are replaced).
    #[arg(long)]
    pub(crate) force: bool,
    /// Continue the run of this checkpoint: its model, data encoding and training configuration
    /// are kept; --iters (the total to reach), --data, --out and the device flags may be given.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// No progress bar: a log line per evaluation.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Skip the check before training on the GPU: one step at the model's sizes (B and T capped
    /// at 4 and 8) compared with the CPU reference.
    #[arg(long)]
    pub(crate) no_self_check: bool,
    /// How the GPU step's variant is chosen: off (per shape and adapter), quick (the cached
    /// choice, else a few variants timed within about 2 s), full (every variant timed). Each
    /// variant is checked against the CPU reference first; the choice is kept in the user's
    /// cache directory ($XDG_CACHE_HOME/unroll), and changes the speed, never the results.
    #[arg(long, value_enum, default_value = "quick")]
    pub(crate) tune: unroll::tune::TuneMode,
    /// K: split each rank's streams into K micro-batches, run one after another and summed in
    /// order before each update (the same model as one batch; fits a batch K times larger).
    #[arg(long, default_value_t = 1)]
    pub(crate) accumulate: usize,
    /// Train data-parallel on these adapters (indices in `unroll info`'s list, e.g. 0,1), one
    /// rank and one thread each, in this process; the batch divides among them. An index given
    /// twice opens its adapter twice.
    #[arg(long, value_delimiter = ',')]
    pub(crate) devices: Vec<usize>,
}

#[derive(Args)]
pub(crate) struct SampleArgs {
    /// The checkpoint.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 500)]
    pub(crate) len: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub(crate) temperature: f32,
    /// Text that primes the hidden state (default: a newline).
    #[arg(long, default_value = "\n")]
    pub(crate) prime: String,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

#[derive(Args)]
pub(crate) struct ForecastArgs {
    /// The checkpoint of a series model.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// The history to warm up on (default: the built-in series).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Steps to predict.
    #[arg(long, default_value_t = 200)]
    pub(crate) horizon: usize,
    /// The forecast CSV (a plot is written beside it, .svg).
    #[arg(long, default_value = "forecast.csv")]
    pub(crate) out: PathBuf,
    /// The most bytes --data may hold (the file is read into memory whole).
    #[arg(long, default_value_t = unroll::data::DEFAULT_MAX_BYTES)]
    pub(crate) max_bytes: u64,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    Tokens,
    Dense,
}

/// The cell and depth of a model.
#[derive(Args, Clone, Copy)]
pub(crate) struct CellArgs {
    /// The cell of every layer, as `torch.nn` has it: RNN (Elman), GRU or LSTM.
    #[arg(long, value_enum, default_value = "rnn")]
    pub(crate) cell: CellArg,
    /// L: stacked layers.
    #[arg(long, default_value_t = 1)]
    pub(crate) layers: usize,
    /// The nonlinearity of an `rnn` cell.
    #[arg(long, value_enum, default_value = "tanh")]
    pub(crate) nonlinearity: Nonlinearity,
}

impl CellArgs {
    pub(crate) fn cell(&self) -> Cell {
        self.cell.cell(self.nonlinearity == Nonlinearity::Relu)
    }
}

/// A recurrent cell, as PyTorch names it.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum CellArg {
    Rnn,
    Gru,
    Lstm,
}

impl CellArg {
    /// The cell, with relu for an `rnn` where asked.
    pub(crate) fn cell(self, relu: bool) -> Cell {
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
pub(crate) enum Nonlinearity {
    Tanh,
    Relu,
}

impl CellArgs {
    /// Refuses `--nonlinearity` for a cell that has none.
    pub(crate) fn check_flags(&self, given: &Given<'_>) -> anyhow::Result<()> {
        given.refuse(
            &["nonlinearity"],
            self.cell == CellArg::Rnn,
            "only the rnn (Elman) cell has a nonlinearity; a GRU and an LSTM have their gates",
        )
    }
}

impl TrainArgs {
    /// The run's configuration from the flags.
    pub(crate) fn config(&self) -> TrainConfig {
        TrainConfig {
            cell: self.cell.cell(),
            layers: self.cell.layers,
            bidirectional: self.sequence.bidirectional,
            head: self.sequence.head().unwrap_or_default(),
            ..self.config.clone()
        }
    }
}

/// The adapter flags, which only a GPU run uses.
pub(crate) const ADAPTER_FLAGS: [&str; 4] = ["backend", "adapter", "adapter_index", "recurrence"];

/// The flags `train --resume` takes from the checkpoint: giving one is an error rather than a
/// change that would be silently ignored.
const FIXED_ON_RESUME: [&str; 26] = [
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
    "early_stop",
    "seed",
    "bidirectional",
    "head",
    "val",
];

impl TrainArgs {
    /// Refuses the flags that do not apply to this run.
    pub(crate) fn check_flags(&self, given: &Given<'_>) -> anyhow::Result<()> {
        use unroll::train::{Device as On, Task};
        if let Some(ck) = &self.resume {
            given.refuse(
                &FIXED_ON_RESUME,
                false,
                &format!(
                    "--resume continues the run as {} configured it, and they would change it \
                     (with --resume only --iters, --data, --out, --sample-len and the device and \
                     display flags apply; to change the others, start a new run)",
                    ck.display()
                ),
            )?;
        }
        self.cell.check_flags(given)?;
        let optim = &self.config.optim;
        given.refuse(
            &["momentum"],
            optim.kind == unroll::optim::OptimizerKind::Sgd,
            "--momentum is SGD's (Adam keeps its own moments, Adagrad none)",
        )?;
        given.refuse(
            &["lr_decay_every"],
            optim.decay != 1.0,
            "--lr-decay-every is the period of --lr-decay, which is 1 (no decay)",
        )?;
        given.refuse(
            &[ADAPTER_FLAGS.as_slice(), &["no_self_check", "tune"]].concat(),
            self.device == On::Gpu,
            "--device cpu trains with the CPU reference, on no adapter",
        )?;
        given.refuse(
            &["devices"],
            self.device == On::Gpu,
            "--devices names adapters, and --device cpu trains on none",
        )?;
        given.refuse(
            &["adapter", "adapter_index"],
            self.devices.is_empty(),
            "--devices names the adapters of the run",
        )?;
        if self.accumulate == 0 || self.accumulate > unroll::train::MAX_BATCH_OR_SEQ_LEN {
            anyhow::bail!(
                "--accumulate {} is no number of micro-batches\n  hint: pass 1 (the whole batch \
                 at once) or more, up to the batch size",
                self.accumulate
            );
        }
        given.refuse(
            &["max_bytes"],
            self.config.data.is_some() || self.resume.is_some(),
            "--max-bytes limits the file of --data, and the built-in data is no file",
        )?;
        if self.resume.is_none() {
            let classify = self.config.task == Task::Classify;
            self.sequence.check_train(given, classify)?;
            let series = self.config.task == Task::Series;
            given.refuse(
                &["columns", "target"],
                series,
                "columns are for --task series (a CSV)",
            )?;
            given.refuse(
                &["bytes", "sample_len"],
                !series,
                "a series model reads numbers and prints no sample",
            )?;
        }
        Ok(())
    }
}

/// The most parameters `bench --exchange` times (1 GiB of gradients).
const MAX_EXCHANGE: usize = 1 << 28;

/// The flags of the training-step benchmarks, which `--exchange` and `--sync` refuse.
const TRAINING_BENCH_FLAGS: [&str; 10] = [
    "configs",
    "vocab",
    "no_cpu",
    "cpu_budget",
    "profile",
    "json",
    "cell",
    "layers",
    "recurrence",
    "tune",
];

/// The most steps (timed, or warm-up) a benchmark takes.
const MAX_BENCH_STEPS: usize = 1_000_000;

impl BenchArgs {
    /// Refuses the flags that do not apply to this benchmark, and sizes that make none.
    pub(crate) fn check_flags(&self, given: &Given<'_>) -> anyhow::Result<()> {
        let cells = !self.cell.is_empty();
        given.refuse(
            &TRAINING_BENCH_FLAGS,
            self.exchange.is_empty(),
            "--exchange times the read-back and the reduction of P gradients, not a training step",
        )?;
        given.refuse(
            &[&TRAINING_BENCH_FLAGS[..], &["exchange"]].concat(),
            self.sync.is_empty(),
            "--sync times the ordering of a recurrence's timesteps, not a training step",
        )?;
        if let Some(g) = self.sync.iter().find(|&&g| g == 0 || g > 65_535) {
            anyhow::bail!(
                "--sync {g} is no workgroup count to time\n  hint: pass counts between 1 and \
                 65535, such as 132,264,528"
            );
        }
        if let Some(p) = self.exchange.iter().find(|&&p| p == 0 || p > MAX_EXCHANGE) {
            anyhow::bail!(
                "--exchange {p} is no parameter count to time\n  hint: pass counts between 1 and \
                 {MAX_EXCHANGE}, such as 20000,130000,1000000"
            );
        }
        given.refuse(
            &[
                "no_cpu",
                "cpu_budget",
                "profile",
                "cell",
                "layers",
                "recurrence",
                "vocab",
                "tune",
            ],
            !self.products,
            "--products times the products alone, with no model, CPU reference or recurrence",
        )?;
        given.refuse(
            &["products"],
            self.exchange.is_empty() && self.sync.is_empty(),
            "--products times products; --exchange and --sync time other things",
        )?;
        given.refuse(
            &["no_cpu", "cpu_budget", "profile"],
            !cells,
            "--cell times each cell's step on the GPU against the Elman step, with no CPU \
             reference and no profile",
        )?;
        given.refuse(
            &["layers"],
            cells,
            "--layers is the depth of the cells that --cell times",
        )?;
        given.refuse(
            &["cpu_budget"],
            !self.no_cpu,
            "--no-cpu skips the CPU reference",
        )?;
        for (flag, n) in [("--steps", self.steps), ("--warmup", self.warmup)] {
            if n > MAX_BENCH_STEPS {
                anyhow::bail!(
                    "{flag} {n} is more steps than a benchmark takes\n  hint: pass {flag} of at \
                     most {MAX_BENCH_STEPS}"
                );
            }
        }
        if !(self.cpu_budget.is_finite() && self.cpu_budget > 0.0 && self.cpu_budget <= 1e9) {
            anyhow::bail!(
                "--cpu-budget {} is not a number of seconds\n  hint: pass a positive number such \
                 as 20 (the CPU reference runs at least one step whatever the budget)",
                self.cpu_budget
            );
        }
        if cells && !(1..=unroll::model::MAX_LAYERS).contains(&self.layers) {
            anyhow::bail!(
                "--layers {} makes no model\n  hint: pass --layers between 1 and {}",
                self.layers,
                unroll::model::MAX_LAYERS
            );
        }
        if self.vocab == 0 || self.vocab > unroll::model::MAX_FEATURES {
            anyhow::bail!(
                "--vocab {} makes no model\n  hint: pass --vocab between 1 and {}",
                self.vocab,
                unroll::model::MAX_FEATURES
            );
        }
        Ok(())
    }
}
