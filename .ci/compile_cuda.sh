#!/usr/bin/env bash
# Compile every csrc/cuda/*.cu with nvcc for sm_80 and sm_90, compile only (no GPU needed), with
# the defines torch's extension build adds (no implicit half/bfloat16 operators or conversions),
# so code that compiles here compiles in the real build (setup.py, make gpu-check) too.
# The CPU torch wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h, so an empty one
# is supplied from a temporary include directory. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || { echo "compile_cuda: nvcc not found" >&2; exit 1; }
TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
PY_INC=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
ABI=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
SHIM=$(mktemp -d)
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/c10/cuda/impl"
[ -f "$TORCH_DIR/include/c10/cuda/impl/cuda_cmake_macros.h" ] || : > "$SHIM/c10/cuda/impl/cuda_cmake_macros.h"
shopt -s nullglob
files=(csrc/cuda/*.cu)
[ ${#files[@]} -gt 0 ] || { echo "compile_cuda: no .cu files under csrc/cuda" >&2; exit 1; }
compile_one() {
  local f=$1
  echo "nvcc (sm_80, sm_90, compile only): $f"
  if ! "$NVCC" -c "$f" -o "$SHIM/$(basename "$f").o" -std=c++20 -O3 --expt-relaxed-constexpr \
    -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ \
    -D__CUDA_NO_HALF2_OPERATORS__ \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
    -I"$SHIM" -I"$TORCH_DIR/include" -I"$TORCH_DIR/include/torch/csrc/api/include" -I"$PY_INC" \
    -D_GLIBCXX_USE_CXX11_ABI=$ABI -DTORCH_EXTENSION_NAME=_C -Xcompiler -fPIC \
    -diag-suppress 20012,20014; then
    echo "compile_cuda: FAILED on $f" >&2
    return 1
  fi
}
export -f compile_one
export NVCC SHIM TORCH_DIR PY_INC ABI
# One nvcc per core: the files are independent, and nvcc is single-threaded.
printf '%s\0' "${files[@]}" | xargs -0 -n 1 -P "$(nproc)" bash -c 'compile_one "$0"' \
  || { echo "compile_cuda: FAILED" >&2; exit 1; }
echo "compile_cuda: ${#files[@]} CUDA source(s) compiled for sm_80 and sm_90"
