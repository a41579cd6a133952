#!/usr/bin/env bash
# Build trtq's LogQuant TensorRT plugin on a Jetson Orin with JetPack 6.1 or later (TensorRT
# 10.3, CUDA 12.6, SM 8.7) into OUT_DIR, then print the trtexec line that uses it.
#
# NOT RUN ON A JETSON by trtq's developers: nobody here has one. It was run on x86 against
# TensorRT's public headers laid out as JetPack lays them out (/usr/include/aarch64-linux-gnu,
# /usr/lib/aarch64-linux-gnu) with a stand-in libnvinfer; please report what happens on a board.
#
# JetPack 5.x (TensorRT 8.5) and 6.0 (TensorRT 8.6) have no IPluginV3: export with
# `trtq export --logquant onnx` (standard ops, no plugin) there instead.
#
# Usage: build_jetson.sh OUT_DIR        (needs cmake >= 3.18 and the JetPack CUDA/TensorRT dev
#                                        packages: sudo apt install nvidia-jetpack cmake)
# Overrides: TENSORRT_ROOT (default /usr), NVCC (default /usr/local/cuda/bin/nvcc).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
trt_root="${TENSORRT_ROOT:-/usr}"
nvcc="${NVCC:-/usr/local/cuda/bin/nvcc}"

[[ -x "$nvcc" ]] || { echo "no nvcc at $nvcc: sudo apt install nvidia-jetpack (or set NVCC)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "cmake is missing: sudo apt install cmake" >&2; exit 1; }
version_h="$(ls "$trt_root"/include/aarch64-linux-gnu/NvInferVersion.h "$trt_root"/include/NvInferVersion.h \
             2>/dev/null | head -n1 || true)"
[[ -n "$version_h" ]] || { echo "TensorRT headers not found under $trt_root/include: sudo apt install libnvinfer-dev" >&2; exit 1; }
major="$(sed -nE 's/^#define (NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE) +([0-9]+).*/\2/p' "$version_h" | head -n1)"
[[ -n "$major" ]] || { echo "cannot read TensorRT's major version from $version_h" >&2; exit 1; }
if (( major < 10 )); then
  echo "TensorRT $major.x has no IPluginV3 (JetPack 5 / 6.0): use 'trtq export --logquant onnx'" >&2
  exit 1
fi

build="$out/build"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=87 \
      -DCMAKE_CUDA_COMPILER="$nvcc" -DTENSORRT_ROOT="$trt_root"
cmake --build "$build" -j "$(nproc)"
cp "$build"/liblogquant_kernel.so "$build"/liblogquant_trt.so "$build"/liblogquant_trt_dynamic.so "$out"/

cat <<EOF

Built in $out (TensorRT $major.x headers from $version_h, SM 8.7):
  liblogquant_trt.so          registers LogQuant when opened (trtexec --staticPlugins)
  liblogquant_trt_dynamic.so  for IPluginRegistry::loadLibrary (trtq build --plugins, trtexec --dynamicPlugins)
Load one of the two per process, not both. Build an engine from a --logquant plugin export:
  /usr/src/tensorrt/bin/trtexec --onnx=model.onnx --staticPlugins=$out/liblogquant_trt.so --saveEngine=model.engine
EOF
