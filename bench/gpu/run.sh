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
#   GPU_BENCH_NO_INSTALL=1  never take route 2 (below): nothing is written outside the temp dir
#   GPU_BENCH_PROBE_ONLY=1  stop after finding the adapter (a quick check of the Vulkan routes)
# Vulkan: Dawn needs the loader (libvulkan.so.1) and an ICD; NVIDIA's ICD (libGLX_nvidia.so.0)
# needs glvnd. Route 1 puts the bundle's loader and glvnd libraries that the machine lacks on
# LD_LIBRARY_PATH; route 2, only as root and only when route 1 finds no adapter, unpacks the
# bundle's Debian packages into / and runs ldconfig. Each route probes with the ICD manifests
# found on the machine, then generated ones naming libGLX_nvidia.so.0 and libEGL_nvidia.so.0.
# The log says loudly which route worked, and what the linker and loader said when none did.
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
ldconfig -p 2>/dev/null | grep -E 'libvulkan|libGLX|libGLdispatch|libEGL|libGL\.so|libOpenGL|libnvidia-glcore|libnvidia-glvkspirv|libnvidia-gpucomp' || true
"$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())' || true

hardware=(--hardware-only); [ "${GPU_BENCH_ALLOW_SOFTWARE:-0}" = 1 ] && hardware=()
ADAPTER_JSON=
probe() { # prints the adapter; fails on none, or on a software one unless allowed
  local adapter
  adapter=$(timeout 30 "$NODE" "$WORK/bench.mjs" --probe ${hardware[@]+"${hardware[@]}"}) || return 1
  echo "adapter: $adapter"
  ADAPTER_JSON=$adapter
}
# probe, then again with each NVIDIA ICD manifest found on the machine, then with generated ones
# naming NVIDIA's GLX library (what its manifest names) and its EGL library (its headless build).
probe_icds() {
  probe && return 0
  local candidates lib icd
  candidates=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null)
  for name in libGLX_nvidia.so.0 libEGL_nvidia.so.0; do
    lib=$(ldconfig -p 2>/dev/null | grep -o "/[^ ]*$name" | head -1)
    [ -n "$lib" ] || continue
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" > "$WORK/icd-$name.json"
    candidates="$candidates $WORK/icd-$name.json"
  done
  for icd in $candidates; do
    echo "retrying with VK_DRIVER_FILES=$icd"
    if VK_DRIVER_FILES="$icd" probe; then export VK_DRIVER_FILES="$icd"; return 0; fi
  done
  return 1
}
# What the dynamic linker and the Vulkan loader say when no adapter shows: which library NVIDIA's
# driver asked for and did not get.
diagnose() {
  echo "--- diagnosis ($1)"
  for name in libGLX_nvidia.so.0 libEGL_nvidia.so.0; do
    lib=$(ldconfig -p 2>/dev/null | grep -o "/[^ ]*$name" | head -1)
    [ -n "$lib" ] && { echo "ldd $lib:"; ldd "$lib" 2>&1 | grep -E 'not found|GL|vulkan|nvidia' | head -20; }
  done
  VK_LOADER_DEBUG=error,warn,driver LD_DEBUG=libs timeout 30 "$NODE" "$WORK/bench.mjs" --probe > "$WORK/diagnosis.txt" 2>&1
  echo "Vulkan loader complaints:"
  grep -E 'ERROR|WARNING|Could not|[Ff]ailed' "$WORK/diagnosis.txt" | grep -v 'Warning: max' | sort | uniq -c | head -30
  # LD_DEBUG names every library looked for and every one initialised: the difference is what
  # was asked for (by NEEDED or dlopen) and never loaded.
  echo "libraries looked for but never loaded:"
  awk '/find library=/ { sub(/.*find library=/, ""); sub(/ .*/, ""); wanted[$0] = 1 }
       /calling init: / { n = split($NF, parts, "/"); loaded[parts[n]] = 1 }
       END { for (w in wanted) if (!(w in loaded)) print "  " w }' "$WORK/diagnosis.txt" | sort
}

# Vulkan for Dawn, by the least invasive route that yields an adapter. Route 1: the bundle's
# loader and glvnd libraries, each the machine lacks, on LD_LIBRARY_PATH (nothing on the machine
# changes). Route 2, only when route 1 finds no adapter and this runs as root: the bundle's
# Debian packages unpacked into / and ldconfig (what worked by hand on the lent H200 host).
echo "--- webgpu adapter"
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
ADAPTER_OK=0
if probe_icds; then
  ADAPTER_OK=1; say "VULKAN ROUTE 1 worked: the bundle's libraries on LD_LIBRARY_PATH ($(ls "$WORK/lib" | tr '\n' ' '))"
else
  diagnose "route 1: LD_LIBRARY_PATH"
  debs=$(ls "$HERE"/debs/*.deb 2>/dev/null)
  if [ "${GPU_BENCH_NO_INSTALL:-0}" = 1 ]; then say "VULKAN ROUTE 1 found no adapter; route 2 (install the packages into /) is off (GPU_BENCH_NO_INSTALL=1)"
  elif [ "$(id -u)" != 0 ]; then say "VULKAN ROUTE 1 found no adapter; route 2 (install the packages into /) needs root: skipped"
  elif [ -z "$debs" ] || ! command -v dpkg >/dev/null; then say "VULKAN ROUTE 1 found no adapter; route 2 needs the bundle's debs/ and dpkg: skipped"
  else
    say "VULKAN ROUTE 1 found no adapter: ROUTE 2 INSTALLS $(echo $debs | wc -w) Debian packages INTO / (dpkg -x + ldconfig) ON THIS MACHINE"
    for deb in $debs; do dpkg -x "$deb" / && echo "unpacked $(basename "$deb") into /"; done
    ldconfig
    # The machine's own copies now: route 2 is tested as it would be used.
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH#"$WORK/lib"}"; LD_LIBRARY_PATH="${LD_LIBRARY_PATH#:}"
    if probe_icds; then ADAPTER_OK=1; say "VULKAN ROUTE 2 worked: packages unpacked into / + ldconfig"
    else diagnose "route 2: packages in /"; fi
  fi
fi
[ $ADAPTER_OK = 1 ] && say "webgpu adapter found" || say "no GPU WebGPU adapter: webgpu lines will say why"
# drover's one-GPU-per-process Vulkan layer (src/model/vulkan-device-select.ts) against this
# machine's driver: bound to the adapter's name, ordinal 0 must show it and ordinal 1 nothing
# (one GPU here; hosts with identical GPUs bind ordinal k to the k-th).
layer=$(ls "$HERE"/vk-layer/*.so 2>/dev/null | head -1)
if [ $ADAPTER_OK = 1 ] && [ -n "$layer" ]; then
  echo "--- drover's Vulkan device-select layer"
  mkdir -p "$WORK/vk-layer"
  printf '{"file_format_version":"1.1.2","layer":{"name":"VK_LAYER_DROVER_device_select","type":"GLOBAL","library_path":"%s","api_version":"1.3.0","implementation_version":"1","description":"drover","functions":{"vkNegotiateLoaderLayerInterfaceVersion":"vkNegotiateLoaderLayerInterfaceVersion"}}}\n' "$layer" > "$WORK/vk-layer/drover_device_select.json"
  name=$("$NODE" -e 'console.log(JSON.parse(process.argv[1]).name)' "$ADAPTER_JSON")
  with_layer() { VK_ADD_LAYER_PATH="$WORK/vk-layer" VK_INSTANCE_LAYERS=VK_LAYER_DROVER_device_select NODEVICE_SELECT=1 \
    DROVER_VK_DEVICE_NAME="$name" DROVER_VK_DEVICE_ORDINAL="$1" VK_LOADER_DEBUG=error,warn timeout 30 "$NODE" "$WORK/bench.mjs" --probe ${hardware[@]+"${hardware[@]}"}; }
  first=$(with_layer 0) && second=$(with_layer 1; echo " rc=$?")
  echo "ordinal 0: ${first:-none}"; echo "ordinal 1: ${second:-none}"
  case "$first|$second" in
    *"$name"*"|"*"rc=1") say "device-select layer OK on this driver: ordinal 0 shows $name, ordinal 1 none" ;;
    *) say "device-select layer check FAILED (see log): ordinal 0 -> ${first:-none}; ordinal 1 -> ${second:-none}" ;;
  esac
fi
if [ "${GPU_BENCH_PROBE_ONLY:-0}" = 1 ]; then say "probe only: done"; [ $ADAPTER_OK = 1 ]; exit; fi

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
