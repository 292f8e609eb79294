//! unroll: a GPU-accelerated trainer for recurrent neural networks (the Elman RNN, the GRU and
//! the LSTM, in stacked layers, with PyTorch's semantics), with an independent CPU reference
//! that checks the GPU's gradients.
//!
//! Dimensions, everywhere: B batch, T timesteps, I input size, H hidden size, O output size,
//! L layers, G gates per cell.
//!
//! ```text
//! h_t = tanh(U x_t + b_ih + W h_{t-1} + b_hh)      y_t = V h_t + c      (the Elman cell; see cell)
//! ```
//!
//! # Architecture
//!
//! A model is its shapes ([`ModelConfig`]: cell, layers, sizes) and one flat parameter buffer
//! laid out by PyTorch's names ([`param_table::ParamTable`]). Two independent implementations read it:
//! the GPU path ([`gpu`]: WGSL kernels, every hidden and cell state resident on the device, one
//! submission per training step) and the CPU reference ([`cpu`]: plain loops in f32 or f64).
//! [`check`] runs both on a case and compares every tensor; PyTorch's own numbers pin the
//! reference. A [`Trainer`] drives either device; checkpoints are safetensors files that
//! `torch.nn` loads with `strict=True`.
//!
//! ```text
//!                ModelConfig + ParamTable (rnn.weight_ih_l0, ..., decoder.bias)
//!                      |                                    |
//!          gpu: Gpu, GpuTrainer, ModelStep           cpu: step, forward (f32/f64)
//!          (shaders/*.wgsl, resident state)          (plain loops, obviously right)
//!                      |                                    |
//!                      +------------- check ----------------+---- oracle cases (PyTorch)
//!                      |
//!        Trainer (step, fit, evaluate) -> Checkpoint (safetensors) -> sample, forecast
//! ```
//!
//! # Train a character model and sample from it
//!
//! ```
//! use unroll::data::{Streams, Vocab};
//! use unroll::{Cell, Device, ModelConfig, Params, TrainOptions, Trainer};
//!
//! let text = "hello world, hello rnn. ".repeat(50);
//! let vocab = Vocab::from_text(&text);
//! let data = Streams::new(&vocab.encode(text.as_bytes())?, 4, 16, "training")?;
//! let config = ModelConfig::tokens(vocab.len(), 32).with_cell(Cell::Gru, 1);
//! let mut trainer = Trainer::new(Device::Gpu, Params::init(config, 1), TrainOptions::new(4, 16))?;
//! trainer.fit(&data, 30)?;
//! let params = trainer.params()?;
//! let text = unroll::sample::sample(&params, &vocab.encode(b"h")?, 40, 0.5, 7)?;
//! println!("{}", vocab.decode(&text));
//! # Ok::<(), unroll::Error>(())
//! ```
//!
//! # Modules
//!
//! - [`model`]: shapes and parameters; [`batch`]: a batch (lengths and labels included);
//!   [`step_output`]: a step's results; [`cell`]: the cells; [`param_table`]: the parameter
//!   table, a row per layer and direction.
//! - [`trainer`]: [`Trainer`], and [`gradients`] (one step's loss and gradients).
//! - [`cpu`], [`cpu_cells`]: the CPU reference (both directions, lengths, every head);
//!   [`dropout`]: the masks between layers.
//! - [`gpu`]: the device and the GPU step.
//! - [`case`], [`check`], [`compare`]: GPU against CPU against PyTorch's cases.
//! - [`optim`]: SGD, Adagrad, Adam, clipping; [`engine`]: what a training device provides.
//! - [`dataset`]: the one data seam, [`dataset::Dataset`], that every task's data implements;
//!   [`data`], [`series`]: text and numeric series, batched into parallel streams;
//!   [`ts_file`]: labelled sequences in the UEA/UCR archive's `.ts` format; [`sequences`]:
//!   labelled sequences as batches (stratified split, normalisation, buckets of lengths);
//!   [`forecast`]: a series model's forecast.
//! - [`checkpoint`], [`tensorfile`]: safetensors files; [`sample`]: sampling text;
//!   [`config`]: a run's configuration as the CLI stores it.
//! - [`shares`], [`data_parallel`], [`collective`]: data-parallel training over several devices
//!   or MPI processes, and gradient accumulation, with a reduction in one fixed order.
//! - [`footprint`]: the host memory a step, a check or a run needs, checked before it is
//!   allocated; [`owned`]: how unroll knows the files it wrote (the only ones it replaces).
#![warn(missing_docs)]

pub mod batch;
pub mod case;
pub mod cell;
pub mod check;
pub mod checkpoint;
pub mod collective;
pub mod compare;
pub mod config;
pub mod cpu;
pub mod cpu_cells;
mod cpu_head;
mod cpu_layer;
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod data_parallel;
pub mod dataset;
pub mod dropout;
pub mod engine;
pub mod error;
pub mod footprint;
pub mod forecast;
pub mod gpu;
#[cfg(not(target_arch = "wasm32"))]
mod median;
pub mod model;
pub mod optim;
pub mod owned;
pub mod param_table;
#[cfg(not(target_arch = "wasm32"))]
pub mod predict;
pub mod sample;
pub mod sequences;
pub mod series;
pub mod shares;
pub mod step_output;
pub mod tensorfile;
#[cfg(not(target_arch = "wasm32"))]
pub mod trainer;
pub mod ts_file;

// The command-line tool's machinery (run directories, the training run with its files, the
// benchmarks): public for the `unroll` binary beside this library, not part of its API.
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod bench_cells;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod bench_exchange;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod bench_products;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod plot;
#[cfg(not(target_arch = "wasm32"))]
mod resume;
#[cfg(not(target_arch = "wasm32"))]
mod run_classify;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod run_data;
#[cfg(not(target_arch = "wasm32"))]
mod run_engine;
#[cfg(not(target_arch = "wasm32"))]
mod run_input;
#[cfg(not(target_arch = "wasm32"))]
mod run_options;
#[doc(hidden)]
pub mod rundir;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod train;
#[cfg(not(target_arch = "wasm32"))]
pub mod tune;
#[cfg(not(target_arch = "wasm32"))]
pub mod tune_cache;
#[cfg(not(target_arch = "wasm32"))]
mod tune_trial;

/// The wgpu this crate builds on (its types appear in [`gpu::Gpu`]).
pub use wgpu;

pub use cell::Cell;
pub use config::Device;
pub use error::{Error, Result};
pub use model::{Batch, Inputs, ModelConfig, Params, StepOutput, Targets};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::{TrainOptions, Trainer, gradients};
