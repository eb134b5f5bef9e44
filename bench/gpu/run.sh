#!/usr/bin/env bash
# bench:gpu on a GPU machine without Node: unpacks the bundle (built by `npm run bench:gpu:bundle`)
# into a temp dir and runs PyTorch CUDA, then drover on webgpu. Writes one JSON line per system
# and setting to $OUT/bench.jsonl and everything else to $OUT/log.txt.
#
#   OUT=/some/dir bash .gpu-bundle/run.sh
#
# Environment (all optional):
#   GPU_BENCH_ARGS      extra arguments for bench.mjs, e.g. "--steps 2 --warmup 1" (a quick check)
#   GPU_BENCH_SETTING_TIMEOUT  seconds per webgpu setting (default 50; pytorch: 18 per setting, in one process)
#   GPU_BENCH_ALLOW_SOFTWARE=1 accept a software adapter (lavapipe) instead of retrying for a GPU
#   DROVER_PYTHON       the python with torch (default: the first of python3, python, ... that imports torch)
# Vulkan: Dawn needs the loader (libvulkan.so.1) and an ICD; NVIDIA's ICD needs glvnd's
# libGLdispatch.so.0. The bundle's copies of these are used where the machine has none. When the first probe finds no GPU adapter, the NVIDIA ICD files found
# on the machine are tried one by one through VK_DRIVER_FILES, and last a generated one pointing
# at libGLX_nvidia.so.0 (what NVIDIA's own nvidia_icd.json names).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
JSONL="$OUT/bench.jsonl"
: > "$JSONL"
exec 3>&1 >>"$LOG" 2>&1
say() { echo "[run.sh $(date -u +%H:%M:%S)] $*"; echo "$*" >&3; }
START=$(date +%s)
SETTING_TIMEOUT=${GPU_BENCH_SETTING_TIMEOUT:-50}
PYTHON=${DROVER_PYTHON:-}
if [ -z "$PYTHON" ]; then # the first python that has torch
  for p in python3 python /usr/bin/python3 /opt/conda/bin/python /usr/local/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PYTHON=$p; break; fi
  done
  PYTHON=${PYTHON:-python3}
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drover-gpu-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
unpack() { # xz, or python's lzma where xz is missing
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"
  else "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
mkdir -p "$WORK/dist/linux-x64"
unpack "$HERE/node.xz" "$WORK/node" && chmod +x "$WORK/node"
unpack "$HERE/dawn.node.xz" "$WORK/dist/linux-x64/dawn.node"
cp "$HERE/bench.mjs" "$WORK/"
NODE="$WORK/node"
say "unpacked in $(( $(date +%s) - START )) s; node $("$NODE" --version)"

echo "--- machine"
uname -a; cat /etc/os-release 2>/dev/null | head -2
command -v nvidia-smi >/dev/null && nvidia-smi -L
echo "NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES:-unset} VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset} VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-unset}"
ls -l /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>/dev/null
ldconfig -p 2>/dev/null | grep -E 'libvulkan|libGLX|libGLdispatch|libnvidia-glcore' || true
"$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())' || true

# The bundle's libraries fill in only what the machine lacks (a machine's own copies stay first).
mkdir -p "$WORK/lib"
for f in "$HERE"/lib/*; do
  [ -e "$f" ] || continue
  name=$(basename "$f")
  if ! ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$name "; then
    echo "no system $name: using the bundle's"
    ln -s "$f" "$WORK/lib/$name"
  fi
done
export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

hardware=(--hardware-only); [ "${GPU_BENCH_ALLOW_SOFTWARE:-0}" = 1 ] && hardware=()
probe() { # prints the adapter; fails on none, or on a software one unless allowed
  local adapter
  adapter=$(timeout 30 "$NODE" "$WORK/bench.mjs" --probe ${hardware[@]+"${hardware[@]}"}) || return 1
  echo "adapter: $adapter"
}
echo "--- webgpu adapter"
ADAPTER_OK=0
if probe; then ADAPTER_OK=1
else
  candidates=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null)
  lib=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libGLX_nvidia\.so\.0' | head -1)
  if [ -n "$lib" ]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" > "$WORK/nvidia_icd.json"
    candidates="$candidates $WORK/nvidia_icd.json"
  fi
  for icd in $candidates; do
    echo "retrying with VK_DRIVER_FILES=$icd"
    if VK_DRIVER_FILES="$icd" probe; then export VK_DRIVER_FILES="$icd"; ADAPTER_OK=1; break; fi
  done
fi
[ $ADAPTER_OK = 1 ] && say "webgpu adapter found" || say "no GPU WebGPU adapter: webgpu lines will say why"

# shellcheck disable=SC2086 # GPU_BENCH_ARGS is a word list on purpose
common=(--json ${hardware[@]+"${hardware[@]}"} --backbone "$HERE/models/mobilenet_v2" --torch-script "$HERE/torch_cuda.py" --python "$PYTHON" ${GPU_BENCH_ARGS:-})
echo "--- pytorch"
# PyTorch first (quick, and the anchor); at most ~100 s of the run.
timeout 100 "$NODE" "$WORK/bench.mjs" "${common[@]}" --systems pytorch --timeout 18 >> "$JSONL"
say "pytorch done at $(( $(date +%s) - START )) s"
echo "--- webgpu"
# The whole run stays under ~6 minutes: webgpu gets what is left of 340 s (settings time out on their own first).
left=$(( 340 - ($(date +%s) - START) )); [ $left -gt $(( SETTING_TIMEOUT * 8 + 20 )) ] && left=$(( SETTING_TIMEOUT * 8 + 20 ))
timeout $left "$NODE" "$WORK/bench.mjs" "${common[@]}" --systems webgpu --timeout "$SETTING_TIMEOUT" >> "$JSONL"
say "webgpu done at $(( $(date +%s) - START )) s"
cat "$JSONL" >&3
