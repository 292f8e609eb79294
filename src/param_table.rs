//! The one parameter table: every parameter of a model, by PyTorch's name, with its shape and its
//! place in the flat parameter vector. The GPU path, the CPU reference, the optimizers and the
//! checkpoints all read it; gradients and moments share its layout.
//!
//! ```text
//! per layer l:  rnn.weight_ih_l{l} (G·H, I_l)  rnn.weight_hh_l{l} (G·H, H)  rnn.bias_ih_l{l} (G·H)
//!               rnn.bias_hh_l{l} (G·H)                      I_0 = I, I_l = H above
//! then:         decoder.weight (O, H)  decoder.bias (O)
//! ```

use crate::model::ModelConfig;

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
