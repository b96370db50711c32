#!/usr/bin/env bash
# Provisions the GPU runtime for `facebatch classify --device cuda` from PyPI, pinned:
# onnxruntime-gpu (its own libonnxruntime plus the CUDA provider) and the NVIDIA libraries
# that provider loads (CUDA 13, cuDNN 9). Builds facebatch with the `cuda` feature and
# writes .cache/cuda-env.sh, which points facebatch at that runtime:
#
#   scripts/setup-cuda.sh && . .cache/cuda-env.sh
#   target/release/facebatch classify PHOTOS --out labels.parquet --device cuda
#
# Needs an NVIDIA driver that supports CUDA 13 (`nvidia-smi`), about 3 GB of disk, and PyPI.
# On a machine without a GPU everything installs, and `--device cuda` then stops with one
# clear error (exit 2). See docs/operations.md, "GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${CUDA_VENV:-.cache/cuda-venv}
pins=(
  onnxruntime-gpu==1.31.1
  nvidia-cuda-runtime==13.5.37
  nvidia-cublas==13.10.0.20
  nvidia-curand==10.4.5.25
  nvidia-cufft==12.5.0.14
  nvidia-cuda-nvrtc==13.5.37
  nvidia-nvjitlink==13.5.37
  nvidia-cudnn-cu13==9.28.1.4
)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# --no-deps: exactly these wheels, nothing resolved behind our back.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: "${pins[@]}"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
lib="$site/onnxruntime/capi/libonnxruntime.so.1.31.1"
[ -f "$lib" ] || { echo "setup-cuda: $lib not found after install" >&2; exit 1; }
[ -f "$site/onnxruntime/capi/libonnxruntime_providers_cuda.so" ] || {
  echo "setup-cuda: the CUDA provider is missing from onnxruntime-gpu" >&2; exit 1; }
libdirs=$(find "$site/nvidia" -type d -name lib | sort | paste -sd: -)
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$PWD" "$(basename "$1")"); }
cat > .cache/cuda-env.sh <<ENV
# Written by scripts/setup-cuda.sh: source it before facebatch --device cuda.
export FACEBATCH_ORT_LIB=$(abs "$lib")
export LD_LIBRARY_PATH=$(for d in ${libdirs//:/ }; do printf '%s:' "$(abs "$d/x" | sed 's#/x$##')"; done)$(dirname "$(abs "$lib")")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
ENV
cargo build --release --locked --features cuda
echo "setup-cuda: ready; run: . .cache/cuda-env.sh" >&2
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
else
  echo "setup-cuda: no nvidia-smi here: --device cuda will report that no GPU is usable" >&2
fi
