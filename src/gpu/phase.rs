//! The phases of a training step, in the order they run: what profiles and dispatch counts are
//! grouped by, and what evaluation (the forward phases alone) records.

/// The phases of a step, in the order they run (for profiles and counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `W^T` and `V^T`.
    Transposes,
    /// `pre = x U^T + b`.
    InputProjection,
    /// `h_t = tanh(pre_t + h_{t-1} W^T)`, t = 1..T.
    ForwardRecurrence,
    /// `y = h V^T + c`, the loss and `dy`.
    OutputAndLoss,
    /// `dh = dy V`, `dV`, `dc`.
    OutputGradients,
    /// `dA_t`, t = T..1.
    BackwardRecurrence,
    /// `dW`, `db`, `dU`, `dh0`.
    WeightGradients,
}

impl Phase {
    /// Whether the phase belongs to the forward pass and the loss (what evaluation runs).
    pub fn is_forward(&self) -> bool {
        matches!(
            self,
            Phase::Transposes
                | Phase::InputProjection
                | Phase::ForwardRecurrence
                | Phase::OutputAndLoss
        )
    }

    /// A short human name.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Transposes => "weight layouts",
            Phase::InputProjection => "input projection",
            Phase::ForwardRecurrence => "forward recurrence",
            Phase::OutputAndLoss => "output and loss",
            Phase::OutputGradients => "output gradients",
            Phase::BackwardRecurrence => "backward recurrence",
            Phase::WeightGradients => "weight gradients",
        }
    }
}
