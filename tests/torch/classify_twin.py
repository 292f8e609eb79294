#!/usr/bin/env python3
"""The PyTorch twin of `unroll train --task classify` on a `.ts` file: the same procedure in
torch.nn, for an accuracy to hold unroll's against.

The same as unroll, step for step in kind (not bit for bit: the random draws differ):
- a stratified held-out fraction of the training file (each class's share rounded, at least one
  of a class of two), drawn by the seed;
- each channel scaled by the training split's mean and deviation (population, over every step);
- torch.nn.{RNN,GRU,LSTM}(C, H, num_layers=L, bidirectional=…) and torch.nn.Linear(D, classes),
  PyTorch's default initialisation (unroll's too);
- batches of similar lengths: a pass sorts the sequences by length (ties drawn by the seed and
  the pass), cuts them in runs of B and draws the runs' order; each batch packed by
  `pack_padded_sequence`, so padding updates no state and counts in no loss;
- the `last` head (h_n[-1], bidirectional cat(h_n[-2], h_n[-1])) or `mean` (the mean of the
  output over the valid steps), the mean cross-entropy over the batch;
- the gradient clipped to a global norm of --clip, then Adam (β = 0.9, 0.999, ε = 1e-8);
- an evaluation every --eval-every steps on the held-out split; the model of the lowest
  validation loss kept (the first of equal ones), as `best.safetensors` is.

Prints one JSON line: test accuracy of the best and of the last model, the best step, the
training time (the loop and its evaluations, not the reading of the files) and the padded share.

    python3 tests/torch/classify_twin.py BasicMotions_TRAIN.ts BasicMotions_TEST.ts \\
        --cell lstm --hidden 64 --batch 8 --iters 500 --eval-every 25 --bidirectional --seed 1
"""
import argparse
import copy
import json
import math
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier_in_torch import read_ts  # noqa: E402


def ts_file(path):
    """(sequences as (n, C) float64 tensors, label names) of a .ts file: C is the first data
    line's channels (they are separated by `:`, the label last)."""
    lines = [l.strip() for l in open(path, encoding="utf-8")]
    first = lines.index(next(l for l in lines if l.lower() == "@data")) + 1
    channels = next(l for l in lines[first:] if l and not l.startswith("#")).count(":")
    seqs, labels = read_ts(path, channels)
    return [torch.tensor(s, dtype=torch.float64) for s in seqs], labels


def stratified(labels, fraction, rng):
    """(training, held-out) indices: `fraction` of each class held out."""
    held = set()
    for name in sorted(set(labels)):
        of = [i for i, l in enumerate(labels) if l == name]
        rng.shuffle(of)
        n = max(math.floor(len(of) * fraction + 0.5), int(len(of) >= 2))  # halves up, as Rust
        held.update(of[: min(n, len(of) - 1)])
    return [i for i in range(len(labels)) if i not in held], sorted(held)


def buckets(lengths, batch, rng):
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    runs = [order[k : k + batch] for k in range(0, len(order), batch)]
    rng.shuffle(runs)
    return runs


def padded_share(lengths, runs):
    every = sum(max(lengths[i] for i in r) * len(r) for r in runs)
    return 1.0 - sum(lengths) / every


class Classifier(torch.nn.Module):
    def __init__(self, cell, inputs, hidden, layers, bidirectional, classes, head):
        super().__init__()
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = kind(inputs, hidden, num_layers=layers, bidirectional=bidirectional)
        self.decoder = torch.nn.Linear(hidden * (2 if bidirectional else 1), classes)
        self.head, self.bidirectional = head, bidirectional

    def forward(self, xs):
        lengths = torch.tensor([len(x) for x in xs])
        padded = torch.nn.utils.rnn.pad_sequence(xs)
        packed = torch.nn.utils.rnn.pack_padded_sequence(padded, lengths, enforce_sorted=False)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        if self.head == "mean":
            unpacked, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
            features = unpacked.sum(0) / lengths.unsqueeze(1).to(unpacked.dtype)
        elif self.bidirectional:
            features = torch.cat([h_n[-2], h_n[-1]], dim=1)
        else:
            features = h_n[-1]
        return self.decoder(features)


def score(model, xs, ys, batch):
    """(mean cross-entropy over the sequences, accuracy)."""
    loss, right = 0.0, 0
    with torch.no_grad():
        for k in range(0, len(xs), batch):
            logits = model(xs[k : k + batch])
            y = ys[k : k + batch]
            loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            right += (logits.argmax(1) == y).sum().item()
    return loss / len(xs), right / len(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--head", default="last", choices=["last", "mean"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    seqs, names = ts_file(args.train)
    test_seqs, test_names = ts_file(args.test)
    classes = sorted(set(names))
    label = {n: k for k, n in enumerate(classes)}
    train_idx, val_idx = stratified(names, args.val_fraction, rng)
    steps = torch.cat([seqs[i] for i in train_idx])
    mean, std = steps.mean(0), steps.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))

    def prepare(idx, s, n):
        return ([((s[i] - mean) / std).float() for i in idx],
                torch.tensor([label[n[i]] for i in idx]))

    xs, ys = prepare(train_idx, seqs, names)
    vx, vy = prepare(val_idx, seqs, names)
    tx, ty = prepare(range(len(test_seqs)), test_seqs, test_names)
    lengths = [len(x) for x in xs]

    model = Classifier(args.cell, xs[0].shape[1], args.hidden, args.layers, args.bidirectional,
                       len(classes), args.head)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    best, shares, runs, start = None, [], [], time.perf_counter()
    for step in range(1, args.iters + 1):
        if not runs:
            runs = buckets(lengths, args.batch, rng)
            shares.append(padded_share(lengths, runs))
        idx = runs.pop(0)
        model.train()
        loss = torch.nn.functional.cross_entropy(model([xs[i] for i in idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if step % args.eval_every == 0 or step == args.iters:
            model.eval()
            val_loss, _ = score(model, vx, vy, args.batch)
            if best is None or val_loss < best[0]:
                best = (val_loss, step, copy.deepcopy(model.state_dict()))
    seconds = time.perf_counter() - start
    last = score(model, tx, ty, args.batch)[1]
    model.load_state_dict(best[2])
    print(json.dumps({
        "cell": args.cell, "bidirectional": args.bidirectional, "seed": args.seed,
        "test_accuracy_best": score(model, tx, ty, args.batch)[1], "test_accuracy_last": last,
        "best_step": best[1], "best_val_loss": best[0], "seconds": round(seconds, 2),
        "padded_share": sum(shares) / len(shares), "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
