//! Comparing tensors by name: the GPU against the CPU reference, or either against the oracle.
//!
//! A tensor passes when `max |got − ref| ≤ rtol · max |ref|`: the error is measured against the
//! tensor's own scale, so that tiny elements with large relative errors (from another summation
//! order) do not fail a correct kernel, and a wrong element of any size does.

use crate::model::NamedTensor;
use std::fmt::Write;

/// The verdict on one tensor.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// `max |got − ref|`.
    pub max_diff: f64,
    /// `max |ref|`.
    pub max_ref: f64,
    /// The tolerance factor.
    pub rtol: f64,
    /// The worst elements: (flat index, reference, got), worst first.
    pub worst: Vec<(usize, f64, f64)>,
}

impl Comparison {
    /// `max_diff / max_ref` (0 when both are 0).
    pub fn relative(&self) -> f64 {
        if self.max_ref == 0.0 {
            if self.max_diff == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            self.max_diff / self.max_ref
        }
    }

    /// Whether the tensor is within tolerance. NaN anywhere fails.
    pub fn pass(&self) -> bool {
        self.max_diff <= self.rtol * self.max_ref
    }
}

/// Compares `got` against `reference` element by element.
/// A shape mismatch or a NaN counts as an infinite difference.
pub fn compare(reference: &NamedTensor, got: &NamedTensor, rtol: f64) -> Comparison {
    let mut diffs: Vec<(usize, f64, f64, f64)> = Vec::new();
    let mut max_ref: f64 = 0.0;
    let mut max_diff: f64 = 0.0;
    if reference.shape != got.shape || reference.data.len() != got.data.len() {
        max_diff = f64::INFINITY;
    } else {
        for (i, (&r, &g)) in reference.data.iter().zip(&got.data).enumerate() {
            let d = (g - r).abs();
            let d = if d.is_nan() { f64::INFINITY } else { d };
            max_ref = max_ref.max(r.abs());
            max_diff = max_diff.max(d);
            diffs.push((i, r, g, d));
        }
    }
    diffs.sort_by(|a, b| b.3.total_cmp(&a.3));
    Comparison {
        name: reference.name.clone(),
        shape: reference.shape.clone(),
        max_diff,
        max_ref,
        rtol,
        worst: diffs
            .into_iter()
            .take(5)
            .map(|(i, r, g, _)| (i, r, g))
            .collect(),
    }
}

/// Compares every tensor of `reference` with the tensor of the same name in `got`.
pub fn compare_all(reference: &[NamedTensor], got: &[NamedTensor], rtol: f64) -> Vec<Comparison> {
    reference
        .iter()
        .map(|r| match got.iter().find(|g| g.name == r.name) {
            Some(g) => compare(r, g, rtol),
            None => Comparison {
                name: r.name.clone(),
                shape: r.shape.clone(),
                max_diff: f64::INFINITY,
                max_ref: 0.0,
                rtol,
                worst: vec![],
            },
        })
        .collect()
}

/// A table of comparisons, one row per tensor, with the worst elements of each failure.
pub fn table(title: &str, rows: &[Comparison]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    let _ = writeln!(
        s,
        "  {:<8} {:<16} {:>12} {:>12} {:>12} {:>10}  result",
        "tensor", "shape", "max |Δ|", "max |ref|", "rel. error", "tolerance"
    );
    for c in rows {
        let _ = writeln!(
            s,
            "  {:<8} {:<16} {:>12.3e} {:>12.3e} {:>12.3e} {:>10.0e}  {}",
            c.name,
            format!("{:?}", c.shape),
            c.max_diff,
            c.max_ref,
            c.relative(),
            c.rtol,
            if c.pass() { "pass" } else { "FAIL" }
        );
        if !c.pass() {
            for &(i, r, g) in &c.worst {
                let _ = writeln!(
                    s,
                    "      [{i}] ref {r:.9e}  got {g:.9e}  Δ {:.3e}",
                    (g - r).abs()
                );
            }
        }
    }
    s
}
