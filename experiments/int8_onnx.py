"""trtq's INT8 ONNX exports of one calibration: parity with the fake-quantized PyTorch model,
INT8 MAC coverage and lint, the onnxruntime target's accuracy, and onnxruntime CPU latency
against FP32.

    python experiments/int8_onnx.py --calibrated CAL --data ../shared/datasets/busi \\
        --split val --fake-quant-eval CAL/eval.json --fp32-eval FP32.json \\
        --out experiments/results/int8-onnx-litemedsam-busi.json \\
        [--quantize-static LABEL=DIR ...] [--work DIR] [--limit N]

CAL and its `trtq eval --calibrated` result come from experiments/w8a8_accuracy.sh (busi,
percentile observer); FP32.json is its FP32 `trtq eval`. Steps, each recorded under "steps":
1. `trtq export --calibrated CAL` (TensorRT target) and `trtq inspect --onnx` of both parts
   (lint, INT8 MAC coverage);
2. `trtq eval --backend onnxruntime` of that export with the fake-quant run as the reference
   (parity: mean mask IoU between the ONNX and the simulation);
3. `trtq export --calibrated CAL --target onnxruntime`, with and without `--float-attention`,
   and `trtq export` (FP32); `trtq eval` of the onnxruntime-target graph against FP32.json;
4. `experiments/int8_latency.py` on FP32, the three INT8 graphs and any --quantize-static
   folders (alternating rounds, 3 × 5 timed runs after 2 warm-ups, decoder with 1 box).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _steps import Steps, read_keys, run_and_save, without_provenance

EVAL_KEYS = ("miou", "instances", "images", "agreement_miou", "agreement_instances")
INSPECT_KEYS = ("int8_mac_coverage", "int8_mac_coverage_of_recipe", "lint_errors",
                "quantize_nodes", "dequantize_nodes")
EXPORTS = {  # variant label: (folder, trtq export flags after --calibrated CAL; None = FP32)
    "fp32": ("fp32", None),
    "trtq_int8_tensorrt": ("int8-tensorrt", []),
    "trtq_int8_onnxruntime": ("int8-onnxruntime", ["--target", "onnxruntime"]),
    "trtq_int8_onnxruntime_float_attention": ("int8-onnxruntime-float-attention",
                                              ["--target", "onnxruntime", "--float-attention"]),
}


def exports(model: str, calibrated: Path, work: Path, steps: Steps) -> dict[str, Path]:
    dirs = {}
    for label, (folder, flags) in EXPORTS.items():
        dirs[label] = work / folder
        cal = [] if flags is None else ["--calibrated", str(calibrated), *flags]
        steps.trtq("export", "--model", model, *cal, "--out", str(dirs[label]), "--force")
    return dirs


def measure(args, work: Path, steps: Steps) -> dict:
    dirs = exports(args.model, args.calibrated, work, steps)
    data = ["--model", args.model, "--data", str(args.data), "--split", args.split, "--backend",
            "onnxruntime"]
    data += ["--limit", str(args.limit)] if args.limit else []
    out: dict = {"inspect": {}}
    for part in ("encoder", "decoder"):
        path = work / f"inspect-{part}.json"
        steps.trtq("inspect", "--onnx", str(dirs["trtq_int8_tensorrt"] / f"{part}.onnx"),
                   "--out", str(path), "--force")
        out["inspect"][part] = read_keys(path, INSPECT_KEYS)
    parity, ort = work / "parity.json", work / "onnxruntime-target.json"
    steps.trtq("eval", *data, "--onnx-dir", str(dirs["trtq_int8_tensorrt"]), "--reference",
               str(args.fake_quant_eval), "--out", str(parity), "--force")
    steps.trtq("eval", *data, "--onnx-dir", str(dirs["trtq_int8_onnxruntime"]), "--reference",
               str(args.fp32_eval), "--out", str(ort), "--force")
    out["fake_quant"] = read_keys(args.fake_quant_eval, EVAL_KEYS)
    out["parity_tensorrt_target_vs_fake_quant"] = read_keys(parity, EVAL_KEYS)
    out["onnxruntime_target_vs_fp32"] = read_keys(ort, EVAL_KEYS)
    variants = [f"{label}={path}" for label, path in dirs.items()] + args.quantize_static
    latency = work / "latency.json"
    steps.script("int8_latency.py", *[a for v in variants for a in ("--variant", v)],
                 "--rounds", "3", "--iterations", "5", "--warmup", "2", "--out", str(latency))
    out["latency"] = without_provenance(latency)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="litemedsam", help="the calibrated model (trtq's name)")
    ap.add_argument("--calibrated", required=True, type=Path, help="a `trtq calibrate` folder")
    ap.add_argument("--data", required=True, type=Path, help="COCO dataset root")
    ap.add_argument("--split", default="val")
    ap.add_argument("--fake-quant-eval", required=True, type=Path,
                    help="`trtq eval --calibrated CAL` on the same split (the parity reference)")
    ap.add_argument("--fp32-eval", required=True, type=Path,
                    help="FP32 `trtq eval` on the same split (reference of the onnxruntime target)")
    ap.add_argument("--quantize-static", action="append", default=[], metavar="LABEL=DIR",
                    help="extra latency variants, e.g. experiments/ort_quantize_static.py outputs")
    ap.add_argument("--limit", type=int, help="first N images only (a smoke run)")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--work", type=Path, help="folder for the exports and raw JSON (default: temp)")
    args = ap.parse_args(argv)
    run_and_save(args, "int8onnx_", measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
