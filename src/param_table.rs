//! The one parameter table: every parameter of a model, by PyTorch's name, with its shape and its
//! place in the flat parameter vector. The GPU path, the CPU reference, the optimizers and the
//! checkpoints all read it; gradients and moments share its layout.
//!
//! ```text
//! per layer k, per direction (forward, then reverse when bidirectional; suffix "" or "_reverse"):
//!               rnn.weight_ih_l{k}{suffix} (G·H, I_k)  rnn.weight_hh_l{k}{suffix} (G·H, H)
//!               rnn.bias_ih_l{k}{suffix} (G·H)         rnn.bias_hh_l{k}{suffix} (G·H)
//!                                      I_0 = I, I_k = D above (D = H, or 2H when bidirectional)
//! then:         decoder.weight (O, D)  decoder.bias (O)
//! ```
//!
//! A layer's direction is a value ([`LayerParams`]) that owns its names and offsets: code that
//! walks the layers walks [`ParamTable::layers`] and never spells a name.

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

impl Entry {
    /// This parameter's part of a flat vector.
    pub fn of<'a, F>(&self, data: &'a [F]) -> &'a [F] {
        &data[self.offset..self.offset + self.len]
    }

    /// As [`Self::of`], mutable.
    pub fn of_mut<'a, F>(&self, data: &'a mut [F]) -> &'a mut [F] {
        &mut data[self.offset..self.offset + self.len]
    }
}

/// The four parameters of one direction of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// k: the layer, 0 at the bottom.
    pub layer: usize,
    /// 0 forward, 1 reverse.
    pub direction: usize,
    /// Its index among the states, PyTorch's `h_n[k·ND + d]`.
    pub state: usize,
    /// U: `rnn.weight_ih_l{k}{suffix}`, (G·H, I_k).
    pub weight_ih: Entry,
    /// W: `rnn.weight_hh_l{k}{suffix}`, (G·H, H).
    pub weight_hh: Entry,
    /// `rnn.bias_ih_l{k}{suffix}`, (G·H).
    pub bias_ih: Entry,
    /// `rnn.bias_hh_l{k}{suffix}`, (G·H).
    pub bias_hh: Entry,
}

impl LayerParams {
    /// I_k: the width of the layer's input.
    pub fn input(&self) -> usize {
        self.weight_ih.shape[1]
    }

    /// The four entries, in the table's order.
    pub fn entries(&self) -> [&Entry; 4] {
        [
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
        ]
    }
}

/// Every parameter of a [`ModelConfig`], in the order of the flat vector (and of PyTorch's
/// `state_dict`): per layer and direction `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`, then
/// the decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTable {
    /// The parameters, in order.
    pub entries: Vec<Entry>,
    /// Each direction of each layer, in order (layer-major, direction-minor).
    pub layers: Vec<LayerParams>,
    /// P: the flat vector's length.
    pub len: usize,
}

impl ModelConfig {
    /// The width of layer `l`'s input: I for layer 0, D above it.
    pub fn layer_input(&self, l: usize) -> usize {
        if l == 0 { self.input } else { self.features() }
    }

    /// The parameter table.
    pub fn table(&self) -> ParamTable {
        let gh = self.cell.gates() * self.hidden;
        let mut entries = Vec::new();
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let len = shape.iter().product();
            let e = Entry {
                name,
                shape,
                offset,
                len,
            };
            offset += len;
            entries.push(e.clone());
            e
        };
        let mut layers = Vec::new();
        for l in 0..self.layers {
            for d in 0..self.directions() {
                let suffix = if d == 0 { "" } else { "_reverse" };
                let mut param = |p: &str, shape| push(format!("rnn.{p}_l{l}{suffix}"), shape);
                layers.push(LayerParams {
                    layer: l,
                    direction: d,
                    state: l * self.directions() + d,
                    weight_ih: param("weight_ih", vec![gh, self.layer_input(l)]),
                    weight_hh: param("weight_hh", vec![gh, self.hidden]),
                    bias_ih: param("bias_ih", vec![gh]),
                    bias_hh: param("bias_hh", vec![gh]),
                });
            }
        }
        push("decoder.weight".into(), vec![self.output, self.features()]);
        push("decoder.bias".into(), vec![self.output]);
        ParamTable {
            entries,
            layers,
            len: offset,
        }
    }
}

impl ParamTable {
    /// The entry of a name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Direction `d` of layer `l`.
    pub fn layer(&self, l: usize, d: usize) -> &LayerParams {
        self.layers
            .iter()
            .find(|p| p.layer == l && p.direction == d)
            .expect("a layer and direction of the model")
    }

    /// The directions of layer `l`, forward first.
    pub fn directions_of(&self, l: usize) -> impl Iterator<Item = &LayerParams> {
        self.layers.iter().filter(move |p| p.layer == l)
    }

    /// The slice of a flat vector that holds `name` (which the table must list).
    pub fn slice<'a, F>(&self, data: &'a [F], name: &str) -> &'a [F] {
        self.get(name).expect("a parameter of the table").of(data)
    }

    /// As [`Self::slice`], mutable.
    pub fn slice_mut<'a, F>(&self, data: &'a mut [F], name: &str) -> &'a mut [F] {
        self.get(name)
            .expect("a parameter of the table")
            .of_mut(data)
    }
}
