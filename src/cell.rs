//! Stacked recurrent layers of one cell kind, with PyTorch's exact semantics, and the one
//! parameter table that names and places every parameter of such a model.
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

use crate::model::ModelConfig;

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

/// One parameter: its PyTorch name, shape and place in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `rnn.weight_ih_l0`, …, `decoder.weight`, `decoder.bias`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// First element in the flat vector.
    pub offset: usize,
    /// Elements.
    pub len: usize,
}

/// Every parameter of a [`ModelConfig`], in the order of the flat vector (and of PyTorch's
/// `state_dict`): per layer `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`, then the decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTable {
    /// The parameters, in order.
    pub entries: Vec<Entry>,
    /// P: the flat vector's length.
    pub len: usize,
}

impl ModelConfig {
    /// The width of layer `l`'s input: I for layer 0, H above it.
    pub fn layer_input(&self, l: usize) -> usize {
        if l == 0 { self.input } else { self.hidden }
    }

    /// The parameter table.
    pub fn table(&self) -> ParamTable {
        let gh = self.cell.gates() * self.hidden;
        let mut entries = Vec::new();
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let len = shape.iter().product();
            entries.push(Entry {
                name,
                shape,
                offset,
                len,
            });
            offset += len;
        };
        for l in 0..self.layers {
            push(format!("rnn.weight_ih_l{l}"), vec![gh, self.layer_input(l)]);
            push(format!("rnn.weight_hh_l{l}"), vec![gh, self.hidden]);
            push(format!("rnn.bias_ih_l{l}"), vec![gh]);
            push(format!("rnn.bias_hh_l{l}"), vec![gh]);
        }
        push("decoder.weight".into(), vec![self.output, self.hidden]);
        push("decoder.bias".into(), vec![self.output]);
        ParamTable {
            entries,
            len: offset,
        }
    }
}

impl ParamTable {
    /// The entry of a name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The slice of a flat vector that holds `name` (which the table must list).
    pub fn slice<'a, F>(&self, data: &'a [F], name: &str) -> &'a [F] {
        let e = self.get(name).expect("a parameter of the table");
        &data[e.offset..e.offset + e.len]
    }

    /// As [`Self::slice`], mutable.
    pub fn slice_mut<'a, F>(&self, data: &'a mut [F], name: &str) -> &'a mut [F] {
        let e = self.get(name).expect("a parameter of the table");
        &mut data[e.offset..e.offset + e.len]
    }
}
