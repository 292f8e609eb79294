//! The compute pipelines, one per WGSL entry point, each with its bind group layout declared
//! here binding by binding (the names match the WGSL variables). Built once per device.

use crate::cell::Cell;
use crate::gpu::cells::CellKernels;
use crate::gpu::kernel::{Access, Kernel};
use bytemuck::{Pod, Zeroable};

/// Every kernel of the training step.
pub struct Kernels {
    /// matmul.wgsl, indexed by [`MatmulVariant`].
    matmul: Vec<Kernel>,
    /// transpose.wgsl
    pub transpose: Kernel,
    /// embedding.wgsl, the one-hot input projection
    pub gather: Kernel,
    /// loss.wgsl, tokens
    pub softmax_xent: Kernel,
    /// loss.wgsl, dense
    pub squared_error: Kernel,
    /// loss.wgsl, tokens, one workgroup per row (large vocabularies)
    pub softmax_xent_wide: Kernel,
    /// loss.wgsl, dense, one workgroup per row (many outputs)
    pub squared_error_wide: Kernel,
    /// loss.wgsl, the summed loss times 1/n
    pub mean_loss: Kernel,
    /// reduce.wgsl
    pub column_sum: Kernel,
    /// dropout.wgsl, the mask applied to a layer's output
    pub dropout_forward: Kernel,
    /// dropout.wgsl, the mask applied to the gradient of a layer's output
    pub dropout_backward: Kernel,
    /// sequence.wgsl, a bidirectional layer's directions as one output by time
    pub concat: Kernel,
    /// sequence.wgsl, the gradient of that output split back into the directions
    pub split: Kernel,
    /// sequence.wgsl, the `last` and `mean` heads' features
    pub features: Kernel,
    /// sequence.wgsl, the gradient of the features scattered into the top layer's steps
    pub features_backward: Kernel,
    /// Each cell's recurrence (recurrence.wgsl), built the first time a step of that cell asks.
    cells: [std::sync::OnceLock<CellKernels>; 4],
}

/// A compiled shader file, whose entry points become kernels.
struct Shader<'d> {
    device: &'d wgpu::Device,
    module: wgpu::ShaderModule,
}

impl<'d> Shader<'d> {
    fn new(device: &'d wgpu::Device, name: &str, source: &str) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        Self { device, module }
    }

    /// The pipeline of entry point `name` over `bindings`, with no `override` constants.
    fn kernel(&self, name: &'static str, bindings: &[(&str, Access)]) -> Kernel {
        Kernel::new(self.device, &self.module, name, bindings, &[])
    }
}

use Access::{Read, ReadWrite, UniformDynamic};

/// The bindings of each shader file's entry points, in binding order.
const MATMUL: &[(&str, Access)] = &[
    ("p", UniformDynamic),
    ("a", Read),
    ("b", Read),
    ("tokens", Read),
    ("addend", Read),
    ("c", ReadWrite),
];
const TRANSPOSE: &[(&str, Access)] = &[("p", UniformDynamic), ("src", Read), ("out", ReadWrite)];
const GATHER: &[(&str, Access)] = &[
    ("p", UniformDynamic),
    ("x", Read),
    ("src", Read),
    ("bias", Read),
    ("out", ReadWrite),
];
const LOSS: &[(&str, Access)] = &[
    ("p", UniformDynamic),
    ("y", Read),
    ("token_targets", Read),
    ("dense_targets", Read),
    ("dy", ReadWrite),
    ("row_loss", ReadWrite),
    ("weight", Read),
];
const COLUMN_SUM: &[(&str, Access)] = &[("p", UniformDynamic), ("m", Read), ("out", ReadWrite)];
const SEQUENCE: &[(&str, Access)] = &[
    ("p", UniformDynamic),
    ("lengths", Read),
    ("src", Read),
    ("dst", ReadWrite),
];
const DROPOUT: &[(&str, Access)] = &[
    ("p", UniformDynamic),
    ("counter", Read),
    ("src", Read),
    ("dst", ReadWrite),
];

/// matmul.wgsl's pipelines, one per [`MatmulVariant`] (its `override` flags and entry point).
fn matmul_kernels(device: &wgpu::Device) -> Vec<Kernel> {
    let shader = Shader::new(
        device,
        "matmul.wgsl",
        include_str!("../../shaders/matmul.wgsl"),
    );
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    MatmulVariant::ALL
        .iter()
        .map(|v| {
            let constants = [("ONE_HOT_B", flag(v.one_hot_b)), ("A_COLS", flag(v.a_cols))];
            Kernel::new(device, &shader.module, v.entry(), MATMUL, &constants)
        })
        .collect()
}

impl Kernels {
    /// Compiles every shader and builds every pipeline (a cell's on first use).
    pub fn new(device: &wgpu::Device) -> Self {
        let shader = |name, source| Shader::new(device, name, source);
        let transpose = shader(
            "transpose.wgsl",
            concat!(
                include_str!("../../shaders/grid.wgsl"),
                include_str!("../../shaders/transpose.wgsl")
            ),
        );
        let embedding = shader(
            "embedding.wgsl",
            concat!(
                include_str!("../../shaders/grid.wgsl"),
                include_str!("../../shaders/embedding.wgsl")
            ),
        );
        let loss = shader(
            "loss.wgsl",
            concat!(
                include_str!("../../shaders/grid.wgsl"),
                include_str!("../../shaders/loss.wgsl")
            ),
        );
        let reduce = shader(
            "reduce.wgsl",
            concat!(
                include_str!("../../shaders/grid.wgsl"),
                include_str!("../../shaders/reduce.wgsl")
            ),
        );
        let dropout = shader(
            "dropout.wgsl",
            concat!(
                include_str!("../../shaders/grid.wgsl"),
                include_str!("../../shaders/dropout.wgsl")
            ),
        );
        let sequence = shader(
            "sequence.wgsl",
            concat!(
                include_str!("../../shaders/grid.wgsl"),
                include_str!("../../shaders/sequence.wgsl")
            ),
        );
        Self {
            matmul: matmul_kernels(device),
            transpose: transpose.kernel("transpose", TRANSPOSE),
            gather: embedding.kernel("gather", GATHER),
            softmax_xent: loss.kernel("softmax_xent", LOSS),
            squared_error: loss.kernel("squared_error", LOSS),
            softmax_xent_wide: loss.kernel("softmax_xent_wide", LOSS),
            squared_error_wide: loss.kernel("squared_error_wide", LOSS),
            mean_loss: loss.kernel("mean_loss", LOSS),
            column_sum: reduce.kernel("column_sum", COLUMN_SUM),
            dropout_forward: dropout.kernel("dropout_forward", DROPOUT),
            dropout_backward: dropout.kernel("dropout_backward", DROPOUT),
            concat: sequence.kernel("concat", SEQUENCE),
            split: sequence.kernel("split", SEQUENCE),
            features: sequence.kernel("features", SEQUENCE),
            features_backward: sequence.kernel("features_backward", SEQUENCE),
            cells: Default::default(),
        }
    }

    /// The recurrence kernels of a cell (built on first use).
    pub fn cell(&self, cell: Cell) -> &CellKernels {
        let i = match cell {
            Cell::Rnn => 0,
            Cell::RnnRelu => 1,
            Cell::Gru => 2,
            Cell::Lstm => 3,
        };
        self.cells[i].get_or_init(|| CellKernels::new(cell))
    }
}

impl Kernels {
    /// The matmul.wgsl pipeline of a variant.
    pub fn matmul(&self, variant: MatmulVariant) -> &Kernel {
        let i = MatmulVariant::ALL
            .iter()
            .position(|v| *v == variant)
            .expect("every variant is built");
        &self.matmul[i]
    }
}

/// The entry point and pipeline constants of matmul.wgsl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatmulVariant {
    /// `matmul4`: every load a vec4.
    pub vec4: bool,
    /// B is the one-hot matrix of the tokens.
    pub one_hot_b: bool,
    /// (`matmul4`) A is column-major: four rows at one p form a vec4.
    pub a_cols: bool,
    /// `matmul_tiled`: 64×64 tiles of C from A's and B's tiles in workgroup memory.
    pub tiled: bool,
}

const fn variant(vec4: bool, one_hot_b: bool, a_cols: bool) -> MatmulVariant {
    MatmulVariant {
        vec4,
        one_hot_b,
        a_cols,
        tiled: false,
    }
}

const fn tiled(one_hot_b: bool) -> MatmulVariant {
    MatmulVariant {
        vec4: false,
        one_hot_b,
        a_cols: false,
        tiled: true,
    }
}

impl MatmulVariant {
    /// Its entry point: `matmul_tiled`, `matmul4` or `matmul`.
    pub fn entry(&self) -> &'static str {
        match (self.tiled, self.vec4) {
            (true, _) => "matmul_tiled",
            (false, true) => "matmul4",
            (false, false) => "matmul",
        }
    }

    /// The variants built.
    pub const ALL: [MatmulVariant; 7] = [
        variant(false, false, false),
        variant(false, true, false),
        variant(true, false, false),
        variant(true, false, true),
        variant(true, true, true),
        tiled(false),
        tiled(true),
    ];

    /// Rows and columns of C one workgroup computes.
    pub fn tile(&self) -> usize {
        if self.tiled { 64 } else { 32 }
    }
}

/// Which kernel the products of a step run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Products {
    /// `matmul4` where the operands allow vec4 loads, else `matmul`.
    #[default]
    Blocked,
    /// `matmul_tiled`, tiles in workgroup memory, for every product.
    Tiled,
}

/// The uniform of matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub a_offset: u32,
    pub a_row_stride: u32,
    pub a_col_stride: u32,
    pub b_offset: u32,
    pub b_row_stride: u32,
    pub b_col_stride: u32,
    pub c_offset: u32,
    pub c_row_stride: u32,
    pub addend_offset: u32,
    pub k_split: u32,
    pub c_split_stride: u32,
    pub k_begin: u32,
    pub k_len: u32,
    pub _pad: [u32; 3],
}

/// `flags` bit of [`MatmulParams`]: add `addend[j]` (a bias) to column j.
pub const ADD_BIAS: u32 = 1;
/// `flags` bit of [`MatmulParams`]: start the sums from C (the previous chunk of K).
pub const ACCUMULATE: u32 = 16;
/// The flags that act on a finished sum: only the last chunk of K applies them.
pub const EPILOGUE: u32 = ADD_BIAS;

/// The uniform of transpose.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct TransposeParams {
    pub rows: u32,
    pub cols: u32,
    pub in_offset: u32,
    pub out_offset: u32,
    pub out_stride: u32,
    pub transpose: u32,
    pub _pad: [u32; 2],
}

/// The uniform of embedding.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct EmbeddingParams {
    pub rows: u32,
    pub hidden: u32,
    pub input: u32,
    pub u_offset: u32,
    pub b_offset: u32,
    pub out_offset: u32,
    pub _pad: [u32; 2],
}

/// The uniform of loss.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct LossParams {
    pub rows: u32,
    pub classes: u32,
    pub _pad: [u32; 2],
}

/// The uniform of sequence.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct SequenceParams {
    pub batch: u32,
    pub steps: u32,
    pub hidden: u32,
    pub directions: u32,
    pub mean: u32,
    pub lengths: u32,
    pub src: u32,
    pub dst: u32,
}

/// The uniform of reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct ReduceParams {
    pub row_begin: u32,
    pub row_end: u32,
    pub cols: u32,
    pub out_offset: u32,
    pub scale: f32,
    pub first: u32,
    pub last: u32,
    pub _pad: u32,
}

/// The uniform of dropout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[allow(missing_docs)] // the fields mirror the WGSL struct of the same name
pub struct DropoutParams {
    pub rows: u32,
    pub hidden: u32,
    pub batch: u32,
    pub layer: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub p: f32,
    pub scale: f32,
    pub src_offset: u32,
    pub dst_offset: u32,
    pub _pad: [u32; 2],
}
