//! Dropout between stacked layers, as PyTorch's `nn.RNN/GRU/LSTM(dropout=p)` applies it: on the
//! output h_t of every layer but the top one, as the next layer reads it, in training only.
//!
//! The mask comes from a counter-based generator: whether unit j of stream b at timestep t of
//! layer l is kept in training step s is a hash of (seed, s, l, t, b, j), where b counts the
//! run's streams (a data-parallel share's first stream is b₀, not 0), so a step is the same
//! bits every time it is run, on the CPU and the GPU alike (`shaders/dropout.wgsl` computes the
//! same hash), and a resumed run draws the masks a straight one would. s is the number of
//! updates taken before the step (the optimizer's step counter).
//!
//! ```text
//! h = lowbias32(seed_lo);  h = lowbias32(h ^ x) for x in (seed_hi, s, l, t, b, j)
//! u = (h >> 8) / 2^24      kept iff u ≥ p, then scaled by 1 / (1 − p)
//! ```

/// The dropout of a run: its probability and the seed that keys its masks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutSpec {
    /// The probability of dropping a unit, in (0, 1).
    pub p: f32,
    /// The run's seed.
    pub seed: u64,
}

impl DropoutSpec {
    /// The masks of the training step after `step` updates.
    pub fn at_step(self, step: u64) -> Dropout {
        Dropout {
            p: self.p,
            seed: self.seed,
            step,
            first_stream: 0,
        }
    }
}

/// Dropout of probability `p` keyed by a run's seed, in the training step after `step` updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// The probability of dropping a unit, in [0, 1).
    pub p: f32,
    /// The run's seed.
    pub seed: u64,
    /// Updates taken before this step.
    pub step: u64,
    /// The run's index of the batch's stream 0 (a data-parallel share's first stream).
    pub first_stream: usize,
}

/// Chris Wellons' `lowbias32` integer hash.
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

impl Dropout {
    /// The factor of unit j of stream b at timestep t (0-based) of layer l's output: 0, or
    /// 1 / (1 − p).
    pub fn scale(&self, layer: usize, t: usize, b: usize, j: usize) -> f32 {
        let mut h = lowbias32(self.seed as u32);
        for x in [
            (self.seed >> 32) as u32,
            self.step as u32,
            layer as u32,
            t as u32,
            (self.first_stream + b) as u32,
            j as u32,
        ] {
            h = lowbias32(h ^ x);
        }
        let u = (h >> 8) as f32 / (1u32 << 24) as f32;
        if u >= self.p {
            1.0 / (1.0 - self.p)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_p_and_scales_the_rest() {
        let d = DropoutSpec { p: 0.3, seed: 7 }.at_step(11);
        let n = 20_000;
        let kept: Vec<f32> = (0..n).map(|j| d.scale(1, j % 13, j % 7, j)).collect();
        let dropped = kept.iter().filter(|&&s| s == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.3).abs() < 0.02, "dropped {dropped}");
        assert!(
            kept.iter()
                .all(|&s| s == 0.0 || (s - 1.0 / 0.7).abs() < 1e-6)
        );
        // Another step draws another mask.
        let other = Dropout { step: 12, ..d };
        let same = (0..n)
            .filter(|&j| other.scale(1, j % 13, j % 7, j) == kept[j])
            .count();
        assert!(same < n * 3 / 4, "{same} of {n} alike");
    }
}
