//! The GPU side of a [`Cell`]: its pointwise forward and backward step (`shaders/cell_*.wgsl`
//! after the shared `shaders/cell.wgsl`), run per timestep or, with `shaders/cell_sequence.wgsl`
//! appended, as one persistent recurrence; and how much it saves for the backward pass. The
//! layer loop ([`crate::gpu::stack`]) plans the products around them and knows nothing else of a
//! cell; a new cell is a shader file here, its CPU twin in [`crate::cpu_cells`] and a row of
//! [`crate::cell::Cell`].

use crate::cell::Cell;
use crate::gpu::kernel::{Access, Kernel};
use bytemuck::{Pod, Zeroable};
use std::sync::OnceLock;

/// A cell's kernels.
pub struct CellKernels {
    /// `forward`: h_t (and c_t) from a_t and r_t, one timestep.
    pub forward: Kernel,
    /// `backward`: da_t and dr_t from ∂L/∂h_t, one timestep.
    pub backward: Kernel,
    /// The persistent recurrence, built on first use.
    sequence: OnceLock<SequenceKernels>,
    cell: Cell,
}

/// A cell's persistent recurrence (cell_sequence.wgsl): every timestep of a layer's pass in one
/// dispatch.
pub struct SequenceKernels {
    /// `forward_sequence`: r_t = h_t W^T + b_hh and the cell's forward, for each t.
    pub forward: Kernel,
    /// `backward_sequence`: the cell's backward and dh_next = dr_t W, for each t.
    pub backward: Kernel,
}

/// The binding names of cell.wgsl, in order, then those cell_sequence.wgsl adds.
const BINDINGS: [&str; 13] = [
    "p", "a", "r", "hs", "cs", "saved", "dh", "dh_next", "d_direct", "dc0", "wt", "params", "dh0",
];

/// Bindings of the per-step kernels.
const STEP_BINDINGS: usize = 10;

/// Storage buffers the persistent recurrence binds (all of [`BINDINGS`] but the uniform).
pub const SEQUENCE_STORAGE_BUFFERS: u32 = 12;

/// Elements of the batch rows one workgroup of the persistent recurrence keeps (`ROWS` in
/// cell_sequence.wgsl): rows per workgroup · G·H at most.
pub const SEQUENCE_ROW_ELEMENTS: usize = 4096;

/// The cell's own shader file.
fn cell_source(cell: Cell) -> &'static str {
    match cell {
        Cell::Rnn | Cell::RnnRelu => include_str!("../../shaders/cell_rnn.wgsl"),
        Cell::Gru => include_str!("../../shaders/cell_gru.wgsl"),
        Cell::Lstm => include_str!("../../shaders/cell_lstm.wgsl"),
    }
}

/// The cell's shader: tanh, the shared prelude, the cell, and the persistent recurrence if asked
/// for.
fn source(cell: Cell, sequence: bool) -> String {
    let mut s = String::from(include_str!("../../shaders/activation.wgsl"));
    s.push_str(include_str!("../../shaders/cell.wgsl"));
    s.push_str(cell_source(cell));
    if sequence {
        s.push_str(include_str!("../../shaders/cell_sequence.wgsl"));
    }
    s
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

/// The cell's `override` constants.
fn constants(cell: Cell) -> &'static [(&'static str, f64)] {
    match cell {
        Cell::Rnn => &[("RELU", 0.0)],
        Cell::RnnRelu => &[("RELU", 1.0)],
        Cell::Gru | Cell::Lstm => &[],
    }
}

/// Compiles the cell's shader and builds the pipelines of two entry points over the first
/// `bindings` of [`BINDINGS`].
fn pipelines(
    device: &wgpu::Device,
    cell: Cell,
    bindings: usize,
    entries: [&'static str; 2],
) -> [Kernel; 2] {
    let sequence = bindings > STEP_BINDINGS;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(if sequence { "cell_sequence" } else { "cell" }),
        source: wgpu::ShaderSource::Wgsl(source(cell, sequence).into()),
    });
    let layout: Vec<(&str, Access)> = BINDINGS[..bindings]
        .iter()
        .map(|&n| {
            let access = match n {
                "p" => Access::UniformDynamic,
                "wt" | "params" => Access::Read,
                _ => Access::ReadWrite,
            };
            (n, access)
        })
        .collect();
    entries.map(|e| Kernel::new(device, &module, e, &layout, constants(cell)))
}

impl CellKernels {
    /// Compiles the cell's shader and builds its per-step pipelines.
    pub fn new(device: &wgpu::Device, cell: Cell) -> Self {
        let [forward, backward] = pipelines(device, cell, STEP_BINDINGS, ["forward", "backward"]);
        Self {
            forward,
            backward,
            sequence: OnceLock::new(),
            cell,
        }
    }

    /// The persistent recurrence's pipelines (built on first use; the device must allow
    /// [`SEQUENCE_STORAGE_BUFFERS`] storage buffers per stage).
    pub fn sequence(&self, device: &wgpu::Device) -> &SequenceKernels {
        self.sequence.get_or_init(|| {
            let entries = ["forward_sequence", "backward_sequence"];
            let [forward, backward] = pipelines(device, self.cell, BINDINGS.len(), entries);
            SequenceKernels { forward, backward }
        })
    }
}

/// The uniform of cell.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct CellParams {
    pub batch: u32,
    pub hidden: u32,
    pub gates: u32,
    pub saved_width: u32,
    pub layer: u32,
    pub steps: u32,
    pub t: u32,
    pub t_begin: u32,
    pub t_end: u32,
    pub rows_per_group: u32,
    pub wt: u32,
    pub w: u32,
    pub bias: u32,
    pub direct_to_h: u32,
    pub _pad: [u32; 2],
}
