//! unroll in a browser tab: the library's GPU trainer, CPU reference, gradient check, sampler
//! and checkpoints, bound to JavaScript with wasm-bindgen and run on the browser's WebGPU.
//!
//! Nothing here computes: every kernel, the training step and the reference are the crate's
//! own. What this file adds is the web's one rule: nothing may block, so every read-back from
//! the GPU is an awaited future (the library's `*_async` methods), and every method that waits
//! returns a JavaScript promise.
//!
//! ```text
//! Session.create(text, cell, layers, hidden, batch, steps, lr, seed) -> Session
//!   .train(n) -> loss of the n-th step     .sample(prime, len, temperature) -> text
//!   .checkpoint() -> Uint8Array (the CLI's safetensors file)     .info() -> JSON
//! checkGradients(cell, layers, hidden, seed) -> JSON: the table `unroll check` prints
//! loadCheckpoint(bytes) -> Model      Model.sample(prime, len, temperature) -> text
//! builtinCorpus() -> the CLI's built-in corpus, 4,000 lines of it
//! ```

use futures_intrusive::sync::LocalMutex;
use std::rc::Rc;
use unroll::case::{Case, RandomCase};
use unroll::checkpoint::{Checkpoint, FORMAT, RunInfo};
use unroll::data::{Corpus, Streams, Vocab};
use unroll::gpu::{AdapterChoice, Gpu, GpuTrainer, TrainerShape, describe};
use unroll::optim::OptimizerConfig;
use unroll::{Cell, ModelConfig, Params};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The browser's WebGPU, and nothing else: WebGL has no compute shaders.
fn webgpu() -> AdapterChoice {
    AdapterChoice {
        backend: Some("webgpu".into()),
        ..Default::default()
    }
}

fn js(e: unroll::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn cell(name: &str) -> Result<Cell, JsValue> {
    Cell::from_name(name).ok_or_else(|| {
        JsError::new(&format!(
            "unknown cell `{name}`: use rnn, rnn-relu, gru or lstm"
        ))
        .into()
    })
}

/// The CLI's built-in corpus (lines of integer arithmetic), drawn shorter for a quick start:
/// 4,000 lines from seed 1 (`unroll train` draws 20,000 from its seed).
#[wasm_bindgen(js_name = builtinCorpus)]
pub fn builtin_corpus() -> String {
    unroll::data::builtin_corpus(4000, 1)
}

/// A model training on WebGPU over a text, a chunk of (T, B) per step.
#[wasm_bindgen]
pub struct Session {
    /// Calls that wait queue on the lock in the order they were made.
    inner: Rc<LocalMutex<Training>>,
}

struct Training {
    trainer: GpuTrainer,
    streams: Streams,
    vocab: Vocab,
    /// Steps taken.
    taken: u64,
}

#[wasm_bindgen]
impl Session {
    /// Builds the model (PyTorch's initialisation from `seed`), its trainer on the browser's
    /// WebGPU adapter (Adam, clipped at 5) and B streams through `text` (the built-in corpus
    /// when empty).
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        text: String,
        cell_name: String,
        layers: usize,
        hidden: usize,
        batch: usize,
        steps: usize,
        lr: f32,
        seed: u32,
    ) -> Result<Session, JsValue> {
        let text = if text.is_empty() {
            builtin_corpus()
        } else {
            text
        };
        let corpus = Corpus::new(text.as_bytes(), None, false, 0.0).map_err(js)?;
        let streams = Streams::new(&corpus.train, batch, steps, "training").map_err(js)?;
        let config =
            ModelConfig::tokens(corpus.vocab.len(), hidden).with_cell(cell(&cell_name)?, layers);
        config.validate().map_err(js)?;
        let params = Params::init(config, seed as u64);
        let optim = OptimizerConfig {
            lr,
            ..OptimizerConfig::default()
        };
        let gpu = Gpu::new_async(&webgpu()).await.map_err(js)?;
        let shape = TrainerShape::new(batch, steps);
        let trainer = GpuTrainer::new(gpu, config, shape, optim, &params).map_err(js)?;
        let training = Training {
            trainer,
            streams,
            vocab: corpus.vocab,
            taken: 0,
        };
        Ok(Session {
            inner: Rc::new(LocalMutex::new(training, true)),
        })
    }

    /// Takes `n` training steps (the state reset at the start of each pass over the text) and
    /// resolves to the last one's loss, in nats per character. Only the last step is waited for.
    pub fn train(&self, n: u32) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut t = inner.lock().await;
            let loss = t.train(n).await.map_err(js)?;
            Ok(JsValue::from_f64(loss as f64))
        })
    }

    /// Resolves to `len` characters sampled after `prime` at `temperature` (0: the most likely).
    pub fn sample(&self, prime: String, len: usize, temperature: f32) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let t = inner.lock().await;
            let params = t.trainer.params_async().await.map_err(js)?;
            let text = sample(&params, &t.vocab, &prime, len, temperature).map_err(js)?;
            Ok(JsValue::from_str(&text))
        })
    }

    /// Resolves to the checkpoint's bytes: the safetensors file `unroll train` writes (parameters
    /// under PyTorch's names, the optimizer's and the carried state, the vocabulary).
    pub fn checkpoint(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let t = inner.lock().await;
            let bytes = t.checkpoint().await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// The model and the device, as JSON: cell, layers, sizes, parameters, B, T, steps taken.
    pub fn info(&self) -> Result<String, JsValue> {
        let t = self.inner.try_lock().ok_or_else(busy)?;
        let c = t.trainer.step().config();
        let (batch, steps) = t.trainer.step().shape();
        Ok(serde_json::json!({
            "cell": c.cell.name(),
            "layers": c.layers,
            "hidden": c.hidden,
            "vocab": c.input,
            "parameters": c.num_params(),
            "batch": batch,
            "steps": steps,
            "taken": t.taken,
            "device": describe(&t.trainer.gpu().info),
        })
        .to_string())
    }
}

fn busy() -> JsValue {
    JsError::new("the model is busy with another call; await it first").into()
}

impl Training {
    async fn train(&mut self, n: u32) -> unroll::Result<f32> {
        let per_pass = self.streams.chunks_per_epoch().max(1) as u64;
        let mut loss = f32::NAN;
        for i in 0..n {
            let k = self.taken % per_pass;
            let (x, y) = self.streams.chunk(k as usize);
            let report = i + 1 == n;
            let stats = self
                .trainer
                .train_step_async(&x, &y, k == 0, report)
                .await?;
            self.taken += 1;
            if let Some(s) = stats {
                loss = s.loss;
                if !s.loss.is_finite() {
                    return Err(unroll::Error::Diverged {
                        step: self.taken,
                        what: "loss",
                        value: s.loss,
                        checkpoint: None,
                    });
                }
            }
        }
        Ok(loss)
    }

    async fn checkpoint(&self) -> unroll::Result<Vec<u8>> {
        let params = self.trainer.params_async().await?;
        let per_pass = self.streams.chunks_per_epoch().max(1) as u64;
        Checkpoint {
            info: RunInfo {
                format: FORMAT,
                config: params.config,
                vocab: Some(self.vocab.clone()),
                normalization: None,
                train: None,
                step: self.taken,
                best: None,
                classes: None,
            },
            params,
            optimizer: Some(self.trainer.optimizer_state_async().await?),
            hidden: Some(self.trainer.hidden_async().await?),
            positions: Some(self.streams.positions((self.taken % per_pass) as usize)),
        }
        .to_bytes()
    }
}

fn sample(
    params: &Params<f32>,
    vocab: &Vocab,
    prime: &str,
    len: usize,
    temperature: f32,
) -> unroll::Result<String> {
    let tokens = vocab.encode(prime.as_bytes())?;
    let drawn = unroll::sample::sample(params, &tokens, len, temperature, 1)?;
    Ok(format!("{prime}{}", vocab.decode(&drawn)))
}

/// A model read from a checkpoint file, for sampling.
#[wasm_bindgen]
pub struct Model {
    checkpoint: Checkpoint,
}

/// Reads a checkpoint's bytes (one the CLI or this page wrote), checking every tensor.
#[wasm_bindgen(js_name = loadCheckpoint)]
pub fn load_checkpoint(bytes: Vec<u8>) -> Result<Model, JsValue> {
    let checkpoint = Checkpoint::from_bytes("the checkpoint", bytes).map_err(js)?;
    if checkpoint.info.vocab.is_none() {
        return Err(JsError::new("the checkpoint has no vocabulary: it is a series model").into());
    }
    Ok(Model { checkpoint })
}

#[wasm_bindgen]
impl Model {
    /// `len` characters sampled after `prime` (the vocabulary's first character when empty),
    /// on the CPU (compiled to WebAssembly).
    pub fn sample(&self, prime: String, len: usize, temperature: f32) -> Result<String, JsValue> {
        let info = &self.checkpoint.info;
        let vocab = info.vocab.as_ref().expect("checked on load");
        let prime = match prime.as_str() {
            "" => vocab.decode(&[0]),
            _ => prime,
        };
        sample(&self.checkpoint.params, vocab, &prime, len, temperature).map_err(js)
    }

    /// The model, in words.
    pub fn describe(&self) -> String {
        let c = self.checkpoint.params.config;
        format!(
            "{} × {}, H = {}, vocabulary of {}, {} parameters, {} steps trained",
            c.cell.name(),
            c.layers,
            c.hidden,
            c.input,
            c.num_params(),
            self.checkpoint.info.step
        )
    }
}

/// Runs one training step of a random case (tokens, random h0 and c0, B = 3, T = 5) on WebGPU
/// and on the CPU reference in f64 and f32 (compiled to WebAssembly), and resolves to JSON:
/// `{pass, device, text, rows: [{name, shape, max_diff, max_ref, relative, f32_own, ratio,
/// tolerance, pass}]}`, `text` being the table `unroll check` prints (the last three columns,
/// like its, relative to max |ref|).
#[wasm_bindgen(js_name = checkGradients)]
pub async fn check_gradients(
    cell_name: String,
    layers: usize,
    hidden: usize,
    seed: u32,
) -> Result<String, JsValue> {
    let config = ModelConfig::tokens(11, hidden).with_cell(cell(&cell_name)?, layers);
    let settings = RandomCase {
        batch: 3,
        steps: 5,
        seed: seed as u64,
        init_scale: None,
        random_state: true,
    };
    let case = Case::random(config, settings).map_err(js)?;
    let gpu = Gpu::new_async(&webgpu()).await.map_err(js)?;
    let report = unroll::check::check_async(Some(&gpu), &case, None, None)
        .await
        .map_err(js)?;
    let rows: Vec<_> = report
        .sections
        .iter()
        .flat_map(|(_, rows)| rows)
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "shape": r.shape,
                "max_diff": r.max_diff,
                "max_ref": r.max_ref,
                "relative": r.relative(),
                "f32_own": r.f32_error.map(|e| r.relative_to_ref(e)),
                "ratio": r.ratio(),
                "tolerance": r.relative_to_ref(r.tolerance()),
                "pass": r.pass(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "pass": report.pass(),
        "device": describe(&gpu.info),
        "text": report.render(),
        "rows": rows,
    })
    .to_string())
}
