//! The GPU side of a [`Cell`]: its pointwise forward and backward step (`shaders/cell_*.wgsl`
//! after the shared `shaders/cell.wgsl`), run inside the recurrence split by units
//! (`shaders/recurrence.wgsl`, appended); and how much it saves for the backward pass. The
//! layer loop ([`crate::gpu::stack`]) plans the products around them and knows nothing else of a
//! cell; a new cell is a shader file here, its CPU twin in [`crate::cpu_cells`] and a row of
//! [`crate::cell::Cell`].

use crate::cell::Cell;
use crate::gpu::kernel::{Access, Kernel};
use bytemuck::{Pod, Zeroable};
use std::sync::OnceLock;

/// A cell's recurrence (`shaders/recurrence.wgsl` after the cell's step), built on first use: with
/// the tile's weights in workgroup memory or without, for 1 to 4 batch rows per invocation, with
/// subgroup operations or without.
pub struct CellKernels {
    /// By [plain, subgroups][uncached, cached][rows per invocation − 1].
    builds: [[[OnceLock<UnitKernels>; RECURRENCE_ROWS]; 2]; 2],
    cell: Cell,
}

/// Which build of the recurrence a step runs: the parameters fixed when its shader is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitBuild {
    /// The tile's weights in workgroup memory (`CACHED`).
    pub cached: bool,
    /// Batch rows per invocation (`ROWS`, 1 to [`RECURRENCE_ROWS`]).
    pub rows: usize,
    /// States shared among a subgroup's lanes (`recurrence_subgroup.wgsl`; the device must have
    /// `Features::SUBGROUP`).
    pub subgroups: bool,
}

/// The pipelines of one build of recurrence.wgsl.
pub struct UnitKernels {
    /// `forward_units`: forward stages, r_t = h_t W^T + b_hh and the cell's forward.
    pub forward: Kernel,
    /// `backward_units`: backward stages, the product with dr and the cell's backward.
    pub backward: Kernel,
    /// `clear_sync`: zeroes the grid barriers' arrival counters.
    pub clear_sync: Kernel,
    /// `forward_step`, `backward_step`: one stage, no barrier (ordered dispatches).
    pub forward_step: Kernel,
    pub backward_step: Kernel,
}

/// The binding names of cell.wgsl, in order, then those recurrence.wgsl adds.
const BINDINGS: [&str; 10] = [
    "p", "a", "r", "hs", "cs", "saved", "d0", "wt", "params", "sync",
];

/// Storage buffers the recurrence binds (all of [`BINDINGS`]).
pub const RECURRENCE_STORAGE_BUFFERS: u32 = 10;

/// Invocations per workgroup of the recurrence (`WG`).
pub const RECURRENCE_WORKGROUP: usize = 32;

/// The most batch rows per invocation of the recurrence (`ROWS`); a batch of fewer takes fewer.
pub const RECURRENCE_ROWS: usize = 4;

/// Bytes of workgroup memory the recurrence uses besides its weights.
const RECURRENCE_OTHER_BYTES: u32 = 16;

/// The vec4s of weights a workgroup of the recurrence can hold in workgroup memory on a device.
pub fn cache_vec4s(limits: &wgpu::Limits) -> usize {
    (limits
        .max_compute_workgroup_storage_size
        .saturating_sub(RECURRENCE_OTHER_BYTES)
        / 16) as usize
}

/// The cell's own shader file.
fn cell_source(cell: Cell) -> &'static str {
    match cell {
        Cell::Rnn | Cell::RnnRelu => include_str!("../../shaders/cell_rnn.wgsl"),
        Cell::Gru => include_str!("../../shaders/cell_gru.wgsl"),
        Cell::Lstm => include_str!("../../shaders/cell_lstm.wgsl"),
    }
}

/// The cell's shader: tanh, the shared prelude, the cell, and the recurrence with `cache4` vec4s
/// of workgroup memory for weights (0: the weights are read from `wt`), its states shared by
/// subgroup shuffles or not.
fn source(cell: Cell, cache4: usize, subgroups: bool) -> String {
    let mut s = String::from(include_str!("../../shaders/activation.wgsl"));
    s.push_str(include_str!("../../shaders/cell.wgsl"));
    s.push_str(cell_source(cell));
    s.push_str(&format!(
        "\nconst CACHED: bool = {};\nconst CACHE4: u32 = {}u;\n",
        cache4 > 0,
        cache4.max(1)
    ));
    s.push_str(include_str!("../../shaders/recurrence.wgsl"));
    s.push_str(if subgroups {
        include_str!("../../shaders/recurrence_subgroup.wgsl")
    } else {
        include_str!("../../shaders/recurrence_plain.wgsl")
    });
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

/// The cell's `override` constants, and the recurrence's.
fn constants(cell: Cell, rows: usize) -> Vec<(&'static str, f64)> {
    let mut c = vec![("WG", RECURRENCE_WORKGROUP as f64), ("ROWS", rows as f64)];
    match cell {
        Cell::Rnn => c.push(("RELU", 0.0)),
        Cell::RnnRelu => c.push(("RELU", 1.0)),
        Cell::Gru | Cell::Lstm => {}
    }
    c
}

impl UnitKernels {
    fn new(device: &wgpu::Device, cell: Cell, cache4: usize, build: UnitBuild) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("recurrence"),
            source: wgpu::ShaderSource::Wgsl(source(cell, cache4, build.subgroups).into()),
        });
        let layout: Vec<(&str, Access)> = BINDINGS
            .iter()
            .map(|&n| {
                let access = match n {
                    "p" => Access::StorageDynamic,
                    "wt" | "params" => Access::Read,
                    _ => Access::ReadWrite,
                };
                (n, access)
            })
            .collect();
        let constants = constants(cell, build.rows);
        let kernel = |e| Kernel::new(device, &module, e, &layout, &constants);
        Self {
            forward: kernel("forward_units"),
            backward: kernel("backward_units"),
            clear_sync: kernel("clear_sync"),
            forward_step: kernel("forward_step"),
            backward_step: kernel("backward_step"),
        }
    }
}

impl CellKernels {
    /// The cell's kernels, none built yet.
    pub fn new(cell: Cell) -> Self {
        Self {
            builds: Default::default(),
            cell,
        }
    }

    /// Whether one build's pipelines are built already.
    pub fn is_built(&self, build: UnitBuild) -> bool {
        (1..=RECURRENCE_ROWS).contains(&build.rows)
            && self.builds[build.subgroups as usize][build.cached as usize][build.rows - 1]
                .get()
                .is_some()
    }

    /// The recurrence's pipelines of one build (built on first use; the device must allow
    /// [`RECURRENCE_STORAGE_BUFFERS`] storage buffers, and have subgroups for a build with them).
    pub fn units(&self, device: &wgpu::Device, build: UnitBuild) -> &UnitKernels {
        debug_assert!((1..=RECURRENCE_ROWS).contains(&build.rows));
        let cache4 = if build.cached {
            cache_vec4s(&device.limits())
        } else {
            0
        };
        self.builds[build.subgroups as usize][build.cached as usize][build.rows - 1]
            .get_or_init(|| UnitKernels::new(device, self.cell, cache4, build))
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
    pub block: u32,
    pub steps: u32,
    pub t_begin: u32,
    pub t_end: u32,
    pub units: u32,
    pub slices: u32,
    pub row_block: u32,
    pub groups: u32,
    pub wt: u32,
    pub w: u32,
    pub bias: u32,
    pub direct_to_h: u32,
    pub spin: u32,
    pub slot: u32,
    pub dh: u32,
    pub dh0: u32,
    pub dc0: u32,
    pub direct: u32,
    pub directions: u32,
    pub lengths: u32,
    pub wt_stride: u32,
    pub w_stride: u32,
    pub ar_stride: u32,
    pub dh_stride: u32,
    pub direct_stride: u32,
    pub _pad: [u32; 3],
}
