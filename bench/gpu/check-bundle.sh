#!/usr/bin/env bash
# End-to-end check of the GPU bundle on this machine: copies .gpu-bundle/ into a temp dir with
# no node_modules around it, runs its run.sh on whatever adapter is here (a software one is
# accepted, figures meaningless) with tiny step counts and PyTorch on CPU when torch is
# installed, then checks the shape of bench.jsonl. Never installs into / (GPU_BENCH_NO_INSTALL=1).
# Run `npm run bench:gpu:bundle` first.
#
#   bash bench/gpu/check-bundle.sh [python-with-torch]
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${1:-python3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp -r "$ROOT/.gpu-bundle" "$TMP/"
SMALL="--steps 2 --warmup 1 --transfer-steps 1 --cnn-batches 8,16 --transfer-batch 2 --size 96"
systems=webgpu,webgpu-trainer
if "$PYTHON" -c 'import torch' 2>/dev/null; then systems=pytorch-cpu,webgpu,webgpu-trainer; else echo "no torch under $PYTHON: webgpu only"; fi
(cd "$TMP" && OUT="$TMP/out" GPU_BENCH_ALLOW_SOFTWARE=1 GPU_BENCH_NO_INSTALL=1 DROVER_PYTHON="$PYTHON" GPU_BENCH_SETTING_TIMEOUT=200 \
  GPU_BENCH_ARGS="$SMALL --torch-device cpu" bash .gpu-bundle/run.sh)
# Without torch run.sh's PyTorch lines are failures by design: checked only where torch is.
case $systems in pytorch*) cp "$TMP/out/bench.jsonl" "$TMP/checked.jsonl" ;; *) grep -v '"system":"pytorch' "$TMP/out/bench.jsonl" > "$TMP/checked.jsonl" ;; esac
node --import tsx "$ROOT/bench/gpu/check-output.ts" "$TMP/checked.jsonl" --systems "$systems" --cnn-batches 8,16 --transfer-batch 2
test -s "$TMP/out/log.txt"
