"""LogQuant CUDA kernel harness: correctness against the PyTorch reference and bandwidth.

    python experiments/logquant_kernel.py --out experiments/results/logquant-kernel.json \\
        [--data ../shared/datasets/busi --images 1] [--mib 256] [--archs 90]

Builds the kernel library with nvcc (`trtq.plugins.kernel`), then on the current CUDA GPU:
1. compares it with `trtq.calib.logquant.log_fake_quant` (the quantizer used in calibration,
   export and onnxruntime) on random values, values sitting exactly on and next to every
   threshold, softmax rows, and (with --data) LiteMedSAM's real post-softmax tensors, in FP32
   and FP16, for bits 4/6/8 and τ 1/2/4; unaligned views and odd lengths take the scalar path;
2. times it (8 bits, τ 1/2/4) on `--mib` MiB of FP32 and FP16 softmax rows with CUDA events
   (median of 20 runs after 5 warm-ups) against a device-to-device copy of the same bytes
   measured in the same run, and reports achieved bandwidth (bytes read + written per second)
   and its share of the copy's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _provenance import provenance, save_results

CASES = [(bits, tau) for bits in (4, 6, 8) for tau in (1, 2, 4)]
# The plugin receives `scale` as a float32 ONNX attribute, so probes use a float32 value: with
# the float64 0.37 the Python tables (built from the float64 scale) differ from the kernel's.
PROBE_SCALE = 0.3700000047683716  # float32(0.37)


def reference(x, bits: int, tau: int, scale: float):
    from trtq.calib.logquant import log_fake_quant

    return log_fake_quant(x, bits, tau, scale)


def run_kernel(lib, x, bits: int, tau: int, scale: float, out=None):
    import torch

    y = torch.empty_like(x) if out is None else out
    dtype = {torch.float32: "float32", torch.float16: "float16"}[x.dtype]
    lib.launch(dtype, x.data_ptr(), y.data_ptr(), x.numel(), lib.params(bits, tau, scale),
               torch.cuda.current_stream().cuda_stream)
    return y


def threshold_probe(bits: int, tau: int, scale: float, device):
    """Every threshold, its float neighbours, the levels, 0, negatives and values above s."""
    import numpy as np
    import torch

    from trtq.calib.logquant import levels, thresholds

    th = thresholds(bits, tau, scale)
    th = th[th > 0]
    points = [th, np.nextafter(th, np.float32(0)), np.nextafter(th, np.float32(np.inf)),
              levels(bits, tau, scale), np.array([0, -1e-3, -5, scale, 2 * scale, 1e30,
                                                  1e-38, 1e-45], np.float32)]
    return torch.from_numpy(np.concatenate(points).astype(np.float32)).to(device)


def mismatches(lib, x, bits: int, tau: int, scale: float) -> dict:
    """Compare kernel and reference on `x`, also on an unaligned view of odd length."""
    want = reference(x, bits, tau, scale)
    got = run_kernel(lib, x, bits, tau, scale)
    view = x.flatten()[1:]
    got_view = run_kernel(lib, view, bits, tau, scale)
    diff = (got.float() - want.float()).abs()
    levels_off = int((got != want).sum()) + int((got_view != want.flatten()[1:]).sum())
    return {"elements": x.numel(), "max_abs_diff": float(diff.max()) if diff.numel() else 0.0,
            "mismatches": levels_off}


def test_tensors(device, data: str | None, images: int) -> dict:
    """name → FP32 tensor on `device`: random, softmax rows, and real post-softmax tensors."""
    import torch

    gen = torch.Generator().manual_seed(0)
    tensors = {"uniform": torch.rand(1_000_003, generator=gen),
               "softmax": torch.softmax(torch.randn(512, 1027, generator=gen) * 4, dim=-1)}
    if data:
        import twin_error as te  # same folder (this script's sys.path[0])

        from trtq.data.calibration import calibration_samples
        from trtq.models import load_model

        recorded = te.record_tensors(load_model("litemedsam"),
                                     calibration_samples(data, "calib", images),
                                     {"post-softmax": ("*.av_matmul",)})["post-softmax"]
        for i, t in enumerate(recorded):
            tensors[f"litemedsam_softmax_{i}"] = t.float()
    return {k: v.to(device) for k, v in tensors.items()}


def check(lib, device, data=None, images=1) -> dict:
    import torch

    results = {}
    for name, x in test_tensors(device, data, images).items():
        scale = float(x.max())
        for bits, tau in CASES:
            for dtype in (torch.float32, torch.float16):
                xs = x.to(dtype)
                results[f"{name}/{dtype}/b{bits}t{tau}"] = mismatches(lib, xs, bits, tau, scale)
    scale = PROBE_SCALE
    for bits, tau in CASES:
        probe = threshold_probe(bits, tau, scale, device)
        results[f"thresholds/b{bits}t{tau}"] = mismatches(lib, probe, bits, tau, scale)
    return results


def _time(fn, repeats: int = 20, warmup: int = 5) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def bandwidth(lib, device, mib: int) -> dict:
    """Kernel vs copy bandwidth per dtype and τ (8 bits, scale 1), same buffers, same run."""
    import torch

    out = {}
    for dtype in (torch.float32, torch.float16):
        n = mib * (1 << 20) // torch.empty((), dtype=dtype).element_size()
        x = torch.softmax(torch.randn(n // 1024, 1024, device=device), dim=-1).to(dtype)
        y = torch.empty_like(x)
        moved = 2 * x.numel() * x.element_size()
        copy_s = _time(lambda x=x, y=y: y.copy_(x))
        for tau in (1, 2, 4):
            kernel_s = _time(lambda x=x, y=y, tau=tau: run_kernel(lib, x, 8, tau, 1.0, out=y))
            out[f"{str(dtype).replace('torch.', '')}/tau{tau}"] = {
                "bytes_moved": moved, "copy_gbps": moved / copy_s / 1e9,
                "kernel_gbps": moved / kernel_s / 1e9, "share_of_copy": copy_s / kernel_s,
                "kernel_ms": kernel_s * 1e3, "copy_ms": copy_s * 1e3}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data", help="COCO dataset root: real LiteMedSAM softmax tensors")
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--mib", type=int, default=256, help="MiB per bandwidth buffer")
    p.add_argument("--archs", nargs="+", help="SM list for nvcc (default: trtq's list)")
    p.add_argument("--library", help="an already built kernel library")
    args = p.parse_args(argv)
    block = provenance()
    import torch

    from trtq.plugins.kernel import DEFAULT_ARCHS, KernelLibrary, build_kernel_library

    if not torch.cuda.is_available():
        print("no CUDA GPU: the harness needs one", file=sys.stderr)
        return 2
    start = time.perf_counter()
    path = args.library or build_kernel_library(
        Path(tempfile.mkdtemp()) / "liblogquant_kernel.so", tuple(args.archs or DEFAULT_ARCHS))
    build_s = time.perf_counter() - start
    lib, device = KernelLibrary(path), torch.device("cuda")
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "nvcc_build_seconds": build_s, "correctness": check(lib, device, args.data,
                                                                  args.images),
               "bandwidth": bandwidth(lib, device, args.mib)}
    bad = {k: v for k, v in results["correctness"].items() if v["mismatches"]}
    results["cases"], results["cases_with_mismatches"] = len(results["correctness"]), len(bad)
    save_results(args.out, results, block)
    print(f"{results['device']}: {results['cases']} cases, {len(bad)} with mismatches")
    for dtype, b in results["bandwidth"].items():
        print(f"{dtype}: kernel {b['kernel_gbps']:.0f} GB/s ({b['kernel_ms']:.3f} ms), copy "
              f"{b['copy_gbps']:.0f} GB/s: {100 * b['share_of_copy']:.0f}% of copy")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
