"""Plan size and build time of LiteMedSAM's TensorRT engines, built by whichever TensorRT is
installed (TensorRT-RTX builds ahead of time on a CPU; no engine is run).

    python experiments/rtx_plans.py --variant fp16=FP32_EXPORT_DIR [--variant int8=QDQ_DIR] \\
        --out experiments/results/rtx-plans-litemedsam.json

Each variant is PRECISION=DIR with DIR a `trtq export` folder: fp16 builds from the FP32 export
(strongly typed builders convert it to FP16 ONNX first), int8 from a Q/DQ export. The build is
`trtq.engines.build.build_engine` with default options, the same call as `trtq build` and as
tests/engines/test_litemedsam_engines.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _provenance import provenance, save_results


def build(precision: str, onnx_dir: Path, out_dir: Path) -> dict:
    from trtq.engines.build import BuildOptions, build_engine
    from trtq.engines.tensorrt_api import import_tensorrt
    from trtq.engines.versions import module_version

    trt = import_tensorrt()
    rows = {}
    for part in ("encoder", "decoder"):
        source = onnx_dir / f"{part}.onnx"
        result = build_engine(source, out_dir / f"{part}.{precision}.engine",
                              BuildOptions(precision=precision), trt=trt)
        rows[part] = {"plan_bytes": result.size_bytes, "build_seconds": result.seconds,
                      "onnx_bytes": source.stat().st_size, "tensorrt": module_version(trt).label,
                      "ahead_of_time": result.record["ahead_of_time"],
                      "strongly_typed": result.record["build"]["strongly_typed"]}
        print(f"{part} {precision}: {result.size_bytes / 1e6:.1f} MB in {result.seconds:.1f} s",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, metavar="PRECISION=DIR")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    variants = {}
    for item in args.variant:
        precision, sep, folder = item.partition("=")
        if not sep or precision not in ("fp16", "int8", "fp32"):
            ap.error(f"{item!r} is not PRECISION=DIR with PRECISION fp16, int8 or fp32")
        variants[precision] = Path(folder)
    block = provenance()
    with tempfile.TemporaryDirectory(prefix="rtxplans_") as tmp:
        results = {p: build(p, d, Path(tmp)) for p, d in variants.items()}
    save_results(args.out, {"variants": {p: str(d) for p, d in variants.items()},
                            "plans": results}, block)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
