//! `unroll check`: the GPU step against the CPU reference, and both against a stored case.
//!
//! A case is a safetensors file in the layout of the PyTorch oracle (`tests/fixtures/`):
//! parameters `U (H, I)`, `W (H, H)`, `b_ih`, `b_hh` (or one `b`), `V (O, H)`, `c (O)`, the batch
//! `h0 (B, H)`, `inputs`, `targets` ((T, B) token ids, or (T, B, I) and (T, B, O) floats), and
//! optionally the expected results `loss`, `hs`, `logits`, `dU`, `dW`, `db_ih` (or `db`), `dV`,
//! `dc`, `dh0`.

use crate::compare::{Comparison, compare_all, compare_with_yardstick, table};
use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuStep, Kernels, Recurrence};
use crate::model::{Batch, Inputs, ModelConfig, NamedTensor, Params, StepOutput, Targets};
use crate::tensorfile::{OwnedTensor, TensorFile, write_atomic};
use std::collections::HashMap;
use std::path::Path;

/// The tolerance of f32 results against the reference: `max |Δ| ≤ 1e-5 · max |ref|`.
pub const RTOL_F32: f64 = 1e-5;
/// The tolerance of the f64 CPU reference against the f64 oracle.
pub const RTOL_F64: f64 = 1e-10;

/// Parameters, a batch and (optionally) the expected results of one step.
pub struct Case {
    /// The parameters, in f64 (b = b_ih + b_hh summed in f64).
    pub params: Params<f64>,
    /// The batch.
    pub batch: Batch,
    /// The expected results, by name, if the file holds them.
    pub expected: Option<Vec<NamedTensor>>,
}

impl Case {
    /// Reads a case from a safetensors file.
    pub fn load(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        let (u_shape, u) = f.floats("U", None)?;
        if u_shape.len() != 2 {
            return Err(Error::file(
                path,
                format!("tensor `U` has shape {u_shape:?}, expected (H, I)"),
            ));
        }
        let (nh, ni) = (u_shape[0], u_shape[1]);
        let (v_shape, v) = f.floats("V", None)?;
        if v_shape.len() != 2 || v_shape[1] != nh {
            return Err(Error::file(
                path,
                format!("tensor `V` has shape {v_shape:?}, expected (O, {nh})"),
            ));
        }
        let no = v_shape[0];
        let (_, w) = f.floats("W", Some(&[nh, nh]))?;
        let b: Vec<f64> = if f.has("b") {
            f.floats("b", Some(&[nh]))?.1
        } else {
            let (_, b_ih) = f.floats("b_ih", Some(&[nh]))?;
            let (_, b_hh) = f.floats("b_hh", Some(&[nh]))?;
            b_ih.iter().zip(&b_hh).map(|(x, y)| x + y).collect()
        };
        let (_, c) = f.floats("c", Some(&[no]))?;
        let (h0_shape, h0) = f.floats("h0", None)?;
        if h0_shape.len() != 2 || h0_shape[1] != nh {
            return Err(Error::file(
                path,
                format!("tensor `h0` has shape {h0_shape:?}, expected (B, {nh})"),
            ));
        }
        let nb = h0_shape[0];
        let dense = f.floats("inputs", None).is_ok();
        let (config, inputs, targets, nt) = if dense {
            let (x_shape, x) = f.floats("inputs", None)?;
            let nt = x_shape[0];
            if x_shape != [nt, nb, ni] {
                return Err(Error::file(
                    path,
                    format!("tensor `inputs` has shape {x_shape:?}, expected (T, {nb}, {ni})"),
                ));
            }
            let (_, y) = f.floats("targets", Some(&[nt, nb, no]))?;
            (
                ModelConfig::dense(ni, nh, no),
                Inputs::Dense(x.iter().map(|&v| v as f32).collect()),
                Targets::Dense(y.iter().map(|&v| v as f32).collect()),
                nt,
            )
        } else {
            let (x_shape, x) = f.ids("inputs", None)?;
            if x_shape.len() != 2 || x_shape[1] != nb {
                return Err(Error::file(
                    path,
                    format!("tensor `inputs` has shape {x_shape:?}, expected (T, {nb})"),
                ));
            }
            let nt = x_shape[0];
            let (_, y) = f.ids("targets", Some(&[nt, nb]))?;
            let mut config = ModelConfig::tokens(ni, nh);
            config.output = no;
            (config, Inputs::Tokens(x), Targets::Tokens(y), nt)
        };
        let mut data = Vec::with_capacity(config.num_params());
        for part in [&u, &w, &b, &v, &c] {
            data.extend_from_slice(part);
        }
        let params = Params { config, data };
        let batch = Batch {
            batch: nb,
            steps: nt,
            inputs,
            targets,
            h0: h0.iter().map(|&v| v as f32).collect(),
        };
        batch
            .validate(&config)
            .map_err(|e| Error::file(path, format!("the batch does not fit the model: {e}")))?;

        let expected = if f.has("loss") {
            let mut out = Vec::new();
            for (name, file_name) in [
                ("loss", "loss"),
                ("hs", "hs"),
                ("logits", "logits"),
                ("dU", "dU"),
                ("dW", "dW"),
                ("db", if f.has("db") { "db" } else { "db_ih" }),
                ("dV", "dV"),
                ("dc", "dc"),
                ("dh0", "dh0"),
            ] {
                if f.has(file_name) {
                    let (shape, data) = f.floats(file_name, None)?;
                    out.push(NamedTensor {
                        name: name.into(),
                        shape,
                        data,
                    });
                }
            }
            Some(out)
        } else {
            None
        };
        Ok(Self {
            params,
            batch,
            expected,
        })
    }
}

impl Case {
    /// Writes the case in the layout [`Case::load`] reads: the parameters and the batch, and the
    /// expected results (the case's own, else the CPU reference's in f64), so that a model and
    /// batch can be checked again elsewhere (`unroll check --case`) or attached to a report.
    pub fn save(&self, path: &Path) -> Result<()> {
        let config = self.params.config;
        let (nb, nt) = (self.batch.batch, self.batch.steps);
        let (ni, nh, no) = (config.input, config.hidden, config.output);
        let p = |name: &str| self.params.get(name).to_vec();
        let mut tensors = vec![
            OwnedTensor::f64("U", vec![nh, ni], &p("U")),
            OwnedTensor::f64("W", vec![nh, nh], &p("W")),
            OwnedTensor::f64("b", vec![nh], &p("b")),
            OwnedTensor::f64("V", vec![no, nh], &p("V")),
            OwnedTensor::f64("c", vec![no], &p("c")),
            OwnedTensor::f32("h0", vec![nb, nh], &self.batch.h0),
        ];
        match (&self.batch.inputs, &self.batch.targets) {
            (Inputs::Tokens(x), Targets::Tokens(y)) => {
                tensors.push(OwnedTensor::u32("inputs", vec![nt, nb], x));
                tensors.push(OwnedTensor::u32("targets", vec![nt, nb], y));
            }
            (Inputs::Dense(x), Targets::Dense(y)) => {
                tensors.push(OwnedTensor::f32("inputs", vec![nt, nb, ni], x));
                tensors.push(OwnedTensor::f32("targets", vec![nt, nb, no], y));
            }
            _ => {
                return Err(Error::config(
                    "the case's inputs and targets are of different kinds",
                    "give tokens with token targets, or dense inputs with dense targets",
                ));
            }
        }
        let expected = match &self.expected {
            Some(e) => e.clone(),
            None => cpu::step(&self.params, &self.batch).tensors(&config, nb, nt),
        };
        for t in expected {
            tensors.push(OwnedTensor::f64(t.name, t.shape, &t.data));
        }
        let mut meta = HashMap::new();
        meta.insert(
            "made_by".to_string(),
            "unroll check --save-case; expected values from unroll's CPU reference in f64".into(),
        );
        write_atomic(path, &tensors, meta)
    }
}

/// Where `check` runs the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDevice {
    /// The GPU step against the CPU reference.
    Gpu,
    /// The CPU reference alone (against the case's expected results, if any).
    Cpu,
}

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

/// Compares a GPU step's results on `params` and `batch` with the CPU reference in f64, with the
/// reference in f32 as the yardstick of float32's own error (as [`check`] does).
pub fn compare_step(out: &StepOutput<f32>, params: &Params<f64>, batch: &Batch) -> Vec<Comparison> {
    let config = params.config;
    let (nb, nt) = (batch.batch, batch.steps);
    let truth = cpu::step(params, batch).tensors(&config, nb, nt);
    let cpu32 = cpu::step(&params.cast::<f32>(), batch).tensors(&config, nb, nt);
    compare_with_yardstick(&truth, &cpu32, &out.tensors(&config, nb, nt), RTOL_F32)
}

/// Runs the GPU step (unless `gpu` is None) and the CPU reference on the case and compares them
/// with the truth: the case's expected values (PyTorch in f64) where it has them, else the CPU
/// reference in f64. The GPU passes a tensor within `max(1e-5 · max |ref|, 4 × float32's own
/// error)`, float32's own error being the CPU reference's in f32 (see [`crate::compare`]). The
/// case's expected values also pin the f64 reference (within 1e-10). Writes both paths' results
/// to `dump`.
pub fn check(
    gpu: Option<&Gpu>,
    case: &Case,
    recurrence: Option<Recurrence>,
    dump: Option<&Path>,
) -> Result<CheckReport> {
    let config = case.params.config;
    let (nb, nt) = (case.batch.batch, case.batch.steps);
    let params32: Params<f32> = case.params.cast();
    let cpu_tensors = cpu::step(&params32, &case.batch).tensors(&config, nb, nt);
    let cpu64 = cpu::step(&case.params, &case.batch).tensors(&config, nb, nt);
    // The truth: the case's f64 values, tensor by tensor where it has them.
    let truth: Vec<NamedTensor> = cpu64
        .iter()
        .map(|t| {
            case.expected
                .as_ref()
                .and_then(|e| e.iter().find(|x| x.name == t.name))
                .unwrap_or(t)
                .clone()
        })
        .collect();
    let truth_name = if case.expected.is_some() {
        "the case's expected values"
    } else {
        "the CPU reference in f64"
    };
    let mut sections = Vec::new();

    if let Some(expected) = &case.expected {
        sections.push((
            "CPU reference (f64) against the case's expected values".into(),
            compare_all(expected, &cpu64, RTOL_F64),
        ));
    }

    let gpu_out: Option<StepOutput<f32>> = match gpu {
        Some(gpu) => {
            let recurrence = recurrence
                .unwrap_or_else(|| Recurrence::auto(gpu.info.device_type, nb, config.hidden));
            let kernels = gpu.scoped("building the compute pipelines", || {
                Kernels::new(&gpu.device)
            })?;
            let step = gpu.scoped("allocating the step's buffers", || {
                GpuStep::new(gpu, &kernels, config, nb, nt, recurrence)
            })??;
            let out = step.run_and_read(gpu, &params32, &case.batch)?;
            sections.push((
                format!(
                    "GPU ({}, {recurrence:?} recurrence) against {truth_name}, B={nb} T={nt} I={} H={} O={} {}",
                    crate::gpu::describe(&gpu.info),
                    config.input,
                    config.hidden,
                    config.output,
                    config.kind
                ),
                compare_with_yardstick(
                    &truth,
                    &cpu_tensors,
                    &out.tensors(&config, nb, nt),
                    RTOL_F32,
                ),
            ));
            Some(out)
        }
        None => {
            // The reference alone: its f32 arithmetic against the truth.
            sections.push((
                format!("CPU reference (f32) against {truth_name}"),
                compare_all(&truth, &cpu_tensors, RTOL_F32),
            ));
            None
        }
    };

    if let Some(path) = dump {
        let mut tensors = Vec::new();
        let mut add = |prefix: &str, ts: Vec<NamedTensor>| {
            for t in ts {
                let data: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
                tensors.push(OwnedTensor::f32(
                    format!("{prefix}.{}", t.name),
                    t.shape,
                    &data,
                ));
            }
        };
        add("cpu", cpu_tensors);
        if let Some(out) = &gpu_out {
            add("gpu", out.tensors(&config, nb, nt));
        }
        let mut meta = HashMap::new();
        meta.insert(
            "config".to_string(),
            serde_json::to_string(&config).unwrap_or_default(),
        );
        meta.insert("batch".to_string(), format!("{{\"B\":{nb},\"T\":{nt}}}"));
        write_atomic(path, &tensors, meta)?;
    }
    Ok(CheckReport { sections })
}
