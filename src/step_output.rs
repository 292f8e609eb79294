//! What one training step computes, by either path, and its results as named tensors under the
//! names of PyTorch's oracle.

use crate::model::ModelConfig;
use num_traits::Float;

/// Everything one training step computes, by either path. ND·L states are laid out
/// layer-major, direction-minor (PyTorch's `h_n[k·ND + d]`).
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput<F> {
    /// The mean loss: over the valid positions (per step), or over the B sequences (a sequence
    /// head).
    pub loss: F,
    /// The top layer's outputs, (T, B, D), zero at padded steps.
    pub output: Vec<F>,
    /// Every layer's and direction's last state, (ND·L, B, H).
    pub h_n: Vec<F>,
    /// Every layer's and direction's last cell state, (ND·L, B, H) (LSTM; empty otherwise).
    pub c_n: Vec<F>,
    /// y_1 … y_T, (T, B, O), zero at padded steps; or one y per sequence, (B, O), for a
    /// sequence head.
    pub logits: Vec<F>,
    /// What a sequence head's decoder read, (B, D) (empty for the per-step head).
    pub features: Vec<F>,
    /// ∂L/∂θ in the table's layout, (P).
    pub grads: Vec<F>,
    /// ∂L/∂h_0, (ND·L, B, H).
    pub dh0: Vec<F>,
    /// ∂L/∂c_0, (ND·L, B, H) (LSTM; empty otherwise).
    pub dc0: Vec<F>,
}

/// A named tensor in f64, for comparisons and dumps.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// `loss`, `output`, `h_n`, `c_n`, `logits`, `grad.h0`, `grad.c0` or `grad.<parameter>`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The values.
    pub data: Vec<f64>,
}

impl StepOutput<f32> {
    /// Every value it holds (the loss, outputs, states, logits, features and gradients), as
    /// bits: what two steps that compute the same must share.
    pub fn bits(&self) -> Vec<u32> {
        let all = [
            &self.output,
            &self.h_n,
            &self.c_n,
            &self.logits,
            &self.features,
            &self.grads,
            &self.dh0,
            &self.dc0,
        ];
        let mut v = vec![self.loss.to_bits()];
        v.extend(all.iter().flat_map(|t| t.iter().map(|x| x.to_bits())));
        v
    }
}

impl<F: Float> StepOutput<F> {
    /// The step's results under the names PyTorch's oracle uses (`tests/fixtures/cells/`,
    /// `tests/fixtures/seq/`), in the order of [`result_names`]; a forward pass's (no gradients)
    /// without the `grad.` tensors.
    pub fn tensors(&self, config: &ModelConfig, batch: usize, steps: usize) -> Vec<NamedTensor> {
        let (nh, no, nd) = (config.hidden, config.output, config.features());
        let states = vec![config.directions() * config.layers, batch, nh];
        let logits = match config.head.is_sequence() {
            true => vec![batch, no],
            false => vec![steps, batch, no],
        };
        let mut shapes = vec![
            ("loss", vec![], vec![self.loss]),
            ("output", vec![steps, batch, nd], self.output.clone()),
            ("h_n", states.clone(), self.h_n.clone()),
            ("logits", logits, self.logits.clone()),
        ];
        if config.head.is_sequence() {
            shapes.push(("features", vec![batch, nd], self.features.clone()));
        }
        shapes.push(("grad.h0", states.clone(), self.dh0.clone()));
        if config.cell.has_cell_state() {
            shapes.push(("c_n", states.clone(), self.c_n.clone()));
            shapes.push(("grad.c0", states, self.dc0.clone()));
        }
        let trained = !self.grads.is_empty();
        let t = |name: String, shape: Vec<usize>, v: &[F]| NamedTensor {
            name,
            shape,
            data: v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect(),
        };
        let mut all: Vec<NamedTensor> = shapes
            .into_iter()
            .filter(|(name, _, _)| trained || !name.starts_with("grad."))
            .map(|(name, shape, v)| t(name.to_string(), shape, &v))
            .collect();
        if trained {
            for e in config.table().entries {
                all.push(t(
                    format!("grad.{}", e.name),
                    e.shape.clone(),
                    e.of(&self.grads),
                ));
            }
        }
        all
    }
}

/// The names [`StepOutput::tensors`] gives a model's results, in order.
pub fn result_names(config: &ModelConfig) -> Vec<String> {
    let mut names: Vec<String> = ["loss", "output", "h_n", "logits"]
        .into_iter()
        .map(String::from)
        .collect();
    if config.head.is_sequence() {
        names.push("features".into());
    }
    names.push("grad.h0".into());
    if config.cell.has_cell_state() {
        names.extend(["c_n".to_string(), "grad.c0".to_string()]);
    }
    names.extend(
        config
            .table()
            .entries
            .iter()
            .map(|e| format!("grad.{}", e.name)),
    );
    names
}
