"""INT8 that is faster: the onnxruntime target's lowering, `trtq autoquant`, and the
TensorRT-target graph, measured side by side on LiteMedSAM (busi).

    python experiments/int8_faster.py --data ../shared/datasets/busi \\
        --out experiments/results/int8-faster-litemedsam-busi.json [--work DIR] [--limit N]
        [--reuse-calibrations]

Everything runs through the trtq CLI as a user runs it (commands under "steps"):
1. `trtq calibrate` w8a8 and w8a8-ptq4sam on busi/calib (32 images; TensorRT target, one
   calibration serves both targets), and `trtq autoquant` (w8a8-ptq4sam, onnxruntime backend,
   --min-agreement 0.98: the first 32 calib images calibrate, the other 32 measure agreement);
2. `trtq export`: FP32; each calibration for the onnxruntime target (AGQ lowered, shipped as
   onnxruntime's optimized graph) and for the TensorRT target; the autoquant folder for the
   onnxruntime target;
3. `trtq eval --backend onnxruntime` on busi/val: FP32 (the reference) and every onnxruntime
   target export (mIoU, agreement with FP32);
4. `trtq inspect --onnx ... --predict` of the TensorRT-target exports (lint, MAC coverage of the
   recipe, the predicted TensorRT execution);
5. `experiments/int8_latency.py --session plain`: every file in a plain default
   `onnxruntime.InferenceSession`, alternating rounds in one process, ratios to FP32.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from _steps import Steps, read_keys, run_and_save, without_provenance

EVAL_KEYS = ("miou", "instances", "images", "agreement_miou", "agreement_instances")
INSPECT_KEYS = ("int8_mac_coverage", "int8_mac_coverage_of_recipe", "lint_errors",
                "quantize_nodes", "dequantize_nodes", "prediction")
RECIPES = ("w8a8", "w8a8-ptq4sam")


def _calibrate(args, work: Path, steps: Steps) -> dict[str, Path]:
    cals = {}
    for recipe in RECIPES:
        cals[recipe] = work / f"cal-{recipe}"
        if args.reuse_calibrations and (cals[recipe] / "quant_state.pt.json").is_file():
            steps.lines.append(f"# reused {cals[recipe]} (an earlier run's trtq calibrate)")
            continue
        steps.trtq("calibrate", "--recipe", recipe, "--calib-data", str(args.data), "--split",
                   "calib", "--num-images", "32", "--out", str(cals[recipe]), "--force")
    cals["autoquant"] = work / "autoquant"
    if args.reuse_calibrations and (cals["autoquant"] / "autoquant.json").is_file():
        steps.lines.append(f"# reused {cals['autoquant']} (an earlier run's trtq autoquant)")
        return cals
    steps.trtq("autoquant", "--recipe", "w8a8-ptq4sam", "--calib-data", str(args.data),
               "--split", "calib", "--num-images", "32", "--held-out", "32", "--backend",
               "onnxruntime", "--min-agreement", str(args.min_agreement), "--jobs", "2",
               "--out", str(cals["autoquant"]), "--force")
    return cals


def _export_or_error(steps: Steps, *args: str) -> str | None:
    """A `trtq export` whose refusal is a result, not a crash: None, or trtq's error line."""
    steps.lines.append(shlex.join(["trtq", "-q", "export", *args]))
    print("+", steps.lines[-1], flush=True)
    done = subprocess.run([sys.executable, "-m", "trtq", "-q", "export", *args],
                          capture_output=True, text=True)
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.startswith("trtq: error")]
    return lines[-1] if lines else f"exit status {done.returncode}"


def _exports(cals: dict[str, Path], work: Path, steps: Steps) -> tuple[dict, dict]:
    dirs, failed = {"fp32": work / "fp32"}, {}
    steps.trtq("export", "--out", str(dirs["fp32"]), "--force")
    for recipe in RECIPES:
        for target in ("onnxruntime", "tensorrt"):
            label = f"{recipe}-{target}"
            error = _export_or_error(steps, "--calibrated", str(cals[recipe]), "--target",
                                     target, "--logquant", "onnx", "--out",
                                     str(work / label), "--force")
            if error:
                failed[label] = error
            else:
                dirs[label] = work / label
    dirs["autoquant-onnxruntime"] = work / "autoquant-onnxruntime"
    steps.trtq("export", "--calibrated", str(cals["autoquant"]), "--target", "onnxruntime",
               "--out", str(dirs["autoquant-onnxruntime"]), "--force")
    return dirs, failed


def measure(args, work: Path, steps: Steps) -> dict:
    cals = _calibrate(args, work, steps)
    dirs, failed = _exports(cals, work, steps)
    limit = ["--limit", str(args.limit)] if args.limit else []
    evals = {}
    reference = work / "eval-fp32.json"
    for label in ("fp32", *(f"{r}-onnxruntime" for r in RECIPES), "autoquant-onnxruntime"):
        out = work / f"eval-{label}.json"
        ref = [] if label == "fp32" else ["--reference", str(reference)]
        steps.trtq("eval", "--data", str(args.data), "--split", "val", "--backend",
                   "onnxruntime", "--onnx-dir", str(dirs[label]), *ref, *limit,
                   "--out", str(out), "--force")
        evals[label] = read_keys(out, EVAL_KEYS)
    inspect = {}
    for recipe in RECIPES:
        if f"{recipe}-tensorrt" not in dirs:
            continue
        for part in ("encoder", "decoder"):
            out = work / f"inspect-{recipe}-{part}.json"
            steps.trtq("inspect", "--onnx", str(dirs[f"{recipe}-tensorrt"] / f"{part}.onnx"),
                       "--predict", "--out", str(out), "--force")
            inspect[f"{recipe}-tensorrt/{part}"] = read_keys(out, INSPECT_KEYS)
    latency = work / "latency.json"
    order = ("fp32", "w8a8-onnxruntime", "w8a8-ptq4sam-onnxruntime", "autoquant-onnxruntime",
             "w8a8-tensorrt", "w8a8-ptq4sam-tensorrt")
    order = [k for k in order if k in dirs]
    steps.script("int8_latency.py", *(a for k in order for a in ("--variant", f"{k}={dirs[k]}")),
                 "--session", "plain", "--iterations", str(args.iterations), "--rounds",
                 str(args.rounds), "--out", str(latency))
    autoquant = json.loads((cals["autoquant"] / "autoquant.json").read_text(encoding="utf-8"))
    return {"export_failed": failed, "eval": evals, "inspect": inspect,
            "latency": without_provenance(latency),
            "autoquant": {k: autoquant[k] for k in ("summary", "chosen", "verification",
                                                    "groups")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="the busi COCO root")
    ap.add_argument("--min-agreement", type=float, default=0.98)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, help="first N val images only (a smoke run)")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--work", type=Path, help="folder for the exports (default: temporary)")
    ap.add_argument("--reuse-calibrations", action="store_true",
                    help="keep the calibration folders already in --work (autoquant reruns)")
    run_and_save(ap.parse_args(), "trtq-int8-faster-", measure)


if __name__ == "__main__":
    main()
