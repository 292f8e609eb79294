//! How a step runs its recurrences (`shaders/recurrence.wgsl`): the tiles a layer's units and
//! batch rows are split into, how their stages are ordered, and the rules that choose both.
//!
//! A tile is a slice of units (all G gates of each) and a block of batch rows; one workgroup owns
//! each. A stage (one timestep of one pass) reads what every tile wrote in the stage before, so
//! stages are ordered either by the dispatch boundary ([`Recurrence::Ordered`]: one dispatch per
//! stage) or by a grid barrier inside one dispatch ([`Recurrence::Grid`]). The grid barrier needs
//! every workgroup of the dispatch resident at once, which WebGPU does not promise: its wait is
//! bounded, a workgroup that waits too long sets a failure flag that ends the dispatch, and the
//! step runs again ordered (see [`crate::gpu::GpuTrainer`]). Either way a subgroup's lanes may
//! share the states they load (where the adapter has subgroup operations, [`subgroups`]), with
//! the same bits as the plain loads.

use crate::error::{Error, Result};
use crate::gpu::cells::{
    RECURRENCE_ROWS, RECURRENCE_STORAGE_BUFFERS, RECURRENCE_WORKGROUP, UnitBuild, cache_vec4s,
};
use crate::gpu::context::Gpu;
use crate::gpu::plan::LOOP_BUDGET;

/// How the stages of a recurrence are ordered.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Recurrence {
    /// One dispatch per timestep and pass, the dispatch boundary between them.
    #[value(alias = "per-step")]
    #[serde(alias = "per-step")]
    Ordered,
    /// One dispatch per layer and pass (a software adapter: per chunk of timesteps), a grid
    /// barrier between timesteps; falls back to `ordered` where the workgroups do not run at once.
    #[value(alias = "persistent")]
    #[serde(alias = "persistent")]
    Grid,
}

impl Recurrence {
    /// The flag's spelling: `ordered` or `grid`.
    pub fn name(self) -> &'static str {
        match self {
            Recurrence::Ordered => "ordered",
            Recurrence::Grid => "grid",
        }
    }

    /// The ordering for a layer's tiles when none is asked for: the grid barrier on a hardware GPU
    /// where every tile's workgroup is resident at once (`resident`, measured at start-up), else
    /// the ordered dispatches. A software adapter runs one workgroup per CPU thread, and a
    /// timestep's work dwarfs a dispatch there.
    pub(crate) fn auto(device_type: wgpu::DeviceType, tiling: &Tiling, resident: usize) -> Self {
        if device_type != wgpu::DeviceType::Cpu && tiling.groups() <= resident {
            Recurrence::Grid
        } else {
            Recurrence::Ordered
        }
    }
}

/// The tiles of one layer's recurrence: `units` units (a multiple of 4) × `row_block` rows each,
/// `slices` × `blocks` of them, whether a tile's weights are held in workgroup memory, the
/// batch rows an invocation computes at once (`rows`, 4 but for a shorter batch), and whether a
/// subgroup's lanes share the states they load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tiling {
    pub(crate) rows: usize,
    pub(crate) units: usize,
    pub(crate) slices: usize,
    pub(crate) row_block: usize,
    pub(crate) blocks: usize,
    pub(crate) cached: bool,
    pub(crate) subgroups: bool,
}

/// Loop iterations of one item in a stage, the larger pass: the product's sum (at most H
/// forward; G·H backward, 5 per 4 where its rows load as vec4s) and the cell's loops over four
/// units of up to four rows.
fn item_iterations(hidden: usize, gates: usize) -> usize {
    (gates * hidden).div_ceil(4) * 5 + 4 * 4 * (2 + gates) + 8
}

/// The units and batch rows of a recurrence's tile, where a step is asked for them (tests, and
/// tuning on an adapter): `units` a multiple of 4, at most 4 × the workgroup size (32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tiles {
    /// Units of the layer in one tile (all G gates of each).
    pub units: usize,
    /// Batch rows in one tile.
    pub row_block: usize,
}

impl Tiles {
    /// Refuses a tile the recurrence cannot run.
    pub(crate) fn validate(&self) -> Result<()> {
        let most = 4 * RECURRENCE_WORKGROUP;
        if self.units == 0
            || !self.units.is_multiple_of(4)
            || self.units > most
            || self.row_block == 0
        {
            return Err(Error::config(
                format!(
                    "a tile of {} units and {} rows: units must be a multiple of 4 from 4 to {most}, rows at least 1",
                    self.units, self.row_block
                ),
                "leave the tiles out to have them chosen",
            ));
        }
        Ok(())
    }
}

/// Polls of the grid barrier before it gives up, on a hardware GPU (a bound not yet timed on one:
/// `unroll bench --sync` measures a round there).
const GPU_SPIN: usize = 1 << 12;

/// The least polls a grid barrier gets on a software adapter.
const CPU_SPIN: usize = 1 << 10;

impl Tiling {
    /// The tiles for (B, H, G) on a device: a slice of at most WG quads of units (one per
    /// invocation; all of H where it fits), and the batch cut into blocks of whole row groups so
    /// that there are about `target` tiles (several per CPU thread on a software adapter, several
    /// per multiprocessor on a GPU), each short enough for a software adapter's loop budget.
    /// `asked` sets the units and rows of a tile instead.
    pub(crate) fn new(
        device_type: wgpu::DeviceType,
        limits: &wgpu::Limits,
        batch: usize,
        (hidden, gates): (usize, usize),
        asked: Option<Tiles>,
    ) -> Self {
        let quads = hidden.div_ceil(4);
        let rows = batch.min(RECURRENCE_ROWS);
        let row_groups = batch.div_ceil(rows);
        let (q, row_block) = match asked {
            Some(t) => (t.units / 4, t.row_block.min(batch)),
            None => {
                let q = quads.min(RECURRENCE_WORKGROUP);
                let (target, most): (usize, usize) = match device_type {
                    wgpu::DeviceType::Cpu => {
                        (8, (LOOP_BUDGET / 2) / item_iterations(hidden, gates))
                    }
                    _ => (256, 16),
                };
                let blocks = target.div_ceil(quads.div_ceil(q)).clamp(1, row_groups);
                let per_tile = row_groups.div_ceil(blocks).clamp(1, most.max(1));
                (q, (per_tile * rows).min(batch))
            }
        };
        Self {
            rows,
            units: 4 * q,
            slices: quads.div_ceil(q),
            row_block,
            blocks: batch.div_ceil(row_block),
            cached: gates * hidden * q <= cache_vec4s(limits),
            subgroups: false,
        }
    }

    /// The build of the recurrence's shader these tiles run with `recurrence`. (Ordered
    /// dispatches copy nothing into workgroup memory: each runs one stage.)
    pub(crate) fn build(&self, recurrence: Recurrence) -> UnitBuild {
        UnitBuild {
            cached: self.cached && recurrence == Recurrence::Grid,
            rows: self.rows,
            subgroups: self.subgroups,
        }
    }

    /// Workgroups of one dispatch.
    pub(crate) fn groups(&self) -> usize {
        self.slices * self.blocks
    }

    /// Items (four units × ROWS rows) of one invocation in a stage: its tile's row groups.
    fn items_per_invocation(&self) -> usize {
        self.row_block.div_ceil(self.rows)
    }

    /// Loop iterations of one invocation in a stage.
    fn stage_iterations(&self, hidden: usize, gates: usize) -> usize {
        self.items_per_invocation() * item_iterations(hidden, gates)
    }

    /// Loop iterations of one invocation copying its tile's weights into workgroup memory.
    fn cache_iterations(&self, hidden: usize, gates: usize) -> usize {
        if self.cached {
            (gates * hidden * self.units / 4).div_ceil(RECURRENCE_WORKGROUP)
        } else {
            0
        }
    }

    /// Why this tiling cannot run a layer of H units and G gates on a device, if it cannot: too
    /// few storage buffers, or (a software adapter) one stage longer than [`LOOP_BUDGET`].
    pub(crate) fn unfit(
        &self,
        device_type: wgpu::DeviceType,
        limits: &wgpu::Limits,
        (hidden, gates): (usize, usize),
    ) -> Option<String> {
        if limits.max_storage_buffers_per_shader_stage < RECURRENCE_STORAGE_BUFFERS {
            return Some(format!(
                "the recurrence binds {RECURRENCE_STORAGE_BUFFERS} storage buffers, the adapter allows {}",
                limits.max_storage_buffers_per_shader_stage
            ));
        }
        let per_stage = self.stage_iterations(hidden, gates) + self.cache_iterations(hidden, gates);
        if device_type == wgpu::DeviceType::Cpu && per_stage > LOOP_BUDGET - 64 {
            let most = (LOOP_BUDGET - 64 - item_iterations(0, gates)) / gates;
            return Some(format!(
                "one timestep of a layer of {gates} × {hidden} gate units takes an invocation \
                 {per_stage} loop iterations, more than a software adapter runs ({LOOP_BUDGET}); \
                 the largest settings that fit: H = {most}"
            ));
        }
        None
    }

    /// The dispatches of one layer's pass over `stages` stages: [begin, end) ranges and the
    /// grid barrier's bound on polls (0 for ordered dispatches, one stage each). On a hardware GPU
    /// the grid runs every stage in one dispatch; on a software adapter (Mesa ends an
    /// invocation's loops after 65,535 iterations) in chunks whose work and polls stay under
    /// [`LOOP_BUDGET`].
    pub(crate) fn chunks(
        &self,
        recurrence: Recurrence,
        device_type: wgpu::DeviceType,
        (hidden, gates): (usize, usize),
        stages: usize,
    ) -> (Vec<(usize, usize)>, usize) {
        let (per_chunk, spin) = match (recurrence, device_type) {
            (Recurrence::Ordered, _) => (1, 0),
            (Recurrence::Grid, wgpu::DeviceType::Cpu) => {
                let budget = LOOP_BUDGET - 64 - self.cache_iterations(hidden, gates);
                let per_stage = self.stage_iterations(hidden, gates);
                let n = (budget / (per_stage + CPU_SPIN)).max(1);
                (n, ((budget - n * per_stage) / n).max(1))
            }
            (Recurrence::Grid, _) => (stages, GPU_SPIN),
        };
        let chunks = (0..stages)
            .step_by(per_chunk)
            .map(|t| (t, (t + per_chunk).min(stages)))
            .collect();
        (chunks, spin)
    }
}

/// The most workgroups seen running at once (`shaders/resident.wgsl`), probed on first use
/// on a hardware GPU: what a grid barrier's dispatch may hold. 0 on a software adapter, whose
/// workgroups are CPU threads, in a browser, and once a grid barrier has failed on the device.
pub(crate) fn resident_workgroups(gpu: &Gpu) -> usize {
    let failed = gpu.grid_failed.load(std::sync::atomic::Ordering::Relaxed);
    if failed || gpu.info.device_type == wgpu::DeviceType::Cpu {
        return 0;
    }
    #[cfg(not(target_arch = "wasm32"))]
    return *gpu
        .resident
        .get_or_init(|| crate::gpu::resident::probe(gpu));
    #[cfg(target_arch = "wasm32")]
    0
}

/// Whether a step's recurrence shares states among a subgroup's lanes: `asked` where the device
/// has subgroup operations (an error where it has none); when nothing is asked, on a hardware GPU
/// that has them. (On lavapipe, whose subgroups are 8 SIMD lanes of one CPU thread, the plain
/// loads were as fast: `unroll bench --cell` times both.)
pub(crate) fn subgroups(gpu: &Gpu, asked: Option<bool>) -> Result<bool> {
    match asked {
        Some(true) if !gpu.subgroups => Err(Error::config(
            format!(
                "the recurrence's subgroup variant needs subgroup operations, which {} does not have",
                crate::gpu::describe(&gpu.info)
            ),
            "leave the subgroups to be chosen, or use another adapter (`unroll info` says which have them)",
        )),
        Some(s) => Ok(s),
        None => Ok(gpu.subgroups && gpu.info.device_type != wgpu::DeviceType::Cpu),
    }
}

/// The recurrence a step runs: `asked` if the tiling can run there, else an error that says why;
/// chosen by [`Recurrence::auto`] when nothing is asked.
pub(crate) fn choose(
    (device_type, limits): (wgpu::DeviceType, &wgpu::Limits),
    asked: Option<Recurrence>,
    tiling: &Tiling,
    (hidden, gates): (usize, usize),
    resident: usize,
) -> Result<Recurrence> {
    if let Some(why) = tiling.unfit(device_type, limits, (hidden, gates)) {
        return Err(Error::config(
            format!("the recurrence cannot run this model here: {why}"),
            "use a smaller --hidden, or another adapter",
        ));
    }
    Ok(asked.unwrap_or_else(|| Recurrence::auto(device_type, tiling, resident)))
}
