#!/usr/bin/env python3
"""The PyTorch baseline of `unroll bench`: the same full training step of a one-hot recurrent
model (torch.nn.RNN with tanh, torch.nn.GRU or torch.nn.LSTM, `num_layers` L, + torch.nn.Linear;
mean cross-entropy over all T·B positions, backward, plain SGD update), float32, timed the same
way: after warm-up, each step is run and the device synchronised inside the timed region; the
median and minimum over the steps are reported. FLOPs per step are counted as
6·T·B·(Σ_l G·H·(I_l + H) + H·O), as unroll counts them (G = 1, 3, 4 gates; I_l = I, then H).

On CUDA each configuration runs twice, with TF32 off (the fair float32 comparison) and on
(PyTorch's default for cuDNN): torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 are set explicitly and reported with the result (`--tf32 off`
or `on` runs one of them).

    python3 benches/torch_rnn.py                   # the four standard configurations, CUDA if present
    python3 benches/torch_rnn.py --device cpu --threads 2 --config 128,32,64
    python3 benches/torch_rnn.py --cell lstm --layers 2 --config 128,32,64
"""
import argparse
import json
import statistics
import time

import torch


GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def model(cell, vocab, hidden, layers):
    if cell == "gru":
        return torch.nn.GRU(vocab, hidden, num_layers=layers)
    if cell == "lstm":
        return torch.nn.LSTM(vocab, hidden, num_layers=layers)
    return torch.nn.RNN(vocab, hidden, num_layers=layers, nonlinearity="tanh")


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def bench(device, cell, layers, hidden, batch, steps, vocab, n_steps, warmup, tf32):
    set_tf32(tf32)
    torch.manual_seed(0)
    rnn = model(cell, vocab, hidden, layers).to(device)
    head = torch.nn.Linear(hidden, vocab).to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    x = torch.randint(0, vocab, (steps, batch), device=device)
    y = torch.randint(0, vocab, (steps, batch), device=device)
    eye = torch.eye(vocab, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        h, _ = rnn(eye[x])
        loss = torch.nn.functional.cross_entropy(head(h).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    median = statistics.median(times)
    stack = sum(GATES[cell] * hidden * ((vocab if l == 0 else hidden) + hidden) for l in range(layers))
    flops = 6 * steps * batch * (stack + hidden * vocab)
    return {
        "config": {"hidden": hidden, "batch": batch, "steps": steps, "vocab": vocab},
        "variant": f"torch {cell} × {layers}" + (f", tf32 {'on' if tf32 else 'off'}" if device == "cuda" else ""),
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "median_ms": median,
        "min_ms": min(times),
        "tokens_per_s": batch * steps / (median * 1e-3),
        "gflops": flops / (median * 1e-3) * 1e-9,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cell", default="rnn", choices=sorted(GATES), help="rnn (tanh), gru or lstm")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--config", action="append", help="H,B,T (repeatable)")
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tf32", default="both", choices=["off", "on", "both"],
                    help="CUDA: run with TF32 off, on, or both (default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.config] if args.config else [
        (100, 1, 25), (128, 32, 64), (512, 32, 64), (1024, 64, 64)]
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.tf32] if args.device == "cuda" else [False]
    results = [bench(args.device, args.cell, args.layers, h, b, t, args.vocab, args.steps, args.warmup, tf32)
               for h, b, t in configs for tf32 in modes]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'H,B,T (I=O)':<16} {'variant':<28} {'device':<28} {'median ms':>10} {'min ms':>10} {'tokens/s':>12} {'GFLOP/s':>9}")
    for r in results:
        c = r["config"]
        print(f"{c['hidden']},{c['batch']},{c['steps']} ({c['vocab']})".ljust(16),
              f"{r['variant']:<28} {r['device'][:28]:<28} {r['median_ms']:>10.3f} {r['min_ms']:>10.3f} {r['tokens_per_s']:>12.0f} {r['gflops']:>9.2f}")


if __name__ == "__main__":
    main()
