#!/usr/bin/env python3
"""An unroll checkpoint in PyTorch: loads it into torch.nn.RNN / GRU / LSTM (num_layers=L) and
torch.nn.Linear with `load_state_dict(strict=True)`, and checks that the model gives unroll's
outputs: fed the text that `unroll sample --temperature 0` printed (its prime, then its greedy
continuation), every character unroll chose is PyTorch's most likely one at that position, or
within `--tie` (nats) of it, a near tie that the two programs' float32 rounding may break either
way. Exits 1 on a mismatch, naming the position.

    unroll sample --checkpoint run/model.safetensors --temperature 0 --len 300 --prime "The " > out.txt
    python3 tests/torch/checkpoint_in_torch.py run/model.safetensors out.txt --prime "The "
"""
import argparse
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
    if cell == "gru":
        rnn = torch.nn.GRU(i, h, num_layers=layers)
    elif cell == "lstm":
        rnn = torch.nn.LSTM(i, h, num_layers=layers)
    else:
        relu = "relu" in cell
        rnn = torch.nn.RNN(i, h, num_layers=layers, nonlinearity="relu" if relu else "tanh")
    head = torch.nn.Linear(h, o)
    rnn.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")}, strict=True)
    head.load_state_dict({k[8:]: v for k, v in sd.items() if k.startswith("decoder.")}, strict=True)
    return rnn, head


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("sample", help="what `unroll sample --temperature 0` printed")
    ap.add_argument("--prime", default="\n")
    ap.add_argument("--tie", type=float, default=1e-4)
    args = ap.parse_args()
    meta = metadata(args.checkpoint)
    rnn, head = modules(meta, load_file(args.checkpoint))
    chars = meta["vocab"]["chars"]
    index = {ch: k for k, ch in enumerate(chars)}
    text = open(args.sample, encoding="utf-8", newline="").read()
    text = text[:-1] if text.endswith("\n") else text  # the line end `unroll sample` adds
    prime = args.prime.replace("\\n", "\n")  # as `unroll sample` reads it
    if not text.startswith(prime):
        sys.exit(f"the sample does not start with the prime {prime!r}")
    ids = torch.tensor([index[ch] for ch in text])
    x = torch.nn.functional.one_hot(ids, len(chars)).float().unsqueeze(1)
    with torch.no_grad():
        out, _ = rnn(x)
        logits = head(out[:, 0])
    start = len(prime)
    worst = 0.0
    for t in range(start, len(text)):
        row = logits[t - 1]
        gap = (row.max() - row[ids[t]]).item()
        worst = max(worst, gap)
        if gap > args.tie:
            sys.exit(f"position {t}: unroll chose {text[t]!r}, PyTorch's most likely is "
                     f"{chars[row.argmax()]!r} by {gap:.3e} nats")
    c = meta["config"]
    print(f"{c['cell']} × {c['layers']} (H = {c['hidden']}): loaded with strict=True; "
          f"{len(text) - start} greedy characters agree (largest gap to PyTorch's argmax {worst:.1e} nats)")


if __name__ == "__main__":
    main()
