//! Stacked recurrent layers of one cell kind, with PyTorch's exact semantics (the parameters
//! that name and place them: [`crate::param_table`]).
//!
//! Dimensions: B batch, T timesteps, I input size, H hidden size, O output size, L layers,
//! G gates per cell (RNN 1, GRU 3, LSTM 4). Layer 0 reads x_t (I wide); layer l > 0 reads layer
//! l−1's h_t (H wide); the decoder reads the top layer's h_t.
//!
//! ```text
//! rnn:  h' = act(U x + b_ih + W h + b_hh)                        act = tanh or relu
//! gru:  r = σ(U_r x + b_ir + W_r h + b_hr)    z = σ(U_z x + b_iz + W_z h + b_hz)
//!       n = tanh(U_n x + b_in + r ⊙ (W_n h + b_hn))    h' = (1 − z) ⊙ n + z ⊙ h
//! lstm: i, f, g, o = σ, σ, tanh, σ of (U_g x + b_ig + W_g h + b_hg)   (gate rows i, f, g, o)
//!       c' = f ⊙ c + i ⊙ g    h' = o ⊙ tanh(c')
//! y_t = V h_t + c     (decoder.weight, decoder.bias)
//! ```
//!
//! U = `weight_ih_l{k}` (G·H, I_k) stacks the gates' U_g in PyTorch's row order, W =
//! `weight_hh_l{k}` (G·H, H) likewise; both biases are kept, as PyTorch keeps them (a GRU's
//! `b_hn` sits inside the reset product, so they cannot be folded).

/// The recurrent cell of every layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    /// The Elman RNN with tanh.
    #[default]
    Rnn,
    /// The Elman RNN with relu (`nonlinearity="relu"`).
    RnnRelu,
    /// The gated recurrent unit (gates r, z, n).
    Gru,
    /// The long short-term memory (gates i, f, g, o; carries h and c).
    Lstm,
}

impl Cell {
    /// G: the gates, each H rows of U and W.
    pub fn gates(self) -> usize {
        match self {
            Cell::Rnn | Cell::RnnRelu => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }

    /// Whether the cell carries a cell state c besides h.
    pub fn has_cell_state(self) -> bool {
        self == Cell::Lstm
    }

    /// Every cell, in the order of [`Cell::name`]'s list.
    pub const ALL: [Cell; 4] = [Cell::Rnn, Cell::RnnRelu, Cell::Gru, Cell::Lstm];

    /// The cell of a [`Cell::name`].
    pub fn from_name(name: &str) -> Option<Cell> {
        Cell::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The cell as PyTorch's module names it (`rnn` with relu: `rnn-relu`).
    pub fn name(self) -> &'static str {
        match self {
            Cell::Rnn => "rnn",
            Cell::RnnRelu => "rnn-relu",
            Cell::Gru => "gru",
            Cell::Lstm => "lstm",
        }
    }
}
