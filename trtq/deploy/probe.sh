#!/bin/sh
# trtq deploy: read-only facts about a Jetson, one KEY=VALUE per line. Run as `sh -s DIR`
# (DIR: the deploy folder, for its free disk space). Changes nothing on the device.
# TRTQ_DEVICE_ROOT prefixes the system files (empty on a real device; tests point it at a
# stand-in root).
root="${TRTQ_DEVICE_ROOT:-}"
dir="${1:-.}"

one_line() { tr -d '\000' < "$1" 2>/dev/null | head -n 1; }
find_tool() {  # first executable among PATH and the given absolute paths (under $root)
  name="$1"; shift
  for candidate in "$@"; do
    if [ -x "$root$candidate" ]; then echo "$root$candidate"; return; fi
  done
  command -v "$name" 2>/dev/null || true
}

echo "probe_version=1"
echo "arch=$(uname -m)"
echo "model=$(one_line "$root/proc/device-tree/model")"
echo "l4t=$(one_line "$root/etc/nv_tegra_release")"
header="$root/usr/include/aarch64-linux-gnu/NvInferVersion.h"
[ -f "$header" ] || header="$root/usr/include/NvInferVersion.h"
if [ -f "$header" ]; then
  trt=""
  for part in MAJOR MINOR PATCH BUILD; do
    value=$(sed -n "s/^#define NV_TENSORRT_$part \([0-9]*\).*/\1/p" "$header" | head -n 1)
    trt="$trt${trt:+.}$value"
  done
  echo "tensorrt_header=$trt"
fi
echo "trtexec=$(find_tool trtexec /usr/src/tensorrt/bin/trtexec)"
echo "tegrastats=$(find_tool tegrastats /usr/bin/tegrastats)"
echo "nvcc=$(find_tool nvcc /usr/local/cuda/bin/nvcc)"
echo "cmake=$(command -v cmake 2>/dev/null || true)"
# trtq: on PATH, else pip's --user folder (not on PATH for a non-login ssh command)
trtq=$(find_tool trtq /usr/local/bin/trtq)
[ -z "$trtq" ] && [ -x "$HOME/.local/bin/trtq" ] && trtq="$HOME/.local/bin/trtq"
echo "trtq=$trtq"
echo "rsync=$(command -v rsync 2>/dev/null || true)"
echo "sha256sum=$(command -v sha256sum 2>/dev/null || true)"
# power mode and clock lock (benchmarks mean little without them); multi-line output joined by |
nvpmodel=$(find_tool nvpmodel /usr/sbin/nvpmodel /usr/bin/nvpmodel)
[ -n "$nvpmodel" ] && echo "nvpmodel_q=$("$nvpmodel" -q 2>&1 | tr '\n' '|')"
clocks=$(find_tool jetson_clocks /usr/bin/jetson_clocks /usr/sbin/jetson_clocks)
if [ -n "$clocks" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "jetson_clocks_show=$("$clocks" --show 2>&1 | tr '\n' '|')"
  else  # only where sudo needs no password; never prompts
    echo "jetson_clocks_show=$(sudo -n "$clocks" --show 2>&1 | tr '\n' '|')"
  fi
fi
echo "mem_available_kib=$(sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' "$root/proc/meminfo" 2>/dev/null)"
echo "mem_total_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' "$root/proc/meminfo" 2>/dev/null)"
# free space where the deploy folder is (or would be): its nearest existing ancestor
probe="$dir"
while [ ! -d "$probe" ] && [ "$probe" != "." ] && [ "$probe" != "/" ]; do
  probe=$(dirname "$probe")
done
echo "disk_free_kib=$(df -Pk "$probe" 2>/dev/null | awk 'NR == 2 {print $4}')"
echo "probe_done=1"
