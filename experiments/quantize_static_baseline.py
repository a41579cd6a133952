"""onnxruntime's own `quantize_static` on trtq's FP32 LiteMedSAM export, as a baseline:
accuracy on busi/val (mIoU, mask agreement with the FP32 ONNX) and onnxruntime CPU latency
against FP32.

    python experiments/quantize_static_baseline.py --datasets ../shared/datasets \\
        --out experiments/results/quantize-static-litemedsam-cpu.json \\
        [--fp32-dir DIR --reference FP32_ORT_EVAL.json] [--work DIR]

Steps (each recorded under "steps"): `trtq export` (unless --fp32-dir), `trtq eval` of the FP32
ONNX in onnxruntime on busi/val (unless --reference), `experiments/ort_quantize_static.py` in
both modes (TensorRT-legal symmetric INT8 and uint8 activations; 32 busi/calib images, MinMax,
per-channel weights, Conv/MatMul/Gemm, float biases), `trtq eval` of each in onnxruntime with
the FP32 ONNX run as the reference, then `experiments/int8_latency.py` on FP32 and both graphs
(alternating rounds, 3 × 5 timed runs after 2 warm-ups, decoder with 1 box).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _steps import Steps, read_keys, run_and_save, without_provenance

MODES = {"symmetric_int8": "tensorrt", "uint8_activations": "uint8"}
EVAL_KEYS = ("miou", "instances", "images", "agreement_miou", "agreement_instances")


def measure(args, work: Path, steps: Steps) -> dict:
    busi = str(args.datasets / "busi")
    limit = ["--limit", str(args.limit)] if args.limit else []
    fp32 = args.fp32_dir or work / "fp32"
    if args.fp32_dir is None:
        steps.trtq("export", "--out", str(fp32), "--force")
    reference = args.reference or work / "fp32-ort.json"
    if args.reference is None:
        steps.trtq("eval", "--data", busi, "--split", "val", "--backend", "onnxruntime",
                   "--onnx-dir", str(fp32), *limit, "--out", str(reference), "--force")
    out = {"fp32": {"onnx_dir": str(fp32), "eval": read_keys(reference, EVAL_KEYS)}}
    variants = ["--variant", f"fp32={fp32}"]
    for label, mode in MODES.items():
        qdir, result = work / label, work / f"{label}-ort.json"
        steps.script("ort_quantize_static.py", "--fp32-dir", str(fp32), "--calib-data", busi,
                     "--split", "calib", "--num-images", str(args.num_images), "--mode", mode,
                     "--out", str(qdir), "--force")
        steps.trtq("eval", "--data", busi, "--split", "val", "--backend", "onnxruntime",
                   "--onnx-dir", str(qdir), "--reference", str(reference), *limit,
                   "--out", str(result), "--force")
        out[label] = {"mode": mode, "eval": read_keys(result, EVAL_KEYS)}
        variants += ["--variant", f"{label}={qdir}"]
        print(f"{label}: {out[label]['eval']}", flush=True)
    latency = work / "latency.json"
    steps.script("int8_latency.py", *variants, "--rounds", "3", "--iterations", "5",
                 "--warmup", "2", "--out", str(latency))
    out["latency"] = without_provenance(latency)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", required=True, type=Path,
                    help="folder holding busi/ (COCO format, splits calib and val)")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--fp32-dir", type=Path, help="an existing FP32 `trtq export` folder")
    ap.add_argument("--reference", type=Path,
                    help="an existing `trtq eval` of that FP32 ONNX on busi/val (onnxruntime)")
    ap.add_argument("--num-images", type=int, default=32, help="busi/calib images")
    ap.add_argument("--limit", type=int, help="evaluate the first N busi/val images only (a smoke "
                    "run; the published figures use the whole split)")
    ap.add_argument("--work", type=Path, help="folder for the graphs and raw JSON (default: temp)")
    args = ap.parse_args(argv)
    if (args.fp32_dir is None) != (args.reference is None):
        ap.error("--fp32-dir and --reference go together (the reference must be that export's)")
    run_and_save(args, "qsbase_", measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
