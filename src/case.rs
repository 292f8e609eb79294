//! A case for `unroll check`: a model's parameters, one batch with every layer's initial state,
//! and (optionally) the expected results of one step, kept in a safetensors file.
//!
//! Two layouts are read:
//! - PyTorch's (`tests/fixtures/cells/` and `tests/fixtures/seq/`, made by `cells_reference.py`
//!   and `seq_reference.py`, and what `check --save-case` writes): parameters under their
//!   `state_dict` names, `h0` (and `c0`) (ND·L, B, H), `inputs`, `targets` (per step) or `labels`
//!   (B, a sequence head), `lengths` (B) where the sequences differ, the results in f64 under
//!   [`crate::model::result_names`] and PyTorch's float32 results as `f32.<name>`; the metadata
//!   key `meta` holds the spec (cell, nonlinearity, layers, I, H, O, B, T, dense, and where
//!   present bidirectional and head).
//! - The first oracle's (`tests/fixtures/grad_ref_*.safetensors`, made by `grad_reference.py`):
//!   one tanh layer as `U`, `W`, `b_ih`, `b_hh` (or one `b`), `V`, `c`, `h0` (B, H), and the
//!   results `loss`, `hs`, `logits`, `dU`, `dW`, `db_ih`, `db_hh`, `dV`, `dc`, `dh0` (and
//!   `f32_<name>`), read under the names of the first layout.

use crate::cell::Cell;
use crate::error::{Error, Result};
use crate::footprint::Work;
use crate::model::{Batch, Head, InputKind, Inputs, ModelConfig, NamedTensor, Params, Targets};
use crate::tensorfile::{OwnedTensor, TensorFile, shape_text, write_atomic};
use std::collections::HashMap;
use std::path::Path;

/// Parameters, a batch and (optionally) the expected results of one step.
pub struct Case {
    /// The model and its parameters (f32 values held in f64).
    pub params: Params<f64>,
    /// The batch and initial states.
    pub batch: Batch,
    /// The expected results (f64), by name; empty when the case has none.
    pub expected: Vec<NamedTensor>,
    /// PyTorch's float32 results of the same names, where the case has them.
    pub expected_f32: Vec<NamedTensor>,
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
    /// h_0 (and c_0) random instead of zeros.
    pub random_state: bool,
}

impl Case {
    /// Reads a case in either layout.
    pub fn load(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        if f.has("rnn.weight_ih_l0") {
            load_table(&f, path)
        } else if f.has("U") {
            load_elman(&f, path)
        } else {
            Err(Error::file(
                path,
                "holds neither `rnn.weight_ih_l0` (a case in PyTorch's names) nor `U` (a case of the first oracle)",
            ))
        }
    }

    /// A case with random parameters, inputs, targets and (optionally) initial states, and no
    /// expected values (the CPU reference in f64 is then the truth). Refused, before anything is
    /// allocated, where checking it would not fit the host's memory.
    pub fn random(config: ModelConfig, r: RandomCase) -> Result<Self> {
        use rand::{RngExt, SeedableRng};
        config.validate()?;
        let work = Work::Case {
            batch: r.batch,
            steps: r.steps,
        };
        crate::footprint::check_host(&config, &[work])?;
        let scale = r.init_scale.unwrap_or(1.0 / (config.hidden as f64).sqrt());
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::config(
                format!("an initial scale of {scale}"),
                "give a positive number such as 0.4",
            ));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(r.seed);
        let data = (0..config.num_params())
            .map(|_| rng.random_range(-scale..scale) as f32 as f64)
            .collect();
        let batch = Batch::random(&config, r.batch, r.steps, r.random_state, r.seed + 1);
        batch.validate(&config)?;
        Ok(Self {
            params: Params { config, data },
            batch,
            expected: vec![],
            expected_f32: vec![],
        })
    }

    /// Writes the case in PyTorch's layout, with the expected results (the case's own, else the
    /// CPU reference's in f64), so that it can be checked again elsewhere (`check --case`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let c = self.params.config;
        self.batch.validate(&c)?;
        let (nb, nt) = (self.batch.batch, self.batch.steps);
        let mut tensors: Vec<OwnedTensor> = c
            .table()
            .entries
            .iter()
            .map(|e| OwnedTensor::f64(e.name.clone(), e.shape.clone(), self.params.get(&e.name)))
            .collect();
        let state = vec![c.directions() * c.layers, nb, c.hidden];
        tensors.push(OwnedTensor::f32("h0", state.clone(), &self.batch.h0));
        if c.cell.has_cell_state() {
            tensors.push(OwnedTensor::f32("c0", state, &self.batch.c0));
        }
        tensors.push(match &self.batch.inputs {
            Inputs::Tokens(x) => OwnedTensor::u32("inputs", vec![nt, nb], x),
            Inputs::Dense(x) => OwnedTensor::f32("inputs", vec![nt, nb, c.input], x),
        });
        tensors.push(match &self.batch.targets {
            Targets::Tokens(y) => OwnedTensor::u32("targets", vec![nt, nb], y),
            Targets::Dense(y) => OwnedTensor::f32("targets", vec![nt, nb, c.output], y),
            Targets::Labels(y) => OwnedTensor::u32("labels", vec![nb], y),
        });
        if let Some(lengths) = &self.batch.lengths {
            let l: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
            tensors.push(OwnedTensor::u32("lengths", vec![nb], &l));
        }
        let expected = if self.expected.is_empty() {
            crate::cpu::step(&self.params, &self.batch).tensors(&c, nb, nt)
        } else {
            self.expected.clone()
        };
        for t in expected {
            tensors.push(OwnedTensor::f64(t.name, t.shape, &t.data));
        }
        let spec = serde_json::json!({
            "cell": if c.cell == Cell::Gru { "gru" } else if c.cell == Cell::Lstm { "lstm" } else { "rnn" },
            "nonlinearity": if c.cell == Cell::RnnRelu { "relu" } else { "tanh" },
            "layers": c.layers, "I": c.input, "H": c.hidden, "O": c.output, "B": nb, "T": nt,
            "dense": c.kind == InputKind::Dense, "bidirectional": c.bidirectional,
            "head": c.head.name(), "lengths": self.batch.lengths,
        });
        let mut meta = HashMap::new();
        meta.insert(
            "meta".into(),
            serde_json::json!({ "spec": spec }).to_string(),
        );
        meta.extend([crate::owned::safetensors_mark(
            crate::owned::Kind::CheckCase,
        )]);
        meta.insert(
            "made_by".into(),
            "unroll check --save-case; expected values from unroll's CPU reference in f64".into(),
        );
        write_atomic(path, &tensors, meta)
    }
}

/// A case in PyTorch's names, its spec in the metadata.
fn load_table(f: &TensorFile, path: &Path) -> Result<Case> {
    let bad = |what: String| Error::file(path, what);
    let meta: serde_json::Value = f
        .metadata()
        .get("meta")
        .and_then(|m| serde_json::from_str(m).ok())
        .ok_or_else(|| bad("has no readable `meta` metadata with the case's spec".into()))?;
    let (config, nb, nt) = spec_config(&meta["spec"], path)?;
    // A case is read to be checked: what the check needs is known now, before anything of the
    // spec's sizes is allocated.
    crate::footprint::check_host(&config, &Work::case_and_check(nb, nt))?;
    // Grown tensor by tensor as each is read and its shape checked.
    let mut data = Vec::new();
    for e in &config.table().entries {
        data.extend(f.floats(&e.name, Some(&e.shape))?.1);
    }
    let state_shape = [config.directions() * config.layers, nb, config.hidden];
    let state = |name: &str, present: bool| -> Result<Vec<f32>> {
        Ok(match (present, f.has(name)) {
            (false, _) => vec![],
            (true, true) => f32s(f.floats(name, Some(&state_shape))?.1),
            (true, false) => vec![0.0; config.state_len(nb)],
        })
    };
    let (inputs, targets) = read_data(f, &config, nb, nt)?;
    let lengths = match f.has("lengths") {
        true => Some(f.ids("lengths", Some(&[nb]))?.1),
        false => None,
    };
    let batch = Batch {
        batch: nb,
        steps: nt,
        inputs,
        targets,
        h0: state("h0", true)?,
        c0: state("c0", config.cell.has_cell_state())?,
        lengths: lengths.map(|l| l.into_iter().map(|n| n as usize).collect()),
    };
    batch
        .validate(&config)
        .map_err(|e| bad(format!("the batch does not fit the model: {e}")))?;
    let read = |prefix: &str| -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for name in crate::model::result_names(&config) {
            let stored = format!("{prefix}{name}");
            if f.has(&stored) {
                let (shape, data) = f.floats(&stored, None)?;
                out.push(NamedTensor { name, shape, data });
            }
        }
        Ok(out)
    };
    Ok(Case {
        params: Params { config, data },
        batch,
        expected: read("")?,
        expected_f32: read("f32.")?,
    })
}

/// The model and (B, T) of a case's spec (cell, nonlinearity, layers, I, H, O, B, T, dense,
/// and, where present, bidirectional and head).
fn spec_config(spec: &serde_json::Value, path: &Path) -> Result<(ModelConfig, usize, usize)> {
    let bad = |what: String| Error::file(path, what);
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
                "the spec's cell ({}) is not rnn, gru or lstm",
                other.map_or("missing".to_string(), |c| format!("`{c}`"))
            )));
        }
    };
    let head = match spec["head"].as_str() {
        None => Head::PerStep,
        Some(name) => Head::from_name(name).ok_or_else(|| {
            bad(format!(
                "the spec's head `{name}` is not per-step (step), last or mean"
            ))
        })?,
    };
    let dense = spec["dense"].as_bool().unwrap_or(false);
    let config = if dense {
        ModelConfig::dense(n("I")?, n("H")?, n("O")?)
    } else {
        ModelConfig {
            output: n("O")?,
            ..ModelConfig::tokens(n("I")?, n("H")?)
        }
    }
    .with_cell(cell, n("layers")?)
    .with_head(head);
    let config = ModelConfig {
        bidirectional: spec["bidirectional"].as_bool().unwrap_or(false),
        ..config
    };
    config.validate()?;
    Ok((config, n("B")?, n("T")?))
}

fn f32s(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}

/// The inputs and targets of a case: (T, B) token ids, or (T, B, I) and (T, B, O) values; a
/// sequence head's labels, (B).
fn read_data(
    f: &TensorFile,
    config: &ModelConfig,
    nb: usize,
    nt: usize,
) -> Result<(Inputs, Targets)> {
    let inputs = match config.kind {
        InputKind::Dense => {
            Inputs::Dense(f32s(f.floats("inputs", Some(&[nt, nb, config.input]))?.1))
        }
        InputKind::Tokens => Inputs::Tokens(f.ids("inputs", Some(&[nt, nb]))?.1),
    };
    let targets = match config.kind {
        _ if config.head.is_sequence() => Targets::Labels(f.ids("labels", Some(&[nb]))?.1),
        InputKind::Dense => {
            Targets::Dense(f32s(f.floats("targets", Some(&[nt, nb, config.output]))?.1))
        }
        InputKind::Tokens => Targets::Tokens(f.ids("targets", Some(&[nt, nb]))?.1),
    };
    Ok((inputs, targets))
}

/// A case of the first oracle: one tanh layer under the names U, W, b_ih, b_hh, V, c.
fn load_elman(f: &TensorFile, path: &Path) -> Result<Case> {
    let bad = |what: String| Error::file(path, what);
    let (u_shape, u) = f.floats("U", None)?;
    let (v_shape, v) = f.floats("V", None)?;
    let (h0_shape, h0) = f.floats("h0", None)?;
    let [nh, ni] = u_shape[..] else {
        return Err(bad(format!(
            "tensor `U` has shape {}, expected (H, I)",
            shape_text(&u_shape)
        )));
    };
    let [no, _] = v_shape[..] else {
        return Err(bad(format!(
            "tensor `V` has shape {}, expected (O, {nh})",
            shape_text(&v_shape)
        )));
    };
    let [nb, _] = h0_shape[..] else {
        return Err(bad(format!(
            "tensor `h0` has shape {}, expected (B, {nh})",
            shape_text(&h0_shape)
        )));
    };
    let dense = f.floats("inputs", None).is_ok();
    let config = if dense {
        ModelConfig::dense(ni, nh, no)
    } else {
        ModelConfig {
            output: no,
            ..ModelConfig::tokens(ni, nh)
        }
    };
    config.validate()?;
    let shape = match f.floats("inputs", None) {
        Ok((s, _)) => s,
        Err(_) => f.ids("inputs", None)?.0,
    };
    let nt = *shape
        .first()
        .ok_or_else(|| bad("tensor `inputs` has no dimensions, expected (T, B…)".into()))?;
    let (b_ih, b_hh) = if f.has("b") {
        (f.floats("b", Some(&[nh]))?.1, vec![0.0; nh])
    } else {
        (
            f.floats("b_ih", Some(&[nh]))?.1,
            f.floats("b_hh", Some(&[nh]))?.1,
        )
    };
    let (_, w) = f.floats("W", Some(&[nh, nh]))?;
    let (_, c) = f.floats("c", Some(&[no]))?;
    let data: Vec<f64> = [u, w, b_ih, b_hh, v, c].concat();
    let (inputs, targets) = read_data(f, &config, nb, nt)?;
    let batch = Batch {
        batch: nb,
        steps: nt,
        inputs,
        targets,
        h0: f32s(h0),
        c0: vec![],
        lengths: None,
    };
    batch
        .validate(&config)
        .map_err(|e| bad(format!("the batch does not fit the model: {e}")))?;
    let (expected, expected_f32) = (elman_results(f, "")?, elman_results(f, "f32_")?);
    Ok(Case {
        params: Params { config, data },
        batch,
        expected,
        expected_f32,
    })
}

/// The first oracle's results under PyTorch's names: `hs` becomes `output` (and its last step
/// `h_n`), `dU` `grad.rnn.weight_ih_l0`, `db` both biases' gradients, `dh0` `grad.h0`.
fn elman_results(f: &TensorFile, prefix: &str) -> Result<Vec<NamedTensor>> {
    let names = [
        ("loss", "loss"),
        ("hs", "output"),
        ("logits", "logits"),
        ("dh0", "grad.h0"),
        ("dU", "grad.rnn.weight_ih_l0"),
        ("dW", "grad.rnn.weight_hh_l0"),
        ("db_ih", "grad.rnn.bias_ih_l0"),
        ("db_hh", "grad.rnn.bias_hh_l0"),
        ("db", "grad.rnn.bias_ih_l0"),
        ("db", "grad.rnn.bias_hh_l0"),
        ("dV", "grad.decoder.weight"),
        ("dc", "grad.decoder.bias"),
    ];
    let mut out: Vec<NamedTensor> = Vec::new();
    for (stored, name) in names {
        let stored = format!("{prefix}{stored}");
        if !f.has(&stored) || out.iter().any(|t| t.name == name) {
            continue;
        }
        let (mut shape, data) = f.floats(&stored, None)?;
        if name == "grad.h0" {
            shape.insert(0, 1);
        }
        if name == "output" && shape.len() == 3 {
            let bh = shape[1] * shape[2];
            let last = data[data.len() - bh..].to_vec();
            out.push(NamedTensor {
                name: "h_n".into(),
                shape: vec![1, shape[1], shape[2]],
                data: last,
            });
        }
        out.push(NamedTensor {
            name: name.into(),
            shape,
            data,
        });
    }
    Ok(out)
}
