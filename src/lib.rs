//! unroll: a GPU-accelerated trainer for Elman recurrent neural networks, with an independent
//! CPU reference that checks the GPU's gradients.
//!
//! Dimensions, everywhere: B batch, T timesteps, I input size, H hidden size, O output size.
//!
//! ```text
//! h_t = tanh(U x_t + W h_{t-1} + b)      y_t = V h_t + c      loss summed over every timestep
//! ```
//!
//! - [`model`]: shapes, the flat parameter layout, batches, step results.
//! - [`cpu`]: the CPU reference step (plain loops, f32 or f64).
//! - [`cell`] and [`cpu_stack`]: stacked RNN, GRU and LSTM layers with PyTorch's semantics, their
//!   parameter table, and their CPU reference.
//! - [`gpu`]: the device, the WGSL kernels and the GPU step.
//! - [`check`] and [`compare`]: GPU against CPU against the PyTorch oracle; [`check_stack`]: the
//!   CPU reference of stacked cells against PyTorch's cases.
//! - [`optim`]: SGD, Adagrad, Adam and clipping (the GPU's twin is `shaders/optimizer.wgsl`).
//! - [`engine`]: the training engine trait, for the GPU and the CPU.
//! - [`data`], [`series`]: text and numeric series, batched into parallel streams.
//! - [`config`]: the configuration of a run (plain data, stored in checkpoints).
//! - [`train`], [`checkpoint`], [`sample`], [`plot`]: the training loop and what it writes;
//!   [`rundir`]: what unroll may write over, and the lock of a run directory.
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
