#!/usr/bin/env bash
# Everything one run on a GPU machine collects for the recurrence's tuning, into one folder (each
# part within its own time limit): the adapter and its limits (`unroll info`: subgroup sizes, workgroup memory),
# what orders the timesteps (`bench --sync`: the co-residency probe, the gap between dependent
# dispatches, a grid barrier's round at 1, 2 and 4 workgroups per multiprocessor of an H100 or
# H200), every ordering of the recurrence with `--profile` at the standard configurations, each
# ordering with its states loaded plainly and shared by subgroup shuffles at those configurations,
# the products alone on each kernel (blocked and tiled) at the weight-gradient shapes and 1024³,
# a full tuning of the step at every configuration (`bench --tune full`: every variant's time,
# then the tuned step with `--profile`; the tuning files copied into the folder's tune-cache/), the cells
# beside the Elman model, and PyTorch + cuDNN (TF32 off and on) on the same card.
#   benches/gpu_run.sh [OUT_DIR]     (default: $OUT, else gpu-run/)
# The folder must be new or empty. Needs a release build (cargo build --release; UNROLL=path names
# another binary) and, for the baseline, python3 with torch. Each part has its own time limit (LIMIT seconds, default 90), and
# a part that fails is noted in log.txt while the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-run}}
# Every file here is overwritten: the folder must be new or empty.
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "gpu_run.sh: $out is not empty; name a new or empty folder" >&2
  exit 2
fi
mkdir -p "$out"
bin=${UNROLL:-target/release/unroll}
limit=${LIMIT:-90}
log="$out/log.txt"
: > "$log"
# The tuner's cache: the run's own, so it tunes afresh; its files are copied into the folder at
# the end (not the drivers' shader caches, which share the directory and may be large).
XDG_CACHE_HOME=$(mktemp -d)
export XDG_CACHE_HOME

part() {
  local name=$1
  shift
  echo "== $name: $*" >> "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "   exit $?, $((SECONDS - t0)) s" >> "$log"
}

configs=()
for c in 100,1,25 128,32,64 512,32,64 1024,64,64; do configs+=(--config "$c"); done
big=(--config 512,32,64 --config 1024,64,64)

{ date -u +%FT%TZ; uname -a; nvidia-smi 2>/dev/null || echo "no nvidia-smi"; } > "$out/machine.txt"
part info "$bin" info
part sync "$bin" bench --sync 132,264,528 --steps 20
for r in ordered grid; do
  part "elman-$r" "$bin" bench --no-cpu --profile --tune off --recurrence "$r" --steps 20 --warmup 3 "${configs[@]}"
done
part tuned "$bin" bench --no-cpu --profile --tune full --steps 20 --warmup 3 "${configs[@]}"
part forms "$bin" bench --cell rnn --steps 10 --warmup 2 "${configs[@]}"
part products "$bin" bench --products --steps 20 --warmup 3 "${configs[@]}"
part cells "$bin" bench --cell rnn,gru,lstm --steps 10 --warmup 2 "${big[@]}"
if python3 -c 'import torch' 2>/dev/null; then
  part torch-rnn python3 benches/torch_rnn.py --json "${configs[@]}"
  part torch-gru python3 benches/torch_rnn.py --json --cell gru "${big[@]}"
  part torch-lstm python3 benches/torch_rnn.py --json --cell lstm "${big[@]}"
else
  echo "== torch: not run (python3 has no torch)" >> "$log"
fi
cp -r "$XDG_CACHE_HOME/unroll" "$out/tune-cache" 2>/dev/null || echo "== no tuning files" >> "$log"
cat "$log"
