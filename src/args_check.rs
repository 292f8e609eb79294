//! `unroll check`'s flags: a stored case, or a generated model and batch, and where the results
//! go.

use crate::args::{ADAPTER_FLAGS, AdapterArgs, CellArgs, Device, Given, Kind};
use clap::Args;
use std::path::PathBuf;
use unroll::model::ModelConfig;

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
    /// gpu: compare the GPU with the CPU reference; cpu: run the reference alone.
    #[arg(long, value_enum, default_value = "gpu")]
    pub(crate) device: Device,
    /// Read parameters, batch and expected results from a safetensors case (the oracle's layout).
    #[arg(long)]
    pub(crate) case: Option<PathBuf>,
    /// Write both paths' results to this safetensors file (`gpu.<name>`, `cpu.<name>`).
    #[arg(long)]
    pub(crate) dump: Option<PathBuf>,
    /// Write the case (parameters, batch and the expected results in f64) to this file, in the
    /// layout --case reads: to check it again elsewhere, or to attach it to a report.
    #[arg(long)]
    pub(crate) save_case: Option<PathBuf>,
    /// Input kind of the generated model.
    #[arg(long, value_enum, default_value = "tokens")]
    pub(crate) kind: Kind,
    /// I: vocabulary size (tokens) or input features (dense).
    #[arg(long, default_value_t = 65)]
    pub(crate) input: usize,
    /// H: hidden size.
    #[arg(long, default_value_t = 128)]
    pub(crate) hidden: usize,
    /// O: output features (dense; tokens use the vocabulary size).
    #[arg(long, default_value_t = 65)]
    pub(crate) output: usize,
    /// B: batch size.
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// T: timesteps.
    #[arg(long, default_value_t = 32)]
    pub(crate) steps: usize,
    /// Start from a random h_0 instead of zeros.
    #[arg(long)]
    pub(crate) random_h0: bool,
    /// Seed for the parameters and the batch.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Draw every weight uniform in ±S instead of PyTorch's ±1/√H (e.g. 0.4 at H=96: a chaotic
    /// model, on which float32 itself loses digits).
    #[arg(long)]
    pub(crate) init_scale: Option<f64>,
    #[command(flatten)]
    pub(crate) cell: CellArgs,
    #[command(flatten)]
    pub(crate) sequence: crate::args_seq::SequenceArgs,
    #[command(flatten)]
    pub(crate) lengths: crate::args_seq::LengthsArg,
}

impl CheckArgs {
    /// The generated model.
    pub(crate) fn model(&self) -> ModelConfig {
        let config = match self.kind {
            Kind::Tokens => ModelConfig::tokens(self.input, self.hidden),
            Kind::Dense => ModelConfig::dense(self.input, self.hidden, self.output),
        };
        self.sequence
            .apply(config.with_cell(self.cell.cell(), self.cell.layers))
    }
}

/// The flags that generate `check`'s model and batch.
const GENERATED_CASE: [&str; 12] = [
    "kind",
    "input",
    "hidden",
    "output",
    "batch",
    "steps",
    "random_h0",
    "seed",
    "init_scale",
    "cell",
    "layers",
    "nonlinearity",
];

impl CheckArgs {
    /// Refuses the flags that do not apply to this check.
    pub(crate) fn check_flags(&self, given: &Given<'_>) -> anyhow::Result<()> {
        given.refuse(
            &GENERATED_CASE,
            self.case.is_none(),
            "--case reads the model, its parameters and the batch from the file",
        )?;
        given.refuse(
            &[crate::args_seq::SequenceArgs::IDS.as_slice(), &["lengths"]].concat(),
            self.case.is_none(),
            "--case reads the model, its parameters and the batch from the file",
        )?;
        given.refuse(
            &ADAPTER_FLAGS,
            self.device == Device::Gpu,
            "--device cpu runs the CPU reference alone, on no adapter",
        )?;
        given.refuse(
            &["output"],
            matches!(self.kind, Kind::Dense),
            "a token model's output is its vocabulary (--input); --output is for --kind dense",
        )?;
        self.cell.check_flags(given)?;
        if let (Some(a), Some(b)) = (&self.dump, &self.save_case)
            && same_path(a, b)
        {
            anyhow::bail!(
                "--dump and --save-case name one file, {}: each is a file of its own\n  hint: pass \
                 two paths",
                a.display()
            );
        }
        Ok(())
    }
}

/// Whether two paths name one file (the same path, one existing file, or one name in one
/// existing directory).
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    let dir = |p: &std::path::Path| {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        parent.canonicalize().ok()
    };
    a == b
        || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        || (a.file_name() == b.file_name() && dir(a).is_some() && dir(a) == dir(b))
}
