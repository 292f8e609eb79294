//! `unroll check`: one step of the GPU against the CPU reference, and both against a stored case
//! ([`crate::case`]).
//!
//! The truth is the case's expected values (PyTorch in f64) where it has them, else the CPU
//! reference in f64. The f32 results pass a tensor within `max(1e-5 · max |ref|, 4 × float32's
//! own error)`, float32's own error being PyTorch's float32 where the case has it, else the CPU
//! reference's in f32 (see [`crate::compare`]); the f64 reference passes within 1e-10.

use crate::case::Case;
use crate::compare::{Comparison, compare_all, compare_with_yardstick, table};
use crate::cpu;
use crate::error::Result;
use crate::gpu::StepOptions;
use crate::gpu::{Gpu, ModelStep, Recurrence};
use crate::model::{Batch, ModelConfig, NamedTensor, Params, StepOutput};
use crate::tensorfile::{OwnedTensor, write_atomic};
use std::collections::HashMap;
use std::path::Path;

/// The tolerance of f32 results against the reference: `max |Δ| ≤ 1e-5 · max |ref|`.
pub const RTOL_F32: f64 = 1e-5;
/// The tolerance of the f64 CPU reference against the f64 oracle.
pub const RTOL_F64: f64 = 1e-10;

/// What `check` found: one table of comparisons per pairing.
pub struct CheckReport {
    /// (title, rows).
    pub sections: Vec<(String, Vec<Comparison>)>,
}

impl CheckReport {
    /// Whether every tensor of every section passed.
    pub fn pass(&self) -> bool {
        self.sections
            .iter()
            .all(|(_, rows)| rows.iter().all(Comparison::pass))
    }

    /// The report as text.
    pub fn render(&self) -> String {
        self.sections
            .iter()
            .map(|(title, rows)| table(title, rows))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The CPU reference's results of one step, in f64 (the truth) and in f32 (the yardstick of
/// float32's own error), computed once to judge any number of GPU steps against.
pub struct Reference {
    config: ModelConfig,
    shape: (usize, usize),
    truth: Vec<NamedTensor>,
    cpu32: Vec<NamedTensor>,
}

impl Reference {
    /// Runs the CPU reference on `params` and `batch`, in f64 and in f32.
    pub fn new(params: &Params<f64>, batch: &Batch) -> Self {
        let c = params.config;
        let (nb, nt) = (batch.batch, batch.steps);
        Self {
            config: c,
            shape: (nb, nt),
            truth: cpu::step(params, batch).tensors(&c, nb, nt),
            cpu32: cpu::step(&params.cast::<f32>(), batch).tensors(&c, nb, nt),
        }
    }

    /// A GPU step's results against the truth, within [`RTOL_F32`] of it or 4 × float32's own
    /// error.
    pub fn compare(&self, out: &StepOutput<f32>) -> Vec<Comparison> {
        let (nb, nt) = self.shape;
        let got = out.tensors(&self.config, nb, nt);
        compare_with_yardstick(&self.truth, &self.cpu32, &got, RTOL_F32)
    }
}

/// Compares a GPU step's results on `params` and `batch` with the CPU reference in f64, with the
/// reference in f32 as the yardstick of float32's own error (as [`check`] does).
pub fn compare_step(out: &StepOutput<f32>, params: &Params<f64>, batch: &Batch) -> Vec<Comparison> {
    Reference::new(params, batch).compare(out)
}

/// One step of the case on the GPU (the step training would build), compared with the CPU
/// reference as [`compare_step`] does.
#[cfg(not(target_arch = "wasm32"))]
pub fn compare_gpu(
    gpu: &Gpu,
    kernels: &crate::gpu::Kernels,
    case: &Case,
    recurrence: Option<Recurrence>,
) -> Result<Vec<Comparison>> {
    let options = StepOptions {
        recurrence,
        ..Default::default()
    };
    compare_gpu_with(gpu, kernels, case, options)
}

/// [`compare_gpu`] for a step built with `options` (its recurrence, tiles and subgroups; the
/// case's parameters are written into it).
#[cfg(not(target_arch = "wasm32"))]
pub fn compare_gpu_with(
    gpu: &Gpu,
    kernels: &crate::gpu::Kernels,
    case: &Case,
    options: StepOptions,
) -> Result<Vec<Comparison>> {
    let (c, b) = (case.params.config, &case.batch);
    let step = ModelStep::new(gpu, kernels, c, (b.batch, b.steps), options)?;
    let out = step.run_and_read(gpu, &case.params.cast(), b)?;
    Ok(compare_step(&out, &case.params, b))
}

/// One line naming a case's model and batch.
fn describe(c: &ModelConfig, batch: &Batch) -> String {
    let mut line = format!(
        "{}, {} layer{}, I={} H={} O={} B={} T={} {}",
        c.cell.name(),
        c.layers,
        if c.layers == 1 { "" } else { "s" },
        c.input,
        c.hidden,
        c.output,
        batch.batch,
        batch.steps,
        c.kind
    );
    if c.bidirectional {
        line += ", bidirectional";
    }
    if c.head.is_sequence() {
        line += &format!(", {} head", c.head.name());
    }
    if let Some(lengths) = &batch.lengths {
        let l: Vec<String> = lengths.iter().map(usize::to_string).collect();
        line += &format!(", lengths {}", l.join(","));
    }
    line
}

/// The tensors of `list` by name where it has them, the fallback's elsewhere.
fn by_name(list: &[NamedTensor], fallback: &[NamedTensor]) -> Vec<NamedTensor> {
    fallback
        .iter()
        .map(|t| list.iter().find(|x| x.name == t.name).unwrap_or(t).clone())
        .collect()
}

/// Runs the case on the CPU reference in f64 and f32 and, given a GPU, on the GPU step training
/// would build, and compares them with the truth. Writes both paths' results to `dump` as
/// `cpu.<name>` and `gpu.<name>`.
///
/// ```
/// use unroll::case::{Case, RandomCase};
/// use unroll::gpu::{AdapterChoice, Gpu};
/// use unroll::{Cell, ModelConfig};
///
/// let config = ModelConfig::tokens(11, 7).with_cell(Cell::Lstm, 2);
/// let settings = RandomCase { batch: 3, steps: 5, seed: 1, init_scale: None, random_state: true };
/// let case = Case::random(config, settings)?;
/// let gpu = Gpu::new(&AdapterChoice::default())?;
/// let report = unroll::check::check(Some(&gpu), &case, None, None)?;
/// assert!(report.pass(), "{}", report.render());
/// # Ok::<(), unroll::Error>(())
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn check(
    gpu: Option<&Gpu>,
    case: &Case,
    recurrence: Option<Recurrence>,
    dump: Option<&Path>,
) -> Result<CheckReport> {
    pollster::block_on(check_async(gpu, case, recurrence, dump))
}

/// [`check`] as a future.
pub async fn check_async(
    gpu: Option<&Gpu>,
    case: &Case,
    recurrence: Option<Recurrence>,
    dump: Option<&Path>,
) -> Result<CheckReport> {
    let options = StepOptions {
        recurrence,
        ..Default::default()
    };
    check_with(gpu, case, options, dump).await
}

/// [`check`] of a GPU step built with `options` (a run's tuned variant, its tiles chosen for
/// the case's shape), as a future.
pub async fn check_with(
    gpu: Option<&Gpu>,
    case: &Case,
    options: StepOptions,
    dump: Option<&Path>,
) -> Result<CheckReport> {
    let (b, c) = (&case.batch, case.params.config);
    let (nb, nt) = (b.batch, b.steps);
    // Both sides' sizes before any work: the GPU's buffers, then the host's memory.
    if let Some(gpu) = gpu {
        crate::gpu::ModelStep::check_fits(gpu, c, (nb, nt), options.recurrence)?;
    }
    // The case exists already: what the check adds to it.
    let work = crate::footprint::Work::Check {
        batch: nb,
        steps: nt,
    };
    crate::footprint::check_host(&c, &[work])?;
    let p32: Params<f32> = case.params.cast();
    let got64 = cpu::step(&case.params, b).tensors(&c, nb, nt);
    let got32 = cpu::step(&p32, b).tensors(&c, nb, nt);
    let truth = by_name(&case.expected, &got64);
    let pytorch32 = !case.expected_f32.is_empty() && case.expected_f32.len() == case.expected.len();
    let yardstick = if pytorch32 {
        by_name(&case.expected_f32, &got32)
    } else {
        got32.clone()
    };
    let (truth_name, own) = match (case.expected.is_empty(), pytorch32) {
        (true, _) => ("the CPU reference in f64", "the reference's f32"),
        (false, true) => ("the case's expected values", "PyTorch's float32"),
        (false, false) => ("the case's expected values", "the reference's f32"),
    };
    let what = describe(&c, b);
    let mut sections = Vec::new();
    if !case.expected.is_empty() {
        sections.push((
            format!("CPU reference (f64) against {truth_name}: {what}"),
            compare_all(&case.expected, &got64, RTOL_F64),
        ));
    }
    if !case.expected.is_empty() || gpu.is_none() {
        sections.push((
            format!("CPU reference (f32) against {truth_name} (f32's own: {own}): {what}"),
            compare_with_yardstick(&truth, &yardstick, &got32, RTOL_F32),
        ));
    }
    let gpu_out = match gpu {
        Some(gpu) => {
            let kernels = gpu.kernels()?;
            let step = gpu.scoped("allocating the step's buffers", || {
                ModelStep::new(gpu, &kernels, c, (nb, nt), options)
            })??;
            let out = step.run_and_read_async(gpu, &p32, b).await?;
            let out = out.tensors(&c, nb, nt);
            sections.push((
                format!(
                    "GPU ({}, {} recurrence) against {truth_name} (f32's own: {own}): {what}",
                    crate::gpu::describe(&gpu.info),
                    step.recurrence().name()
                ),
                compare_with_yardstick(&truth, &yardstick, &out, RTOL_F32),
            ));
            Some(out)
        }
        None => None,
    };
    if let Some(path) = dump {
        write_dump(path, &c, (nb, nt), &got32, gpu_out.as_deref())?;
    }
    Ok(CheckReport { sections })
}

/// Writes both paths' results, `cpu.<name>` and `gpu.<name>`, under the case's names.
fn write_dump(
    path: &Path,
    config: &ModelConfig,
    (nb, nt): (usize, usize),
    cpu: &[NamedTensor],
    gpu: Option<&[NamedTensor]>,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (prefix, list) in [("cpu", Some(cpu)), ("gpu", gpu)] {
        for t in list.into_iter().flatten() {
            let data: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
            let name = format!("{prefix}.{}", t.name);
            tensors.push(OwnedTensor::f32(name, t.shape.clone(), &data));
        }
    }
    let mut meta = HashMap::new();
    meta.insert(
        "config".to_string(),
        serde_json::to_string(config).unwrap_or_default(),
    );
    meta.insert("batch".to_string(), format!("{{\"B\":{nb},\"T\":{nt}}}"));
    meta.extend([crate::owned::safetensors_mark(
        crate::owned::Kind::CheckDump,
    )]);
    write_atomic(path, &tensors, meta)
}
