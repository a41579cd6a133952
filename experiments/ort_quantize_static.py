"""Baseline: quantize trtq's FP32 ONNX pair with onnxruntime's own `quantize_static`.

Reads DIR/encoder.onnx and DIR/decoder.onnx (from `trtq export --model ... --out DIR`),
calibrates them with MinMax on a calibration split, and writes a QDQ INT8 pair (+ sidecars)
into OUT_DIR that `trtq eval --backend onnxruntime --onnx-dir OUT_DIR` can load.

Modes (both QDQ, per-channel INT8 symmetric weights, Conv/MatMul/Gemm, float biases):
  tensorrt: INT8 symmetric activations (zero point 0), which TensorRT's parser accepts;
  uint8:    UINT8 asymmetric activations, onnxruntime's usual CPU choice.

Usage: python experiments/ort_quantize_static.py --fp32-dir DIR --calib-data ROOT
           --split calib --num-images 32 --mode {tensorrt,uint8} --out OUT_DIR [--force]

Each output's sidecar carries a "provenance" block (command, commit, date, machine); the
measured figures come from experiments/quantize_static_baseline.py, which runs this script.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from _provenance import provenance
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from trtq.artifacts import (
    atomic_output,
    check_writable,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from trtq.data.calibration import calibration_samples
from trtq.errors import TrtqError
from trtq.eval.backends import DECODER_FILE, ENCODER_FILE, preprocess_from_record
from trtq.export.onnxruntime_session import check_onnx, create_session

log = logging.getLogger("ort_quantize_static")

COPIED_FIELDS = ("model", "opset", "preprocess", "part", "input_shapes", "output_names",
                 "dynamic_axes")
OP_TYPES = ["Conv", "MatMul", "Gemm"]
MODES = {
    # TensorRT accepts only zero point 0 and no INT32 (quantized-bias) DequantizeLinear.
    "tensorrt": dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                     extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                    "QuantizeBias": False}),
    "uint8": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                  extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                 "QuantizeBias": False}),
}


class FeedReader(CalibrationDataReader):
    """Hands onnxruntime's calibrator a fixed list of input feeds, one per `get_next`."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self._it = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def __len__(self) -> int:
        return len(self.feeds)

    def rewind(self) -> None:
        self._it = iter(self.feeds)


def calibration_feeds(fp32_dir: Path, enc_meta: dict, root: str, split: str, num_images: int):
    """Encoder feeds (preprocessed images) and decoder feeds (FP32 embeddings + boxes)."""
    pre = preprocess_from_record(enc_meta)
    samples = calibration_samples(root, split, num_images)
    if not samples:
        sys.exit(f"no calibration images in {root} (split {split})")
    encoder = create_session(fp32_dir / ENCODER_FILE)
    enc_feeds, dec_feeds = [], []
    for sample in samples:
        image = pre.image(sample.rgb)
        enc_feeds.append({"image": image})
        if sample.boxes is None or len(sample.boxes) == 0:
            continue  # no prompts: calibrates the encoder only
        emb = encoder.run(None, {"image": image})[0]
        dec_feeds.append({"image_embeddings": emb,
                          "boxes": pre.boxes(sample.boxes, sample.rgb.shape[:2])})
    if not dec_feeds:
        sys.exit("no calibration image has box prompts; the decoder cannot be calibrated")
    return len(samples), enc_feeds, dec_feeds


def preprocess_graph(src: Path, work: Path) -> tuple[Path, str | None]:
    """onnxruntime's recommended shape inference + optimization; falls back to `src`."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / f"pre_{src.name}"
    try:
        quant_pre_process(str(src), str(out))
        check_onnx(out)
        return out, None
    except Exception as exc:  # any failure here just means "skip it"
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        log.warning("quant_pre_process failed on %s (%s); quantizing the raw graph", src, reason)
        return src, reason


def quantize_part(src: Path, dst: Path, feeds: list[dict], mode: str, force: bool,
                  pre_process: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="ortq_") as work:
        model_in, pre_error = (preprocess_graph(src, Path(work)) if pre_process
                               else (src, "skipped (--no-pre-process)"))
        with atomic_output(dst, force) as tmp:
            quantize_static(str(model_in), str(tmp), FeedReader(feeds),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=OP_TYPES,
                            per_channel=True, reduce_range=False,
                            calibrate_method=CalibrationMethod.MinMax, **MODES[mode])
            check_onnx(tmp)
            create_session(tmp)  # refuse to write a graph onnxruntime cannot load
    ops = [n.op_type for n in onnx.load(str(dst), load_external_data=False).graph.node]
    return {"quantize_nodes": ops.count("QuantizeLinear"),
            "dequantize_nodes": ops.count("DequantizeLinear"),
            "pre_process": "ok" if pre_error is None else f"failed: {pre_error}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32-dir", required=True, type=Path)
    ap.add_argument("--calib-data", required=True)
    ap.add_argument("--split", default="calib")
    ap.add_argument("--num-images", type=int, default=32)
    ap.add_argument("--mode", choices=sorted(MODES), required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no-pre-process", action="store_true",
                    help="skip onnxruntime's quant_pre_process (shape inference + optimization)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    parts = {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}
    metas = {part: read_sidecar(args.fp32_dir / name) for part, name in parts.items()}
    for part, meta in metas.items():
        if meta.get("precision") != "fp32":
            sys.exit(f"{args.fp32_dir / parts[part]} is {meta.get('precision')!r}, not fp32")
    for name in parts.values():  # refuse before any work if an output exists
        check_writable(args.out / name, args.force)
        check_writable(sidecar_path(args.out / name), args.force)

    block = provenance()  # stored in each output's sidecar: how the graph was made
    n, enc_feeds, dec_feeds = calibration_feeds(args.fp32_dir, metas["encoder"],
                                                args.calib_data, args.split, args.num_images)
    feeds = {"encoder": enc_feeds, "decoder": dec_feeds}
    # TensorRT-mode graphs are lint-clean for TensorRT; `trtq inspect` only accepts that target.
    target = "tensorrt" if args.mode == "tensorrt" else "onnxruntime"
    for part, name in parts.items():
        src, dst = args.fp32_dir / name, args.out / name
        log.info("quantizing the %s (%s mode, %d calibration feeds)", part, args.mode,
                 len(feeds[part]))
        record = quantize_part(src, dst, feeds[part], args.mode, args.force,
                               not args.no_pre_process)
        meta = metas[part]
        extra = {k: meta[k] for k in COPIED_FIELDS if k in meta}
        extra.update(precision="int8", target=target, quantizer="onnxruntime.quantize_static",
                     mode=args.mode, calib_images=n, calib_split=args.split,
                     calib_feeds=len(feeds[part]), provenance=block, **record)
        write_sidecar(dst, "onnx", inputs={"fp32_onnx": meta["sha256"]}, extra=extra,
                      force=True)
        print(f"{part}: {dst} ({record['quantize_nodes']} QuantizeLinear, "
              f"{record['dequantize_nodes']} DequantizeLinear; "
              f"quant_pre_process {record['pre_process']})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TrtqError as exc:  # user-facing: one line, no traceback (like the trtq CLI)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
