//! A step's variant: the choices that change how a step runs on the adapter, never what it
//! computes: how the recurrence's timesteps are ordered, its tiles, whether a subgroup's lanes
//! share the states they load, and the kernel of the products. The tuner
//! ([`crate::tune`]) times variants and keeps the fastest; a trainer built with one
//! ([`crate::gpu::TrainerShape::variant`]) runs its training step with all of it, its other steps
//! (evaluation, whole sequences of other shapes) with all but the tiles, which are the training
//! shape's.

use crate::gpu::kernels::Products;
use crate::gpu::recurrence::{Recurrence, Tiles};
use crate::gpu::stack::StepOptions;

/// How one step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    /// The ordering of the recurrence's timesteps.
    pub recurrence: Recurrence,
    /// The recurrence's tiles (None: chosen per shape and adapter).
    pub tiles: Option<Tiles>,
    /// Whether a subgroup's lanes share the states they load.
    pub subgroups: bool,
    /// The kernel of the products outside the recurrences.
    pub products: Products,
}

impl Variant {
    /// `ordered, plain, blocked, tiles auto`, `grid, subgroups, tiled, tiles 32×8`, …
    pub fn name(&self) -> String {
        let loads = if self.subgroups { "subgroups" } else { "plain" };
        let products = match self.products {
            Products::Blocked => "blocked",
            Products::Tiled => "tiled",
        };
        let tiles = match self.tiles {
            Some(t) => format!("tiles {}×{}", t.units, t.row_block),
            None => "tiles auto".into(),
        };
        format!("{}, {loads}, {products}, {tiles}", self.recurrence.name())
    }

    /// The options of a step that runs this variant (nothing shared, no dropout).
    pub fn options(&self) -> StepOptions {
        StepOptions {
            recurrence: Some(self.recurrence),
            tiles: self.tiles,
            subgroups: Some(self.subgroups),
            products: self.products,
            ..Default::default()
        }
    }
}
