//! Checkpoints: safetensors files that PyTorch loads directly, and that resume a run exactly.
//!
//! | tensor | unroll | shape |
//! |---|---|---|
//! | `rnn.weight_ih_l{k}` | U of layer k, the gates' rows stacked | (G·H, I_k) |
//! | `rnn.weight_hh_l{k}` | W of layer k | (G·H, H) |
//! | `rnn.bias_ih_l{k}`, `rnn.bias_hh_l{k}` | b_ih, b_hh of layer k | (G·H) |
//! | `decoder.weight` | V | (O, H) |
//! | `decoder.bias` | c | (O) |
//! | `optimizer.m`, `optimizer.v` | the optimizer's moments, flat in the parameter layout | (P) |
//! | `optimizer.step`, `optimizer.bias_correction` | t, and Adam's 1 − β1^t, 1 − β2^t | (1) u64, (2) |
//! | `state.hidden` | the carried h of every layer and stream | (L, B, H) |
//! | `state.cell` | the carried c of every layer and stream (LSTM) | (L, B, H) |
//! | `state.positions` | where each stream's next chunk starts | (B) u64 |
//!
//! `torch.nn.RNN`, `GRU` or `LSTM(I, H, num_layers=L)` and `torch.nn.Linear(H, O)` load the
//! parameters under the prefixes `rnn.` and `decoder.` with `strict=True` (G = 1, 3, 4). The
//! metadata key `unroll` holds a JSON object with the model's sizes and cell, the vocabulary, the
//! training configuration and the step. Format 1 (one tanh layer, written before cells and
//! layers) loads as the same model: its `rnn.bias_hh_l0` holds zeros, its moments lack b_hh's
//! (they start at zero), its `state.hidden` is (B, H).

use crate::error::{Error, Result};
use crate::model::{ModelConfig, Params};
use crate::optim::OptimizerState;
use crate::tensorfile::{OwnedTensor, TensorFile, serialize, write_bytes_atomic};
use std::collections::HashMap;
use std::path::Path;

/// The checkpoint format version written in the metadata.
pub const FORMAT: u32 = 2;

/// What the metadata records.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// [`FORMAT`].
    pub format: u32,
    /// The model's sizes.
    pub config: ModelConfig,
    /// The vocabulary (text models).
    pub vocab: Option<crate::data::Vocab>,
    /// Per-column mean and standard deviation of a series model's inputs and targets.
    #[serde(default)]
    pub normalization: Option<crate::series::Normalization>,
    /// The training configuration.
    pub train: Option<crate::config::TrainConfig>,
    /// Training steps taken.
    pub step: u64,
    /// The best validation score the run has seen so far, where it has evaluated.
    #[serde(default)]
    pub best: Option<Best>,
    /// A classifier's classes, and how its dense inputs were scaled.
    #[serde(default)]
    pub classes: Option<Classes>,
}

/// What a classifier's checkpoint keeps to read sequences as its training did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Classes {
    /// The class names: output k is class `names[k]`.
    pub names: Vec<String>,
    /// Each input channel's mean and deviation over the training split (dense inputs).
    pub channels: Option<crate::sequences::ChannelStats>,
}

impl Classes {
    /// One name per output of a sequence head, each once; one finite mean and positive
    /// deviation per input channel.
    pub fn validate(&self, config: &ModelConfig) -> Result<()> {
        let fix = "use a checkpoint that unroll wrote, unmodified";
        if !config.head.is_sequence() || self.names.len() != config.output {
            return Err(Error::config(
                format!(
                    "{} class names for a model of O={} with the {} head",
                    self.names.len(),
                    config.output,
                    config.head.name()
                ),
                fix,
            ));
        }
        if let Some((i, n)) = self
            .names
            .iter()
            .enumerate()
            .find(|(i, n)| self.names[..*i].contains(n))
        {
            return Err(Error::config(
                format!("class {i} (`{n}`) is named twice"),
                fix,
            ));
        }
        if let Some(c) = &self.channels {
            let ok = |v: &[f64], positive: bool| {
                v.len() == config.input
                    && v.iter().all(|x| x.is_finite() && (!positive || *x > 0.0))
            };
            if config.kind != crate::model::InputKind::Dense
                || !ok(&c.mean, false)
                || !ok(&c.std, true)
            {
                return Err(Error::config(
                    format!(
                        "channel statistics of {} means and {} deviations for a model of I={}",
                        c.mean.len(),
                        c.std.len(),
                        config.input
                    ),
                    fix,
                ));
            }
        }
        Ok(())
    }
}

/// The run's best evaluation: the lowest validation loss, its step, and the evaluations since
/// (what `--early-stop` counts).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Best {
    /// The step of the best evaluation.
    pub step: u64,
    /// Its validation loss.
    pub val_loss: f32,
    /// Evaluations since it that did not improve on it.
    pub since: u64,
}

/// A model and, for resuming, the state of its run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The parameters.
    pub params: Params<f32>,
    /// The metadata.
    pub info: RunInfo,
    /// The optimizer's state.
    pub optimizer: Option<OptimizerState>,
    /// The carried state: every layer's h, then (LSTM) every layer's c, (L, B, H) each.
    pub hidden: Option<Vec<f32>>,
    /// Where each stream's next chunk starts, (B).
    pub positions: Option<Vec<u64>>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically: an interrupted write leaves the previous file intact.
    /// It replaces whatever file is at `path`: the caller decides what may be replaced (the CLI
    /// writes only into a run directory of its own).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_bytes_atomic(path, &self.to_bytes()?)
    }

    /// The checkpoint as the bytes of its safetensors file (what [`Checkpoint::save`] writes).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let p = &self.params;
        let cfg = p.config;
        let mut tensors: Vec<OwnedTensor> = cfg
            .table()
            .entries
            .iter()
            .map(|e| OwnedTensor::f32(e.name.clone(), e.shape.clone(), p.get(&e.name)))
            .collect();
        if let Some(o) = &self.optimizer {
            let n = cfg.num_params();
            tensors.push(OwnedTensor::f32("optimizer.m", vec![n], &o.m));
            tensors.push(OwnedTensor::f32("optimizer.v", vec![n], &o.v));
            tensors.push(OwnedTensor::u64("optimizer.step", vec![1], &[o.step]));
            tensors.push(OwnedTensor::f32(
                "optimizer.bias_correction",
                vec![2],
                &o.bias,
            ));
        }
        if let Some(carry) = &self.hidden {
            let nb = carry.len() / cfg.carry_len(1);
            let shape = vec![cfg.directions() * cfg.layers, nb, cfg.hidden];
            let (h, c) = carry.split_at(cfg.state_len(nb));
            tensors.push(OwnedTensor::f32("state.hidden", shape.clone(), h));
            if cfg.cell.has_cell_state() {
                tensors.push(OwnedTensor::f32("state.cell", shape, c));
            }
        }
        if let Some(pos) = &self.positions {
            tensors.push(OwnedTensor::u64("state.positions", vec![pos.len()], pos));
        }
        let mut meta = HashMap::new();
        let info = RunInfo {
            format: FORMAT,
            ..self.info.clone()
        };
        meta.insert(
            "unroll".to_string(),
            serde_json::to_string(&info).expect("run info serializes"),
        );
        serialize(Path::new("checkpoint"), &tensors, meta)
    }

    /// Reads a checkpoint, checking every tensor's presence, dtype and shape.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::file(path, "no such checkpoint file"));
        }
        Self::read(&TensorFile::open(path)?, path)
    }

    /// Reads a checkpoint from the bytes of its file (an upload, a download); `name` names it
    /// in errors. Checks as [`Checkpoint::load`] does.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        let path = Path::new(name);
        Self::read(&TensorFile::from_bytes(path, bytes)?, path)
    }

    fn read(f: &TensorFile, path: &Path) -> Result<Self> {
        let info = read_info(f, path)?;
        let cfg = info.config;
        let (ni, no) = (cfg.input, cfg.output);
        let table = cfg.table();
        const STATE: [&str; 7] = [
            "optimizer.m",
            "optimizer.v",
            "optimizer.step",
            "optimizer.bias_correction",
            "state.hidden",
            "state.cell",
            "state.positions",
        ];
        let mut names = f.names();
        names.sort();
        if let Some(extra) = names
            .iter()
            .find(|n| table.get(n).is_none() && !STATE.contains(&n.as_str()))
        {
            return Err(Error::file(
                path,
                format!(
                    "has a tensor `{extra}` that its metadata's model ({cfg}) has not: the \
                     metadata and the tensors disagree\n  hint: use a checkpoint as unroll wrote it"
                ),
            ));
        }
        // Grown tensor by tensor as each is read and checked: the sizes in the metadata alone
        // never size an allocation.
        let mut data = Vec::new();
        for e in &table.entries {
            data.extend(f.f32s(&e.name, &e.shape)?);
        }
        if let Some(vocab) = &info.vocab {
            // A text model reads and predicts tokens; a text classifier predicts classes.
            let predicts_tokens = !cfg.head.is_sequence();
            if vocab.len() != ni || (predicts_tokens && vocab.len() != no) {
                return Err(Error::file(
                    path,
                    format!(
                        "has a vocabulary of {} tokens for a model of I={ni}, O={no}",
                        vocab.len()
                    ),
                ));
            }
            vocab
                .validate()
                .map_err(|e| Error::file(path, format!("has an unusable vocabulary: {e}")))?;
        }
        if let Some(norm) = &info.normalization {
            norm.validate(&cfg)
                .map_err(|e| Error::file(path, format!("has unusable column statistics: {e}")))?;
        }
        if let Some(classes) = &info.classes {
            classes
                .validate(&cfg)
                .map_err(|e| Error::file(path, format!("has unusable classes: {e}")))?;
        }
        if let Some(train) = &info.train {
            train.validate().map_err(|e| {
                Error::file(path, format!("has an unusable training configuration: {e}"))
            })?;
        }
        let optimizer = if f.has("optimizer.m") {
            Some(read_optimizer(f, &info)?)
        } else {
            None
        };
        let hidden = if f.has("state.hidden") {
            Some(read_carry(f, path, &cfg)?)
        } else {
            None
        };
        let positions = if f.has("state.positions") {
            Some(f.u64s("state.positions")?)
        } else {
            None
        };
        let floats = [
            ("the parameters", Some(&data[..])),
            ("`optimizer.m`", optimizer.as_ref().map(|o| &o.m[..])),
            ("`optimizer.v`", optimizer.as_ref().map(|o| &o.v[..])),
            (
                "`optimizer.bias_correction`",
                optimizer.as_ref().map(|o| &o.bias[..]),
            ),
            (
                "the carried state (`state.hidden`, `state.cell`)",
                hidden.as_deref(),
            ),
        ];
        for (what, values) in floats {
            if let Some(v) = values
                && let Some(i) = v.iter().position(|x| !x.is_finite())
            {
                return Err(Error::file(
                    path,
                    format!(
                        "holds {} in {what} (element {i}); unroll never writes a value that is not \
                         finite, so the file was changed or damaged\n  hint: use a checkpoint as \
                         unroll wrote it, or train afresh",
                        v[i]
                    ),
                ));
            }
        }
        Ok(Self {
            params: Params { config: cfg, data },
            info,
            optimizer,
            hidden,
            positions,
        })
    }
}

/// The carried state, every layer's h then (LSTM) c: `state.hidden` (and `state.cell`),
/// (ND·L, B, H); format 1's (B, H) is one layer's.
fn read_carry(f: &TensorFile, path: &Path, cfg: &crate::model::ModelConfig) -> Result<Vec<f32>> {
    let (shape, h) = f.floats("state.hidden", None)?;
    let (nl, nh) = (cfg.directions() * cfg.layers, cfg.hidden);
    let ok = match shape[..] {
        [l, _, w] => l == nl && w == nh,
        [_, w] => nl == 1 && w == nh,
        _ => false,
    };
    if !ok || h.is_empty() {
        return Err(Error::file(
            path,
            format!(
                "tensor `state.hidden` has shape {}, expected ({nl}, B, {nh})",
                crate::tensorfile::shape_text(&shape)
            ),
        ));
    }
    let mut carry: Vec<f32> = h.iter().map(|&x| x as f32).collect();
    if cfg.cell.has_cell_state() {
        let nb = carry.len() / (nl * nh);
        carry.extend(f.f32s("state.cell", &[nl, nb, nh])?);
    }
    Ok(carry)
}

/// The metadata: an unroll checkpoint of a format this unroll reads, of a valid model.
fn read_info(f: &TensorFile, path: &Path) -> Result<RunInfo> {
    let info: RunInfo = match f.metadata().get("unroll") {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Error::file(path, format!("has unreadable unroll metadata: {e}")))?,
        None => {
            return Err(Error::file(
                path,
                "is a safetensors file but not an unroll checkpoint (no `unroll` metadata with the model's sizes and vocabulary)",
            ));
        }
    };
    if info.format == 0 || info.format > FORMAT {
        return Err(Error::file(
            path,
            format!(
                "is checkpoint format {}, this unroll reads formats 1 to {FORMAT}",
                info.format
            ),
        ));
    }
    info.config.validate()?;
    if info.format == 1 && !info.config.is_elman() {
        return Err(Error::file(path, "is format 1 but not of one tanh layer"));
    }
    Ok(info)
}

/// The optimizer's state. Format 1 kept one bias: its moments lack b_hh's H values, which
/// follow b_ih's, and start at zero.
fn read_optimizer(f: &TensorFile, info: &RunInfo) -> Result<OptimizerState> {
    let cfg = &info.config;
    let n = cfg.num_params();
    let moments = |name: &str| -> Result<Vec<f32>> {
        if info.format > 1 {
            return f.f32s(name, &[n]);
        }
        let mut v = f.f32s(name, &[n - cfg.hidden])?;
        let b_hh = cfg.table().get("rnn.bias_hh_l0").expect("one layer").offset;
        v.splice(b_hh..b_hh, std::iter::repeat_n(0.0, cfg.hidden));
        Ok(v)
    };
    let b = f.f32s("optimizer.bias_correction", &[2])?;
    Ok(OptimizerState {
        m: moments("optimizer.m")?,
        v: moments("optimizer.v")?,
        step: f.u64s("optimizer.step")?.first().copied().unwrap_or(0),
        bias: [b[0], b[1]],
    })
}
