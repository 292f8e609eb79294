#!/usr/bin/env bash
# unroll's checkpoints in PyTorch, end to end: trains small models with unroll, then loads each
# into torch.nn with strict=True and compares what the two programs compute.
# - classifiers (every cell, uni- and bidirectional, both heads, dropout, .ts channels and
#   `label<TAB>text`), on sequences of mixed lengths from 1 step up, through
#   pack_padded_sequence: every class probability of `unroll predict`, on the CPU reference and
#   on the GPU (wgpu's adapter: WGPU_BACKEND picks one), within 1e-5 (classifier_in_torch.py);
# - next-character models (every cell, two layers): `unroll sample --temperature 0`'s choices
#   are PyTorch's (checkpoint_in_torch.py).
#
#     bash tests/torch/run.sh [UNROLL] [PYTHON]
#
# UNROLL defaults to target/release/unroll, PYTHON to python3; PYTHON needs torch, numpy and
# safetensors. Everything is written to a fresh temporary directory, removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
unroll=$(realpath "${1:-$here/../../target/release/unroll}")
python=${2:-python3}
case $python in */*) python=$(realpath -s "$python") ;; esac  # a venv's link kept
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

"$python" - <<'EOF'
import math, random
r = random.Random(7)
def ts(path, n):
    with open(path, "w") as f:
        f.write("@problemName shapes\n@dimensions 2\n@equalLength false\n@classLabel true rise fall wave\n@data\n")
        for i in range(n):
            k, length = i % 3, [1, 40][i] if i < 2 else r.randint(2, 40)
            shape = [lambda t: t / 10, lambda t: -t / 10, lambda t: math.sin(t / 3)][k]
            a = [shape(t) + r.gauss(0, 0.1) for t in range(length)]
            b = [10 + r.gauss(0, 1) for _ in range(length)]
            f.write(",".join(f"{v:.4f}" for v in a) + ":" + ",".join(f"{v:.4f}" for v in b)
                    + ":" + ["rise", "fall", "wave"][k] + "\n")
ts("shapes_TRAIN.ts", 60)
ts("shapes_TEST.ts", 90)  # batches of 64 and 26 sequences in `predict`
with open("text_TRAIN.txt", "w") as f, open("text_TEST.txt", "w") as g:
    for i in range(120):
        label = r.choice(["pos", "neg"])
        words = ["good", "fine", "great"] if label == "pos" else ["bad", "poor", "awful"]
        text = " ".join(r.choice(words + ["the", "film", "was"]) for _ in range(r.randint(1, 9)))
        (f if i < 90 else g).write(f"{label}\t{text}\n")
EOF

classifier() {
  local name=$1 data=$2 test=$3
  shift 3
  "$unroll" train --task classify --data "$data" --val "$test" --hidden 12 --batch 8 \
    --iters 30 --eval-every 10 --device cpu --out "$name" --quiet "$@" > "$name.log"
  for device in cpu gpu; do
    "$unroll" predict --checkpoint "$name/best.safetensors" --data "$test" --device "$device" \
      --out "$name-$device.csv" > /dev/null
    echo -n "predict --device $device: "
    "$python" "$here/classifier_in_torch.py" "$name/best.safetensors" "$test" "$name-$device.csv"
  done
}
classifier lstm-bi shapes_TRAIN.ts shapes_TEST.ts --cell lstm --layers 2 --bidirectional
classifier gru-mean shapes_TRAIN.ts shapes_TEST.ts --cell gru --head mean
classifier relu-bi shapes_TRAIN.ts shapes_TEST.ts --cell rnn --nonlinearity relu --layers 2 \
  --bidirectional --head mean --dropout 0.2
classifier text-bi text_TRAIN.txt text_TEST.txt --cell lstm --bidirectional

for cell in lstm gru rnn; do
  "$unroll" train --cell "$cell" --layers 2 --hidden 24 --iters 60 --device cpu --out "chars-$cell" \
    --quiet > "chars-$cell.log"
  "$unroll" sample --checkpoint "chars-$cell/model.safetensors" --temperature 0 --len 200 \
    --prime "12+" > "chars-$cell.txt"
  "$python" "$here/checkpoint_in_torch.py" "chars-$cell/model.safetensors" "chars-$cell.txt" --prime "12+"
done
echo "torch checks passed"
