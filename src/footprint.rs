//! What a command needs in host memory, in bytes, worked out from the model's shapes before
//! anything of the model's size is allocated, and checked against the memory this process may
//! use. (The GPU side is checked against the adapter's limits by the steps themselves:
//! `ModelStep::check_fits`.)
//!
//! Dimensions: B batch, T timesteps, I input, H hidden, O output, L layers, G gates, P
//! parameters. Every count below is an element count of one buffer the code allocates, named
//! after it; a float is 4 bytes (f32) or 8 (f64).
//!
//! | work | what it holds at its peak |
//! |---|---|
//! | one CPU reference step ([`cpu_step`]) | per layer hs, cs (T+1, B, H), the gates (T, B, G·H), hn and the output (T, B, H); logits and dy (T, B, O); the gradients (P) and one layer's own; dh (T, B, H), dx; the results |
//! | a case for `unroll check` ([`Work::Case`]) | its parameters in f64, its batch, h0 and c0 |
//! | `unroll check` of a case ([`Work::Check`]) | beyond the case: its parameters in f32, the reference's results in f64 and f32, the truth and the yardstick, the GPU's results read back, the larger step |
//! | training on the CPU ([`Work::TrainCpu`]) | the parameters, the optimizer's moments, one step (or the evaluation's forward pass), and a checkpoint being written |
//! | training on the GPU ([`Work::TrainGpu`]) | the parameters, the self-check (a case and its check at B = 4, T = 8), and a checkpoint being written |

use crate::error::{Error, Result};
use crate::model::{InputKind, ModelConfig};

/// Bytes of one f32.
const F32: u128 = 4;
/// Bytes of one f64.
const F64: u128 = 8;

/// The sizes the counts are made of, in u128: no product of the sizes unroll accepts (or of
/// any usize) overflows it, so a count is exact however large, and too large to allocate.
#[derive(Clone, Copy)]
struct Dims {
    p: u128,
    l: u128,
    h: u128,
    g: u128,
    i: u128,
    o: u128,
    b: u128,
    t: u128,
    dense: bool,
}

/// A count of bytes as u64, saturating (nothing that large can be allocated anyway).
fn saturate(n: u128) -> u64 {
    n.min(u64::MAX as u128) as u64
}

impl Dims {
    fn new(c: &ModelConfig, batch: usize, steps: usize) -> Self {
        let u = |v: usize| v as u128;
        // P from the shapes, without building the table (whose arithmetic in usize must not be
        // reached with sizes that overflow it).
        let (h, g, i, o, l) = (
            u(c.hidden),
            u(c.cell.gates()),
            u(c.input),
            u(c.output),
            u(c.layers),
        );
        let gh = g * h;
        let p = gh * (i + h + 2) + l.saturating_sub(1) * gh * (2 * h + 2) + o * (h + 1);
        Self {
            p,
            l,
            h,
            g,
            i,
            o,
            b: u(batch),
            t: u(steps),
            dense: c.kind == InputKind::Dense,
        }
    }

    fn rows(&self) -> u128 {
        self.t * self.b
    }

    /// L·B·H: one state of every layer.
    fn states(&self) -> u128 {
        self.l * (self.b * self.h)
    }

    /// The elements of a step's results ([`crate::model::StepOutput`]): the loss, the top
    /// layer's output (T, B, H), h_n, c_n, dh0, dc0 (L, B, H each), the logits (T, B, O), the
    /// gradients (P).
    fn results(&self) -> u128 {
        1 + self.rows() * self.h + 4 * self.states() + self.rows() * self.o + self.p
    }

    /// The elements one CPU reference step allocates at its peak, its results included.
    fn step(&self) -> u128 {
        let (rows, h, gh) = (self.rows(), self.h, self.g * self.h);
        let per_layer = 2 * ((self.t + 1) * (self.b * h)) + rows * (gh + 2 * h);
        let inputs = if self.dense { rows * self.i } else { 0 };
        let widest = self.i.max(h);
        // The gradients (P), one layer's own while it accumulates, dh from the layer above and
        // dx for the layer below, dh0 and dc0.
        let backward =
            self.p + gh * (widest + h + 2) + rows * h + rows * widest + 2 * self.states();
        self.l * per_layer + inputs + 2 * (rows * self.o) + backward + self.results()
    }

    /// The forward pass alone (evaluation) over B' streams.
    fn forward(&self, batch: u128) -> u128 {
        let d = Dims { b: batch, ..*self };
        let (rows, h) = (d.rows(), d.h);
        let per_layer = 2 * ((d.t + 1) * (d.b * h)) + rows * (d.g * h + 2 * h);
        d.l * per_layer + 2 * (rows * d.o) + d.results()
    }

    /// A case's bytes: the parameters in f64, the inputs and targets, h0 and c0 in f32.
    fn case_bytes(&self) -> u128 {
        let data = if self.dense {
            self.rows() * (self.i + self.o)
        } else {
            2 * self.rows()
        };
        F64 * self.p + F32 * (data + 2 * self.states())
    }

    /// Writing a checkpoint: the parameters and the optimizer's moments copied out of the
    /// engine (3·P), copied into tensors (3·P) and serialised (3·P), in f32.
    fn checkpoint_write(&self) -> u128 {
        F32 * (9 * self.p)
    }
}

/// What the host memory is needed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A case for `unroll check` at (B, T): its parameters in f64, its batch and states.
    Case {
        /// B.
        batch: usize,
        /// T.
        steps: usize,
    },
    /// `unroll check` of a case at (B, T) (and the self-check before training on the GPU),
    /// beyond the case itself: the CPU reference in f64 and f32, and the GPU's results read back.
    Check {
        /// B.
        batch: usize,
        /// T.
        steps: usize,
    },
    /// Training on the CPU reference at (B, T), evaluating over up to `eval_batch` streams.
    TrainCpu {
        /// B.
        batch: usize,
        /// T.
        steps: usize,
        /// B of the evaluation's chunks.
        eval_batch: usize,
    },
    /// Training on the GPU at (B, T): what stays on the host (the initial parameters, the
    /// self-check at B = 4, T = 8 when it runs, a checkpoint being written).
    TrainGpu {
        /// B.
        batch: usize,
        /// T.
        steps: usize,
        /// Whether the self-check runs.
        self_check: bool,
    },
}

/// The bytes of host memory one CPU reference step of `config` at (B, T) allocates, with a float
/// of `float_bytes` (4 or 8), its results included.
pub fn cpu_step(config: &ModelConfig, batch: usize, steps: usize, float_bytes: u64) -> u64 {
    saturate(float_bytes as u128 * Dims::new(config, batch, steps).step())
}

impl Work {
    /// A case at (B, T) and its check, held at once: what `unroll check` needs before the case
    /// exists.
    pub fn case_and_check(batch: usize, steps: usize) -> [Work; 2] {
        [Work::Case { batch, steps }, Work::Check { batch, steps }]
    }

    /// The bytes of host memory this work needs for `config` at its peak.
    pub fn bytes(&self, config: &ModelConfig) -> u64 {
        saturate(self.exact(config))
    }

    fn exact(&self, config: &ModelConfig) -> u128 {
        match *self {
            Work::Case { batch, steps } => Dims::new(config, batch, steps).case_bytes(),
            Work::Check { batch, steps } => {
                let d = Dims::new(config, batch, steps);
                // The reference's results in f64 and f32 (each held as f64 tensors), the truth
                // and the yardstick (copies of them), the GPU's results in f32 and as f64.
                let results = F64 * (4 * d.results()) + (F32 + F64) * d.results();
                let step = F64 * d.step();
                F32 * d.p + results + step
            }
            Work::TrainCpu {
                batch,
                steps,
                eval_batch,
            } => {
                let d = Dims::new(config, batch, steps);
                let resident = F32 * (3 * d.p + d.states() * 2);
                let work = F32 * d.step().max(d.forward(eval_batch as u128));
                resident + work.max(d.checkpoint_write())
            }
            Work::TrainGpu {
                batch,
                steps,
                self_check,
            } => {
                let d = Dims::new(config, batch, steps);
                let check = if self_check {
                    Work::case_and_check(4, 8)
                        .iter()
                        .map(|w| w.exact(config))
                        .sum()
                } else {
                    0
                };
                F32 * d.p + check.max(d.checkpoint_write())
            }
        }
    }

    /// The same work with another batch size (for the largest that fits).
    fn with_batch(self, b: usize) -> Self {
        match self {
            Work::Case { steps, .. } => Work::Case { batch: b, steps },
            Work::Check { steps, .. } => Work::Check { batch: b, steps },
            Work::TrainCpu {
                steps, eval_batch, ..
            } => Work::TrainCpu {
                batch: b,
                steps,
                eval_batch,
            },
            Work::TrainGpu {
                steps, self_check, ..
            } => Work::TrainGpu {
                batch: b,
                steps,
                self_check,
            },
        }
    }

    fn batch(&self) -> usize {
        match *self {
            Work::Case { batch, .. }
            | Work::Check { batch, .. }
            | Work::TrainCpu { batch, .. }
            | Work::TrainGpu { batch, .. } => batch,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Work::Case { .. } => "making a case",
            Work::Check { .. } => "checking one step",
            Work::TrainCpu { .. } => "training on the CPU",
            Work::TrainGpu { .. } => "training on the GPU (what stays on the host)",
        }
    }
}

/// The bytes of memory this process may still allocate, where the system says: the smallest of
/// the kernel's estimate of available memory (`MemAvailable`), the cgroup's limit less its usage,
/// and the address-space and data-segment limits (`ulimit -v`, `-d`) less what is mapped. `None`
/// where none of them can be read (outside Linux).
pub fn host_available() -> Option<u64> {
    let mut least: Option<u64> = None;
    let mut take = |v: Option<u64>| {
        if let Some(v) = v {
            least = Some(least.map_or(v, |l| l.min(v)));
        }
    };
    take(meminfo_kib("/proc/meminfo", "MemAvailable:").map(|k| k * 1024));
    take(cgroup_headroom());
    take(rlimit_headroom());
    least
}

/// A `Key:   N kB` line of a /proc file, in KiB.
fn meminfo_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The memory cgroup's limit less its usage (v2, else v1), if it has a limit. The usage counts
/// the page cache, whose inactive part the kernel reclaims before it refuses memory: that part
/// is free to this process (as docker and the kubelet count it).
fn cgroup_headroom() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let stat = |p: &str, key: &str| -> u64 {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let (limit, used, reclaimable) = match read("/sys/fs/cgroup/memory.max") {
        Some(l) => (
            l,
            read("/sys/fs/cgroup/memory.current")?,
            stat("/sys/fs/cgroup/memory.stat", "inactive_file"),
        ),
        None => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes")?,
            stat("/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"),
        ),
    };
    // cgroup v1 reports "no limit" as a number near 2^63.
    (limit < 1 << 60).then(|| limit.saturating_sub(used.saturating_sub(reclaimable)))
}

/// `ulimit -v` less the mapped address space, and `ulimit -d` less the data segment.
#[cfg(target_os = "linux")]
fn rlimit_headroom() -> Option<u64> {
    let limit = |resource| {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct that we own.
        let ok = unsafe { libc::getrlimit(resource, &mut r) } == 0;
        (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
    };
    let mapped = |key| meminfo_kib("/proc/self/status", key).map(|k| k * 1024);
    let a = limit(libc::RLIMIT_AS).map(|l| l.saturating_sub(mapped("VmSize:").unwrap_or(0)));
    let d = limit(libc::RLIMIT_DATA).map(|l| l.saturating_sub(mapped("VmData:").unwrap_or(0)));
    match (a, d) {
        (Some(a), Some(d)) => Some(a.min(d)),
        (a, d) => a.or(d),
    }
}

#[cfg(not(target_os = "linux"))]
fn rlimit_headroom() -> Option<u64> {
    None
}

/// The largest value in `[1, hi]` for which `ok` holds, `ok` being monotone (true, then false);
/// 0 if it holds for none.
pub fn largest(hi: usize, ok: &dyn Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, hi);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if ok(mid) { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// Checks that `needed` bytes for `what` fit the host memory this process may use.
pub fn check_bytes(what: &str, needed: u64, hint: &str) -> Result<()> {
    match host_available() {
        Some(available) if needed > available => Err(Error::Memory {
            what: what.to_string(),
            needed,
            available,
            hint: hint.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Checks that `works` (all of them, held at once) on `config` fit the host memory this process
/// may use ([`host_available`]) before any of it is allocated; the error names the bytes needed,
/// those available, and the largest hidden size and batch that fit.
pub fn check_host(config: &ModelConfig, works: &[Work]) -> Result<()> {
    check_within(config, works, host_available())
}

/// The bytes of `works` on `config`, together.
fn total(config: &ModelConfig, works: &[Work]) -> u64 {
    saturate(works.iter().map(|w| w.exact(config)).sum())
}

/// [`check_host`] against a given number of available bytes (`None`: unknown, nothing refused).
pub fn check_within(config: &ModelConfig, works: &[Work], available: Option<u64>) -> Result<()> {
    let (Some(available), Some(first)) = (available, works.first()) else {
        return Ok(());
    };
    let needed = total(config, works);
    if needed <= available {
        return Ok(());
    }
    let batch = first.batch();
    let fits_hidden = |h: usize| {
        total(
            &ModelConfig {
                hidden: h,
                ..*config
            },
            works,
        ) <= available
    };
    let fits_batch = |b: usize| {
        let at_b: Vec<Work> = works.iter().map(|w| w.with_batch(b)).collect();
        total(config, &at_b) <= available
    };
    let h = largest(config.hidden, &fits_hidden);
    let b = largest(batch, &fits_batch);
    let mut options = Vec::new();
    if h > 0 {
        options.push(format!("H = {h} at B = {batch}"));
    }
    if b > 0 && b < batch {
        options.push(format!("B = {b} at H = {}", config.hidden));
    }
    let mut hint = if options.is_empty() {
        format!(
            "none does at H = 1: fewer layers (now {}), a smaller vocabulary or fewer columns",
            config.layers
        )
    } else {
        format!("the largest settings that fit: {}", options.join(", or "))
    };
    if config.layers > 1 && !options.is_empty() {
        hint += &format!(", or fewer layers (now {})", config.layers);
    }
    Err(Error::Memory {
        what: format!(
            "{} ({} parameters: {config})",
            first.describe(),
            Dims::new(config, 1, 1).p
        ),
        needed,
        available,
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::Cell;

    #[test]
    fn the_parameter_count_is_the_tables() {
        for cell in Cell::ALL {
            for layers in [1, 2, 5] {
                let c = ModelConfig::dense(7, 13, 5).with_cell(cell, layers);
                assert_eq!(Dims::new(&c, 1, 1).p, c.num_params() as u128);
            }
        }
    }

    #[test]
    fn a_step_counts_what_it_allocates_at_least() {
        // The step's results alone: its gradients (P) and outputs.
        let c = ModelConfig::tokens(65, 128).with_cell(Cell::Lstm, 2);
        let d = Dims::new(&c, 8, 16);
        assert!(d.step() > d.results() + d.p);
        assert!(cpu_step(&c, 8, 16, 8) == 2 * cpu_step(&c, 8, 16, 4));
    }

    #[test]
    fn a_refusal_names_sizes_that_fit_and_they_do() {
        let c = ModelConfig::tokens(65, 4096).with_cell(Cell::Lstm, 4);
        let work = Work::case_and_check(8, 32);
        let available = 2u64 << 30;
        let err = check_within(&c, &work, Some(available))
            .unwrap_err()
            .to_string();
        let h: usize = err
            .split("H = ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        let smaller = ModelConfig { hidden: h, ..c };
        assert!(check_within(&smaller, &work, Some(available)).is_ok());
        let bigger = ModelConfig { hidden: h + 1, ..c };
        assert!(check_within(&bigger, &work, Some(available)).is_err());
    }

    #[test]
    fn sizes_that_overflow_saturate_instead_of_wrapping() {
        let c = ModelConfig::dense(1 << 20, 1 << 14, 1 << 20).with_cell(Cell::Lstm, 64);
        let w = Work::Check {
            batch: 1 << 24,
            steps: 1 << 24,
        };
        assert_eq!(w.bytes(&c), u64::MAX);
    }
}
