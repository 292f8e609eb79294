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
//! - [`model`]: shapes (cell, layers, sizes), parameters, batches, step results.
//! - [`cell`]: the cells and the one PyTorch-named parameter table.
//! - [`cpu`], [`cpu_cells`]: the CPU reference step (plain loops, f32 or f64), and each cell's
//!   pointwise step; [`dropout`]: the masks between layers.
//! - [`gpu`]: the device, the WGSL kernels, the fused Elman step and the stacked step.
//! - [`case`], [`check`] and [`compare`]: GPU against CPU against PyTorch's cases.
//! - [`optim`]: SGD, Adagrad, Adam and clipping (the GPU's twin is `shaders/optimizer.wgsl`).
//! - [`engine`]: the training engine trait, for the GPU and the CPU.
//! - [`data`], [`series`]: text and numeric series, batched into parallel streams.
//! - [`config`]: the configuration of a run (plain data, stored in checkpoints).
//! - [`train`], [`run_data`], [`metrics`], [`checkpoint`], [`sample`], [`plot`]: the training
//!   loop and what it writes; [`rundir`]: what unroll may write over, and the lock of a run
//!   directory.
//! - [`bench`](mod@bench), [`bench_cells`]: `unroll bench`.
#![warn(missing_docs)]

pub mod bench;
pub mod bench_cells;
pub mod case;
pub mod cell;
pub mod check;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod cpu;
pub mod cpu_cells;
pub mod data;
pub mod dropout;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plot;
pub mod run_data;
pub mod rundir;
pub mod sample;
pub mod series;
pub mod tensorfile;
pub mod train;

pub use error::{Error, Result};
