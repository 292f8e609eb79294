#!/usr/bin/env bash
# What data-parallel training adds to a step, on this machine: `unroll bench --exchange` at
# P = 20 k, 130 k and 1 M parameters for 1, 2 and 4 ranks (mpirun on one machine), each beside the
# communication model. Needs the MPI build (cargo build --release --features mpi) and Open MPI.
#   benches/ranks.sh [OUT_DIR]        (default: $OUT, else bench-ranks/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench-ranks}}
# info.txt and exchange.txt are overwritten: the folder must be new or empty.
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "ranks.sh: $out is not empty; name a new or empty folder" >&2
  exit 2
fi
mkdir -p "$out"
bin=target/release/unroll
sizes=20000,130000,1000000
steps=${STEPS:-50}
"$bin" info > "$out/info.txt"
{
  echo "# $(date -u +%FT%TZ) $(uname -n), $(nproc) cores; adapter: $(sed -n 's/^would use: //p' "$out/info.txt")"
  "$bin" bench --exchange "$sizes" --steps "$steps" --warmup 10
  for n in 2 4; do
    mpirun --allow-run-as-root --oversubscribe -np "$n" "$bin" bench --exchange "$sizes" --steps "$steps" --warmup 10
  done
} | tee "$out/exchange.txt"
