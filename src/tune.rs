//! Tuning a step on the user's adapter: the candidate variants of a step (orderings, loads,
//! product kernels, tiles: [`Variant`]s, data), each checked against the CPU reference and then
//! timed, the fastest kept in the cache ([`crate::tune_cache`]) for later runs.
//!
//! Every variant computes the same step (the sums in the same order), so a choice changes the
//! speed and not the bits; a variant that disagrees with the CPU reference, or computes other
//! bits than the default on this adapter, is left out with a warning (`src/tune_trial.rs`).
//! `quick` times the default and the variants one choice away from it, within
//! [`QUICK_BUDGET`]; `full` times every ordering × loads × products with the tiles chosen, then
//! the best of them with each tile shape. The timed steps of the candidates are interleaved, so
//! the machine's swings in speed fall on all of them alike. A tuning that timed no variant, or
//! during which a grid barrier failed, stores nothing.

use crate::error::Result;
use crate::gpu::{Gpu, GpuStack, Products, Recurrence, Tiles, Variant};
pub use crate::tune_cache::Timing;
use crate::tune_cache::{self, Depth, Entry, Key, Lookup};
pub use crate::tune_trial::Target;
use crate::tune_trial::{Trial, fit, measure};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How much tuning a run does (`--tune`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TuneMode {
    /// No tuning, no cache: the choices made per shape and adapter.
    Off,
    /// The cached choice, else a few variants timed within about two seconds.
    #[default]
    Quick,
    /// The cached full choice, else every candidate timed.
    Full,
}

/// How a run chooses its GPU step's variant: the mode and the cache directory (None: no cache,
/// every run tunes afresh), or a variant given outright.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Off, quick or full.
    pub mode: TuneMode,
    /// Where the choices are kept.
    pub cache: Option<PathBuf>,
    /// Run this variant, tuning nothing (the library's choice; the CLI tunes).
    pub fixed: Option<Variant>,
}

impl Tuning {
    /// No tuning: the choices made per shape and adapter.
    pub fn off() -> Self {
        Self {
            mode: TuneMode::Off,
            cache: None,
            fixed: None,
        }
    }

    /// `mode`, with the user's cache directory ([`crate::tune_cache::default_dir`]).
    pub fn in_user_cache(mode: TuneMode) -> Self {
        Self {
            mode,
            cache: tune_cache::default_dir(),
            fixed: None,
        }
    }

    /// The variant `v`, tuning nothing.
    pub fn fixed(v: Variant) -> Self {
        Self {
            fixed: Some(v),
            ..Self::off()
        }
    }
}

/// The most a quick tuning spends (checks and timing), measured as it goes: once spent, the
/// variants not yet timed are left out.
pub const QUICK_BUDGET: Duration = Duration::from_secs(2);

/// Where a run's variant came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// `--tune off`: the choices made per shape and adapter.
    Default,
    /// Read from this cache file.
    Cached(PathBuf),
    /// Tuned now, in this many seconds; stored in the file, if it was.
    Tuned {
        /// Wall time of the tuning.
        seconds: f64,
        /// The part of it that checking and building the default variant's step took (its
        /// pipelines compiled: the cost of a run's first step whether it tunes or not).
        first_seconds: f64,
        /// The cache file it was stored in.
        stored: Option<PathBuf>,
    },
}

/// A step's variant and how it was found.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The variant to run.
    pub variant: Variant,
    /// Where it came from.
    pub origin: Origin,
    /// Every variant timed (now, or when the cached choice was tuned), fastest first.
    pub timings: Vec<Timing>,
    /// What the user should know: a cache file not used, a variant left out.
    pub warnings: Vec<String>,
}

impl Tuned {
    /// One line: the variant and where it came from.
    pub fn summary(&self) -> String {
        let from = match &self.origin {
            Origin::Default => "chosen per shape and adapter (--tune off)".to_string(),
            Origin::Cached(p) => format!("read from {}", p.display()),
            Origin::Tuned {
                seconds,
                first_seconds,
                stored,
            } => {
                let kept = match stored {
                    Some(p) => format!("stored in {}", p.display()),
                    None => "not stored".into(),
                };
                format!(
                    "tuned in {seconds:.2} s, {first_seconds:.2} s of it building the default \
                     step, over {} variant{}; {kept}",
                    self.timings.len(),
                    if self.timings.len() == 1 { "" } else { "s" }
                )
            }
        };
        format!("variant: {} ({from})", self.variant.name())
    }

    /// The timings as a table, fastest first.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = format!(
            "{:<48} {:>10} {:>6} {:>10}\n",
            "variant", "median ms", "steps", "check err"
        );
        for t in &self.timings {
            let _ = writeln!(
                s,
                "{:<48} {:>10.3} {:>6} {:>10.1e}",
                t.variant.name(),
                t.median_ms,
                t.timed_steps,
                t.check_max_rel_error
            );
        }
        s
    }
}

/// The variant a step of `target` runs when nothing is tuned.
pub fn default_variant(gpu: &Gpu, target: &Target) -> Result<Variant> {
    let asked = (target.recurrence, None, None);
    let (_, recurrence, tiling) = GpuStack::check_fits(gpu, target.config, target.shape, asked)?;
    Ok(Variant {
        recurrence,
        tiles: None,
        subgroups: tiling.subgroups,
        products: Products::Blocked,
    })
}

/// The variant to run `target` with: the default (`off`), the cache's choice, or a new tuning
/// (stored in `cache` where that is given and the file there is absent or unroll's), a quick
/// one within [`QUICK_BUDGET`].
pub fn tune(gpu: &Gpu, target: &Target, mode: TuneMode, cache: Option<&Path>) -> Result<Tuned> {
    let budget = (mode == TuneMode::Quick).then_some(QUICK_BUDGET);
    tune_within(gpu, target, mode, cache, budget)
}

/// [`tune`] with the time a tuning may spend (None: no limit): once it is spent, the candidates
/// not yet checked are left out and no more rounds are timed; the default variant is always
/// timed at least once.
pub fn tune_within(
    gpu: &Gpu,
    target: &Target,
    mode: TuneMode,
    cache: Option<&Path>,
    budget: Option<Duration>,
) -> Result<Tuned> {
    let base = default_variant(gpu, target)?;
    let depth = match mode {
        TuneMode::Off => {
            return Ok(Tuned {
                variant: base,
                origin: Origin::Default,
                timings: vec![],
                warnings: vec![],
            });
        }
        TuneMode::Quick => Depth::Quick,
        TuneMode::Full => Depth::Full,
    };
    let key = Key::new(&gpu.info, target.config, target.shape, target.recurrence);
    let (store, mut warnings) = match read_cache(gpu, target, depth, cache, &key) {
        Cached::Hit(tuned) => return Ok(tuned),
        Cached::Miss { store, warnings } => (store, warnings),
    };
    let started = Instant::now();
    let failed_before = gpu.grid_failed.load(Ordering::Relaxed);
    let (mut timings, first_s) = search(gpu, target, (base, depth), budget, &mut warnings)?;
    timings.sort_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    let variant = fastest(&timings, base);
    let mut stored = None;
    let keep = match (timings.is_empty(), gpu.grid_failed.load(Ordering::Relaxed)) {
        (true, _) => Err("no variant passed its check and ran; running the default"),
        (false, true) if !failed_before => {
            Err("a grid barrier failed while tuning (the adapter may be busy)")
        }
        _ => Ok(()),
    };
    match (cache, store, keep) {
        (_, _, Err(why)) => warnings.push(format!("the tuned choice was not stored: {why}")),
        (Some(dir), Some(replace), Ok(())) => {
            let entry = Entry::new(key, depth, variant, timings.clone());
            match tune_cache::store(dir, &entry, replace) {
                Ok(p) => stored = p,
                Err(e) => warnings.push(format!("the tuned choice was not stored: {e}")),
            }
        }
        _ => {}
    }
    Ok(Tuned {
        variant,
        origin: Origin::Tuned {
            seconds: started.elapsed().as_secs_f64(),
            first_seconds: first_s,
            stored,
        },
        timings,
        warnings,
    })
}

/// What the cache says of a key.
enum Cached {
    /// Its choice, tuned at least as deeply as asked, and able to run here.
    Hit(Tuned),
    /// No usable choice: whether a new one may be stored (`Some(false)`: no file yet, linked into
    /// place; `Some(true)`: unroll's file, replaced; `None`: a file not unroll's, left alone),
    /// and the warnings.
    Miss {
        store: Option<bool>,
        warnings: Vec<String>,
    },
}

/// Looks `key` up in the cache `dir`, if there is one.
fn read_cache(gpu: &Gpu, t: &Target, depth: Depth, dir: Option<&Path>, key: &Key) -> Cached {
    let miss = |store, warnings| Cached::Miss { store, warnings };
    let Some(dir) = dir else {
        return miss(Some(false), vec![]);
    };
    let path = dir.join(key.file_name());
    match tune_cache::lookup(dir, key) {
        Lookup::Absent => miss(Some(false), vec![]),
        Lookup::Found(entry) if entry.depth >= depth => {
            if runs_here(gpu, t, &entry.variant) {
                return Cached::Hit(Tuned {
                    variant: entry.variant,
                    origin: Origin::Cached(path),
                    timings: entry.timings,
                    warnings: vec![],
                });
            }
            let why = "its variant cannot run here now; tuning afresh";
            miss(Some(true), vec![format!("{}: {why}", path.display())])
        }
        Lookup::Found(_) => miss(Some(true), vec![]),
        Lookup::Stale(w) => miss(Some(true), vec![w]),
        Lookup::Foreign(w) => miss(None, vec![w]),
    }
}

/// Times the candidates of a tuning of `depth` around `base` (a full one: then the fastest with
/// each tile shape). Returns the timings and the seconds building the default step took (the
/// pipelines compiled, which a run spends whether it tunes or not).
fn search(
    gpu: &Gpu,
    target: &Target,
    (base, depth): (Variant, Depth),
    budget: Option<Duration>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Timing>, f64)> {
    let started = Instant::now();
    let kernels = gpu.kernels()?;
    let kernels_s = started.elapsed().as_secs_f64();
    let rounds = if depth == Depth::Quick { 3 } else { 5 };
    let first = candidates(gpu, target, base, depth);
    let trial = Trial::new(gpu, &kernels, target, base)?;
    let (mut timings, first_s) = measure(&trial, &first, (rounds, budget), warnings)?;
    if depth == Depth::Full && !timings.is_empty() {
        let best = fastest(&timings, base);
        let tiles = tile_candidates(gpu, target, best);
        let tiles: Vec<Variant> = tiles.into_iter().filter(|v| *v != best).collect();
        if !tiles.is_empty() {
            let more = measure(&trial, &tiles, (rounds, None), warnings)?;
            timings.extend(more.0);
        }
    }
    Ok((timings, kernels_s + first_s))
}

/// The fastest timed variant, or `base` where none was timed.
fn fastest(timings: &[Timing], base: Variant) -> Variant {
    (timings.iter())
        .min_by(|a, b| a.median_ms.total_cmp(&b.median_ms))
        .map_or(base, |t| t.variant)
}

/// Whether a variant can run `target` here: it fits the adapter and, with the grid barrier,
/// every workgroup of a dispatch is resident at once (else its barrier would fail every step).
fn runs_here(gpu: &Gpu, target: &Target, v: &Variant) -> bool {
    match GpuStack::check_fits(gpu, target.config, target.shape, fit(v)) {
        Ok((_, _, tiling)) => {
            v.recurrence == Recurrence::Ordered
                || tiling.groups() * target.config.directions()
                    <= crate::gpu::recurrence::resident_workgroups(gpu)
        }
        Err(_) => false,
    }
}

/// The first round's candidates, `base` first: quick, the variants one choice away from it;
/// full, every ordering × loads × products (the tiles chosen per shape).
fn candidates(gpu: &Gpu, target: &Target, base: Variant, depth: Depth) -> Vec<Variant> {
    let orderings = match target.recurrence {
        Some(r) => vec![r],
        None => vec![Recurrence::Ordered, Recurrence::Grid],
    };
    let loads: &[bool] = if gpu.subgroups && !cfg!(target_arch = "wasm32") {
        &[false, true]
    } else {
        &[false]
    };
    let mut all = vec![base];
    let mut add = |v: Variant| {
        if !all.contains(&v) && runs_here(gpu, target, &v) {
            all.push(v);
        }
    };
    match depth {
        Depth::Quick => {
            let flip = |p| match p {
                Products::Blocked => Products::Tiled,
                Products::Tiled => Products::Blocked,
            };
            add(Variant {
                products: flip(base.products),
                ..base
            });
            for &subgroups in loads {
                add(Variant { subgroups, ..base });
            }
            for &recurrence in &orderings {
                add(Variant { recurrence, ..base });
            }
        }
        Depth::Full => {
            for &recurrence in &orderings {
                for &subgroups in loads {
                    for products in [Products::Blocked, Products::Tiled] {
                        add(Variant {
                            recurrence,
                            subgroups,
                            products,
                            tiles: None,
                        });
                    }
                }
            }
        }
    }
    all
}

/// The second round of a full tuning: `best` with each tile shape that runs here (units of 16
/// to 128, up to H rounded up; row blocks of 4 to 64 rows, and all of B).
fn tile_candidates(gpu: &Gpu, target: &Target, best: Variant) -> Vec<Variant> {
    let (hidden, batch) = (target.config.hidden, target.shape.0);
    let most = hidden.next_multiple_of(4).min(128);
    let mut units: Vec<usize> = [16, 32, 64, 128]
        .into_iter()
        .filter(|&u| u < most)
        .collect();
    units.push(most);
    let mut rows: Vec<usize> = [4, 8, 16, 32, 64]
        .into_iter()
        .filter(|&r| r < batch)
        .collect();
    rows.push(batch);
    let mut all = Vec::new();
    for &u in &units {
        for &r in &rows {
            let tiles = Some(Tiles {
                units: u,
                row_block: r,
            });
            let v = Variant { tiles, ..best };
            if runs_here(gpu, target, &v) {
                all.push(v);
            }
        }
    }
    all
}
