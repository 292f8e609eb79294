#!/usr/bin/env python3
"""An unroll classifier in PyTorch: loads a checkpoint of `unroll train --task classify` into
torch.nn.RNN / GRU / LSTM (num_layers=L, bidirectional as trained) and torch.nn.Linear(D, O) with
`load_state_dict(strict=True)`, runs the file's sequences through `pack_padded_sequence`
(enforce_sorted=False) in one batch of mixed lengths, takes the head's features as unroll does
(`last`: h_n[-1], or cat(h_n[-2], h_n[-1]) when bidirectional; `mean`: the mean of the unpacked
output over each sequence's valid steps), and compares the class probabilities with the CSV that
`unroll predict` wrote: every probability within --tol. Exits 1 on a mismatch, naming the
sequence.

    unroll predict --checkpoint run/best.safetensors --data TEST.ts --out predictions.csv
    python3 tests/torch/classifier_in_torch.py run/best.safetensors TEST.ts predictions.csv
"""
import argparse
import csv
import json
import struct
import sys

import torch
from safetensors.torch import load_file


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["unroll"])


def modules(meta, sd):
    c = meta["config"]
    i, h, o, layers, cell = c["input"], c["hidden"], c["output"], c["layers"], c["cell"]
    bi = c.get("bidirectional", False)
    kw = dict(num_layers=layers, bidirectional=bi, batch_first=False)
    if cell == "gru":
        rnn = torch.nn.GRU(i, h, **kw)
    elif cell == "lstm":
        rnn = torch.nn.LSTM(i, h, **kw)
    else:
        rnn = torch.nn.RNN(i, h, nonlinearity="relu" if "relu" in cell else "tanh", **kw)
    head = torch.nn.Linear(h * (2 if bi else 1), o)
    rnn.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")}, strict=True)
    head.load_state_dict({k[8:]: v for k, v in sd.items() if k.startswith("decoder.")}, strict=True)
    return rnn.double(), head.double()


def read_ts(path, channels):
    """(sequences as (n, C) lists, labels) of a .ts file."""
    seqs, labels, data = [], [], False
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not data:
            data = line.lower() == "@data"
            continue
        *chans, label = line.split(":")
        values = [[float(v) for v in ch.split(",")] for ch in chans]
        assert len(values) == channels, f"{len(values)} channels, the model reads {channels}"
        seqs.append([list(step) for step in zip(*values)])
        labels.append(label.strip())
    return seqs, labels


def read_text(path, chars):
    """(sequences as one-hot (n, I) lists, labels) of `label<TAB>text` lines."""
    index = {ch: k for k, ch in enumerate(chars)}
    seqs, labels = [], []
    for line in open(path, encoding="utf-8", newline=""):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        label, text = line.split("\t", 1)
        seqs.append([[1.0 if k == index[ch] else 0.0 for k in range(len(chars))] for ch in text])
        labels.append(label)
    return seqs, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("data", help="the file `unroll predict` read")
    ap.add_argument("predictions", help="the CSV `unroll predict` wrote")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    meta = metadata(args.checkpoint)
    rnn, head = modules(meta, load_file(args.checkpoint))
    c, classes = meta["config"], meta["classes"]
    if args.data.lower().endswith(".ts"):
        seqs, labels = read_ts(args.data, c["input"])
        stats = classes["channels"]
        mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
        # As unroll scales: (x − mean) / std in f64, kept as f32.
        xs = [((torch.tensor(s, dtype=torch.float64) - mean) / std).float().double() for s in seqs]
    else:
        seqs, labels = read_text(args.data, meta["vocab"]["chars"])
        xs = [torch.tensor(s, dtype=torch.float64) for s in seqs]
    lengths = torch.tensor([len(x) for x in xs])
    padded = torch.nn.utils.rnn.pad_sequence(xs)  # (T, B, I)
    packed = torch.nn.utils.rnn.pack_padded_sequence(padded, lengths, enforce_sorted=False)
    with torch.no_grad():
        out, state = rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        if c["head"] == "mean":
            unpacked, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
            features = unpacked.sum(0) / lengths.unsqueeze(1).double()
        elif c.get("bidirectional", False):
            features = torch.cat([h_n[-2], h_n[-1]], dim=1)
        else:
            features = h_n[-1]
        probs = torch.softmax(head(features), dim=1)
    rows = list(csv.reader(open(args.predictions, encoding="utf-8")))
    header, rows = rows[0], rows[1:]
    assert header[3:] == [f"p_{n}" for n in classes["names"]], header
    assert len(rows) == len(xs), f"{len(rows)} predictions for {len(xs)} sequences"
    worst = 0.0
    for i, row in enumerate(rows):
        assert row[1] == labels[i], f"sequence {i}: the CSV says {row[1]}, the file {labels[i]}"
        theirs = torch.tensor([float(v) for v in row[3:]], dtype=torch.float64)
        gap = (theirs - probs[i]).abs().max().item()
        worst = max(worst, gap)
        if gap > args.tol:
            sys.exit(f"sequence {i}: unroll's probabilities {theirs.tolist()} and PyTorch's "
                     f"{probs[i].tolist()} differ by {gap:.2e}")
    print(f"{c['cell']} × {c['layers']}{' bidirectional' if c.get('bidirectional') else ''} "
          f"({c['head']} head): loaded with strict=True; {len(rows)} sequences of lengths "
          f"{lengths.min().item()}–{lengths.max().item()} packed; every probability within "
          f"{worst:.1e} of unroll's")


if __name__ == "__main__":
    main()
