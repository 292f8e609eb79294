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
//! - [`gpu`]: the device, the WGSL kernels and the GPU step.
//! - [`check`] and [`compare`]: GPU against CPU against the PyTorch oracle.
#![warn(missing_docs)]

pub mod check;
pub mod compare;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod model;
pub mod tensorfile;

pub use error::{Error, Result};
