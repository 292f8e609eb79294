//! `unroll check --case` on a case of stacked layers (the layout of `tests/fixtures/cells/`,
//! made by `cells_reference.py`): parameters under PyTorch's `state_dict` names, the batch with
//! an initial state per layer, the expected results in f64 and PyTorch's own float32 results as
//! `f32.<name>`.
//!
//! The CPU reference ([`crate::cpu_stack`]) runs it in f64, compared with the case within 1e-10,
//! and in f32, compared within `max(1e-5 · max |ref|, 4 × PyTorch float32's own error)`.

use crate::cell::{Cell, StackConfig};
use crate::check::{CheckReport, RTOL_F32, RTOL_F64};
use crate::compare::{Comparison, compare_all, compare_with_yardstick};
use crate::cpu_stack::{StackBatch, StackOutput, step};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuStack, Kernels};
use crate::model::{InputKind, Inputs, NamedTensor, Targets};
use crate::tensorfile::{OwnedTensor, TensorFile, write_atomic};
use num_traits::Float;
use std::collections::HashMap;
use std::path::Path;

/// A case of stacked layers.
pub struct StackCase {
    /// The model.
    pub config: StackConfig,
    /// The parameters in the table's layout, as stored (f32 values, held in f64).
    pub params: Vec<f64>,
    /// The batch and initial states.
    pub batch: StackBatch,
    /// The expected results (f64), by name.
    pub expected: Vec<NamedTensor>,
    /// PyTorch's float32 results of the same names, where the file has them.
    pub expected_f32: Vec<NamedTensor>,
}

impl StackCase {
    /// Whether a safetensors file is in this layout (it names its parameters as PyTorch does).
    pub fn is_stack_file(path: &Path) -> bool {
        TensorFile::open(path).is_ok_and(|f| f.has("rnn.weight_ih_l0"))
    }

    /// Reads a case; its metadata key `meta` holds the spec (cell, layers, I, H, O, B, T, dense).
    pub fn load(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        let bad = |what: String| Error::file(path, what);
        let meta: serde_json::Value = f
            .metadata()
            .get("meta")
            .and_then(|m| serde_json::from_str(m).ok())
            .ok_or_else(|| bad("has no readable `meta` metadata with the case's spec".into()))?;
        let spec = &meta["spec"];
        let n = |k: &str| {
            spec[k]
                .as_u64()
                .filter(|&v| v > 0 && v <= 1 << 20)
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("the spec's `{k}` is not a size")))
        };
        let cell = match (spec["cell"].as_str(), spec["nonlinearity"].as_str()) {
            (Some("rnn"), Some("relu")) => Cell::RnnRelu,
            (Some("rnn"), _) => Cell::Rnn,
            (Some("gru"), _) => Cell::Gru,
            (Some("lstm"), _) => Cell::Lstm,
            (other, _) => {
                return Err(bad(format!(
                    "the spec's cell {other:?} is not rnn, gru or lstm"
                )));
            }
        };
        let dense = spec["dense"].as_bool().unwrap_or(false);
        let config = StackConfig {
            cell,
            layers: n("layers")?,
            kind: if dense {
                InputKind::Dense
            } else {
                InputKind::Tokens
            },
            input: n("I")?,
            hidden: n("H")?,
            output: n("O")?,
        };
        config.validate()?;
        let (nb, nt) = (n("B")?, n("T")?);
        let table = config.table();
        let mut params = vec![0.0; table.len];
        for e in &table.entries {
            let (_, v) = f.floats(&e.name, Some(&e.shape))?;
            params[e.offset..e.offset + e.len].copy_from_slice(&v);
        }
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let (inputs, targets) = if dense {
            let x = f.floats("inputs", Some(&[nt, nb, config.input]))?.1;
            let y = f.floats("targets", Some(&[nt, nb, config.output]))?.1;
            (Inputs::Dense(f32s(x)), Targets::Dense(f32s(y)))
        } else {
            let x = f.ids("inputs", Some(&[nt, nb]))?.1;
            let y = f.ids("targets", Some(&[nt, nb]))?.1;
            if let Some(bad_id) = x.iter().find(|&&v| v as usize >= config.input) {
                return Err(bad(format!(
                    "input token {bad_id} is outside [0, {})",
                    config.input
                )));
            }
            if let Some(bad_id) = y.iter().find(|&&v| v as usize >= config.output) {
                return Err(bad(format!(
                    "target token {bad_id} is outside [0, {})",
                    config.output
                )));
            }
            (Inputs::Tokens(x), Targets::Tokens(y))
        };
        let state_shape = [config.layers, nb, config.hidden];
        let state = |name: &str| -> Result<Vec<f32>> {
            Ok(if f.has(name) {
                f32s(f.floats(name, Some(&state_shape))?.1)
            } else {
                vec![0.0; state_shape.iter().product()]
            })
        };
        let h0 = state("h0")?;
        let c0 = if cell.has_cell_state() {
            state("c0")?
        } else {
            vec![]
        };
        let read = |prefix: &str| -> Result<Vec<NamedTensor>> {
            let mut out = Vec::new();
            for name in result_names(&config) {
                let stored = format!("{prefix}{name}");
                if f.has(&stored) {
                    let (shape, data) = f.floats(&stored, None)?;
                    out.push(NamedTensor { name, shape, data });
                }
            }
            Ok(out)
        };
        Ok(Self {
            config,
            params,
            batch: StackBatch {
                batch: nb,
                steps: nt,
                inputs,
                targets,
                h0,
                c0,
            },
            expected: read("")?,
            expected_f32: read("f32.")?,
        })
    }
}

/// The names of a step's results, as the oracle stores them.
fn result_names(config: &StackConfig) -> Vec<String> {
    let mut names: Vec<String> = ["loss", "output", "h_n", "logits", "grad.h0"]
        .into_iter()
        .map(String::from)
        .collect();
    if config.cell.has_cell_state() {
        names.extend(["c_n".to_string(), "grad.c0".to_string()]);
    }
    names.extend(
        config
            .table()
            .entries
            .iter()
            .map(|e| format!("grad.{}", e.name)),
    );
    names
}

/// A step's results under the oracle's names.
pub fn named<F: Float>(
    config: &StackConfig,
    out: &StackOutput<F>,
    nb: usize,
    nt: usize,
) -> Vec<NamedTensor> {
    let (nh, no, nl) = (config.hidden, config.output, config.layers);
    let t = |name: &str, shape: Vec<usize>, v: &[F]| NamedTensor {
        name: name.into(),
        shape,
        data: v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect(),
    };
    let mut all = vec![
        t("loss", vec![], &[out.loss]),
        t("output", vec![nt, nb, nh], &out.output),
        t("h_n", vec![nl, nb, nh], &out.h_n),
        t("logits", vec![nt, nb, no], &out.logits),
        t("grad.h0", vec![nl, nb, nh], &out.dh0),
    ];
    if config.cell.has_cell_state() {
        all.push(t("c_n", vec![nl, nb, nh], &out.c_n));
        all.push(t("grad.c0", vec![nl, nb, nh], &out.dc0));
    }
    for e in config.table().entries {
        let g = &out.grads[e.offset..e.offset + e.len];
        all.push(t(&format!("grad.{}", e.name), e.shape.clone(), g));
    }
    all
}

/// Runs the case on the CPU reference in f64 and f32 and, given a GPU, on the GPU step, and
/// compares them with the truth: the case's expected values (PyTorch in f64) where it has them,
/// else the reference in f64. The f32 results pass a tensor within `max(1e-5 · max |ref|, 4 ×
/// float32's own error)`, float32's own error being PyTorch's float32 where the case has it, else
/// the reference's in f32; the f64 reference passes within 1e-10. Writes both paths' results to
/// `dump` as `cpu.<name>` and `gpu.<name>`.
pub fn check_stack(
    gpu: Option<&Gpu>,
    case: &StackCase,
    dump: Option<&Path>,
) -> Result<CheckReport> {
    let (nb, nt) = (case.batch.batch, case.batch.steps);
    let c = &case.config;
    let got64 = named(c, &step(c, &case.params, &case.batch), nb, nt);
    let p32: Vec<f32> = case.params.iter().map(|&v| v as f32).collect();
    let got32 = named(c, &step(c, &p32, &case.batch), nb, nt);
    let by_name = |list: &[NamedTensor], fallback: &[NamedTensor]| -> Vec<NamedTensor> {
        fallback
            .iter()
            .map(|t| list.iter().find(|x| x.name == t.name).unwrap_or(t).clone())
            .collect()
    };
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
    let what = describe(case);
    let mut sections = Vec::new();
    if !case.expected.is_empty() {
        sections.push((
            format!("CPU reference (f64) against {truth_name}: {what}"),
            compare_all(&case.expected, &got64, RTOL_F64),
        ));
        sections.push((
            format!("CPU reference (f32) against {truth_name} (f32's own: {own})"),
            compare_with_yardstick(&truth, &yardstick, &got32, RTOL_F32),
        ));
    } else if gpu.is_none() {
        sections.push((
            format!("CPU reference (f32) against {truth_name}: {what}"),
            compare_all(&truth, &got32, RTOL_F32),
        ));
    }
    let gpu_out = match gpu {
        Some(gpu) => {
            let kernels = gpu.scoped("building the compute pipelines", || {
                Kernels::new(&gpu.device)
            })?;
            let stack = gpu.scoped("allocating the step's buffers", || {
                GpuStack::new(gpu, &kernels, *c, nb, nt)
            })??;
            let out = named(c, &stack.run_and_read(gpu, &p32, &case.batch)?, nb, nt);
            sections.push((
                format!(
                    "GPU ({}) against {truth_name} (f32's own: {own}): {what}",
                    crate::gpu::describe(&gpu.info)
                ),
                compare_with_yardstick(&truth, &yardstick, &out, RTOL_F32),
            ));
            Some(out)
        }
        None => None,
    };
    if let Some(path) = dump {
        write_dump(path, c, nb, nt, &got32, gpu_out.as_deref())?;
    }
    Ok(CheckReport { sections })
}

/// One line naming a case's model and batch.
fn describe(case: &StackCase) -> String {
    let c = &case.config;
    format!(
        "{:?}, {} layer{}, I={} H={} O={} B={} T={} {}",
        c.cell,
        c.layers,
        if c.layers == 1 { "" } else { "s" },
        c.input,
        c.hidden,
        c.output,
        case.batch.batch,
        case.batch.steps,
        c.kind
    )
}

/// Writes both paths' results, `cpu.<name>` and `gpu.<name>`, under the case's names.
fn write_dump(
    path: &Path,
    config: &StackConfig,
    nb: usize,
    nt: usize,
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
    write_atomic(path, &tensors, meta)
}

/// The settings of a generated case.
#[derive(Clone, Copy, Debug)]
pub struct RandomCase {
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// Seed of the parameters, the batch and the states.
    pub seed: u64,
    /// Every parameter uniform in ±scale (PyTorch's ±1/√H when None).
    pub init_scale: Option<f64>,
    /// h_0 (and c_0) uniform in ±0.5 instead of zeros.
    pub random_state: bool,
}

impl StackCase {
    /// A case with random parameters, inputs, targets and (optionally) initial states, and no
    /// expected values (the CPU reference in f64 is then the truth).
    pub fn random(config: StackConfig, r: RandomCase) -> Result<Self> {
        use rand::{RngExt, SeedableRng};
        config.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(r.seed);
        let scale = r.init_scale.unwrap_or(1.0 / (config.hidden as f64).sqrt());
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::config(
                format!("an initial scale of {scale}"),
                "give a positive number such as 0.4",
            ));
        }
        let params = (0..config.table().len)
            .map(|_| rng.random_range(-scale..scale) as f32 as f64)
            .collect();
        let (rows, state) = (r.batch * r.steps, config.layers * r.batch * config.hidden);
        let mut uniform =
            |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
        let s0 = if r.random_state { 0.5 } else { 0.0 };
        let h0 = if s0 > 0.0 {
            uniform(state, s0)
        } else {
            vec![0.0; state]
        };
        let c0 = match (config.cell.has_cell_state(), s0 > 0.0) {
            (false, _) => vec![],
            (true, true) => uniform(state, s0),
            (true, false) => vec![0.0; state],
        };
        let (inputs, targets) = match config.kind {
            InputKind::Tokens => {
                let mut ids =
                    |n: u32| -> Vec<u32> { (0..rows).map(|_| rng.random_range(0..n)).collect() };
                let x = ids(config.input as u32);
                (
                    Inputs::Tokens(x),
                    Targets::Tokens(ids(config.output as u32)),
                )
            }
            InputKind::Dense => {
                let x = uniform(rows * config.input, 1.0);
                (
                    Inputs::Dense(x),
                    Targets::Dense(uniform(rows * config.output, 1.0)),
                )
            }
        };
        let batch = StackBatch {
            batch: r.batch,
            steps: r.steps,
            inputs,
            targets,
            h0,
            c0,
        };
        Ok(Self {
            config,
            params,
            batch,
            expected: vec![],
            expected_f32: vec![],
        })
    }
}

/// One step of a stacked model on the GPU, compared tensor by tensor with the CPU reference in
/// f64 (the truth), each with the reference's own f32 error as the yardstick.
pub fn compare_gpu_stack(
    gpu: &Gpu,
    kernels: &Kernels,
    case: &StackCase,
) -> Result<Vec<Comparison>> {
    let (config, batch) = (&case.config, &case.batch);
    let (nb, nt) = (batch.batch, batch.steps);
    let p32: Vec<f32> = case.params.iter().map(|&v| v as f32).collect();
    let stack = GpuStack::new(gpu, kernels, *config, nb, nt)?;
    let got = named(config, &stack.run_and_read(gpu, &p32, batch)?, nb, nt);
    let truth = named(config, &step(config, &case.params, batch), nb, nt);
    let own = named(config, &step(config, &p32, batch), nb, nt);
    Ok(compare_with_yardstick(&truth, &own, &got, RTOL_F32))
}
