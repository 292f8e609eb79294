//! Checkpoints: safetensors files that PyTorch loads directly, and that resume a run exactly.
//!
//! | tensor | unroll | shape |
//! |---|---|---|
//! | `rnn.weight_ih_l0` | U | (H, I) |
//! | `rnn.weight_hh_l0` | W | (H, H) |
//! | `rnn.bias_ih_l0` | b | (H) |
//! | `rnn.bias_hh_l0` | zeros (on import, b = bias_ih + bias_hh) | (H) |
//! | `decoder.weight` | V | (O, H) |
//! | `decoder.bias` | c | (O) |
//! | `optimizer.m`, `optimizer.v` | the optimizer's moments, flat in the parameter layout | (P) |
//! | `optimizer.step`, `optimizer.bias_correction` | t, and Adam's 1 − β1^t, 1 − β2^t | (1) u64, (2) |
//! | `state.hidden` | the carried hidden state of each stream | (B, H) |
//! | `state.positions` | where each stream's next chunk starts | (B) u64 |
//!
//! `torch.nn.RNN(I, H, nonlinearity='tanh')` and `torch.nn.Linear(H, O)` load the first six under
//! the prefixes `rnn.` and `decoder.`. The metadata key `unroll` holds a JSON object with the
//! model's sizes, the vocabulary, the training configuration and the step.

use crate::error::{Error, Result};
use crate::model::{ModelConfig, Params};
use crate::optim::OptimizerState;
use crate::tensorfile::{OwnedTensor, TensorFile, write_atomic};
use std::collections::HashMap;
use std::path::Path;

/// The checkpoint format version written in the metadata.
pub const FORMAT: u32 = 1;

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
    /// The carried hidden state, (B, H).
    pub hidden: Option<Vec<f32>>,
    /// Where each stream's next chunk starts, (B).
    pub positions: Option<Vec<u64>>,
}

const U: &str = "rnn.weight_ih_l0";
const W: &str = "rnn.weight_hh_l0";
const B_IH: &str = "rnn.bias_ih_l0";
const B_HH: &str = "rnn.bias_hh_l0";
const V: &str = "decoder.weight";
const C: &str = "decoder.bias";

impl Checkpoint {
    /// Writes the checkpoint atomically: an interrupted write leaves the previous file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let p = &self.params;
        let cfg = p.config;
        let (ni, nh, no) = (cfg.input, cfg.hidden, cfg.output);
        let mut tensors = vec![
            OwnedTensor::f32(U, vec![nh, ni], p.get("U")),
            OwnedTensor::f32(W, vec![nh, nh], p.get("W")),
            OwnedTensor::f32(B_IH, vec![nh], p.get("b")),
            OwnedTensor::f32(B_HH, vec![nh], &vec![0.0; nh]),
            OwnedTensor::f32(V, vec![no, nh], p.get("V")),
            OwnedTensor::f32(C, vec![no], p.get("c")),
        ];
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
        if let Some(h) = &self.hidden {
            tensors.push(OwnedTensor::f32("state.hidden", vec![h.len() / nh, nh], h));
        }
        if let Some(pos) = &self.positions {
            tensors.push(OwnedTensor::u64("state.positions", vec![pos.len()], pos));
        }
        let mut meta = HashMap::new();
        meta.insert(
            "unroll".to_string(),
            serde_json::to_string(&self.info).expect("run info serializes"),
        );
        write_atomic(path, &tensors, meta)
    }

    /// Reads a checkpoint, checking every tensor's presence, dtype and shape.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::file(path, "no such checkpoint file"));
        }
        let f = TensorFile::open(path)?;
        let meta = f.metadata();
        let info: RunInfo = match meta.get("unroll") {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| Error::file(path, format!("has unreadable unroll metadata: {e}")))?,
            None => {
                return Err(Error::file(
                    path,
                    "is a safetensors file but not an unroll checkpoint (no `unroll` metadata with the model's sizes and vocabulary)",
                ));
            }
        };
        if info.format != FORMAT {
            return Err(Error::file(
                path,
                format!(
                    "is checkpoint format {}, this unroll reads format {FORMAT}",
                    info.format
                ),
            ));
        }
        let cfg = info.config;
        cfg.validate()?;
        let (ni, nh, no) = (cfg.input, cfg.hidden, cfg.output);
        let u = f.f32s(U, &[nh, ni])?;
        let w = f.f32s(W, &[nh, nh])?;
        let b_ih = f.f32s(B_IH, &[nh])?;
        let b_hh = f.f32s(B_HH, &[nh])?;
        let v = f.f32s(V, &[no, nh])?;
        let c = f.f32s(C, &[no])?;
        let mut data = Vec::with_capacity(cfg.num_params());
        data.extend_from_slice(&u);
        data.extend_from_slice(&w);
        data.extend(b_ih.iter().zip(&b_hh).map(|(x, y)| x + y));
        data.extend_from_slice(&v);
        data.extend_from_slice(&c);
        if let Some(vocab) = &info.vocab
            && (vocab.len() != ni || vocab.len() != no)
        {
            return Err(Error::file(
                path,
                format!(
                    "has a vocabulary of {} tokens for a model of I={ni}, O={no}",
                    vocab.len()
                ),
            ));
        }
        if let Some(norm) = &info.normalization {
            norm.validate(&cfg)
                .map_err(|e| Error::file(path, format!("has unusable column statistics: {e}")))?;
        }
        if let Some(train) = &info.train {
            train.validate().map_err(|e| {
                Error::file(path, format!("has an unusable training configuration: {e}"))
            })?;
        }
        let n = cfg.num_params();
        let optimizer = if f.has("optimizer.m") {
            Some(OptimizerState {
                m: f.f32s("optimizer.m", &[n])?,
                v: f.f32s("optimizer.v", &[n])?,
                step: f.u64s("optimizer.step")?.first().copied().unwrap_or(0),
                bias: {
                    let b = f.f32s("optimizer.bias_correction", &[2])?;
                    [b[0], b[1]]
                },
            })
        } else {
            None
        };
        let hidden = if f.has("state.hidden") {
            let (shape, h) = f.floats("state.hidden", None)?;
            if shape.len() != 2 || shape[1] != nh {
                return Err(Error::file(
                    path,
                    format!("tensor `state.hidden` has shape {shape:?}, expected (B, {nh})"),
                ));
            }
            Some(h.iter().map(|&x| x as f32).collect())
        } else {
            None
        };
        let positions = if f.has("state.positions") {
            Some(f.u64s("state.positions")?)
        } else {
            None
        };
        Ok(Self {
            params: Params { config: cfg, data },
            info,
            optimizer,
            hidden,
            positions,
        })
    }
}
