//! The GPU side of a [`Cell`]: its pointwise forward and backward kernels (`shaders/cell_*.wgsl`
//! after the shared `shaders/cell.wgsl`) and how much it saves for the backward pass. The layer
//! loop ([`crate::gpu::stack`]) plans the products around them and knows nothing else of a cell;
//! a new cell is a shader pair here, its CPU twin in [`crate::cpu_cells`] and a row of
//! [`crate::cell::Cell`].

use crate::cell::Cell;
use crate::gpu::kernels::{Access, Kernel};
use bytemuck::{Pod, Zeroable};

/// A cell's two kernels.
pub struct CellKernels {
    /// `forward`: h_t (and c_t) from a_t and r_t.
    pub forward: Kernel,
    /// `backward`: da_t and dr_t from ∂L/∂h_t.
    pub backward: Kernel,
}

/// The binding names of cell.wgsl, in order.
const BINDINGS: [&str; 10] = [
    "p", "a", "r", "hs", "cs", "saved", "dh", "dh_next", "d_direct", "dc0",
];

/// The cell's shader source: the shared prelude, then the cell's own kernels.
fn source(cell: Cell) -> &'static str {
    match cell {
        Cell::Rnn | Cell::RnnRelu => concat!(
            include_str!("../../shaders/cell.wgsl"),
            include_str!("../../shaders/cell_rnn.wgsl")
        ),
        Cell::Gru => concat!(
            include_str!("../../shaders/cell.wgsl"),
            include_str!("../../shaders/cell_gru.wgsl")
        ),
        Cell::Lstm => concat!(
            include_str!("../../shaders/cell.wgsl"),
            include_str!("../../shaders/cell_lstm.wgsl")
        ),
    }
}

/// S: values per unit a cell saves for its backward pass (its gates, and a GRU's W_n h + b_hn).
pub fn saved_per_unit(cell: Cell) -> usize {
    match cell {
        Cell::Rnn | Cell::RnnRelu => 0,
        Cell::Gru | Cell::Lstm => 4,
    }
}

/// Whether the gradient that flows to t−1 around W reaches h (a GRU's z ⊙ dh): ∂L/∂h_0 then adds
/// it to dr_1 W. (An LSTM's reaches c, and its kernel writes ∂L/∂c_0 itself.)
pub fn direct_reaches_h(cell: Cell) -> bool {
    cell == Cell::Gru
}

impl CellKernels {
    /// Compiles the cell's shader and builds its two pipelines.
    pub fn new(device: &wgpu::Device, cell: Cell) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("cell"),
            source: wgpu::ShaderSource::Wgsl(source(cell).into()),
        });
        let bindings: Vec<(&str, Access)> = BINDINGS
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let access = if i == 0 {
                    Access::UniformDynamic
                } else {
                    Access::ReadWrite
                };
                (n, access)
            })
            .collect();
        let constants: &[(&str, f64)] = match cell {
            Cell::Rnn => &[("RELU", 0.0)],
            Cell::RnnRelu => &[("RELU", 1.0)],
            Cell::Gru | Cell::Lstm => &[],
        };
        Self {
            forward: Kernel::new(device, &module, "forward", &bindings, constants),
            backward: Kernel::new(device, &module, "backward", &bindings, constants),
        }
    }
}

/// The uniform of cell.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct CellParams {
    pub batch: u32,
    pub hidden: u32,
    pub row: u32,
    pub prev: u32,
    pub next: u32,
    pub saved: u32,
    pub dh: u32,
    pub last_step: u32,
    pub first_step: u32,
    pub state: u32,
    pub _pad: [u32; 2],
}
