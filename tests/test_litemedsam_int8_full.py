"""Slow: W8A8 LiteMedSAM over the full busi val split, calibrated on busi/calib (32 images).

Checks the deployable recipe's accuracy against the FP32 model and the INT8 ONNX (TensorRT
target, run by onnxruntime) against the fake-quantized PyTorch model.
experiments/w8a8_accuracy.sh produces the same figures for both datasets and two observers, and
experiments/int8_onnx.py the ONNX parity.
"""

from __future__ import annotations

import json

import pytest

from trtq.cli import main

pytestmark = pytest.mark.slow

# The README's claims (docs/results.md "Measured: W8A8"; experiments/results/w8a8-litemedsam.json
# and int8-onnx-litemedsam-busi.json): equal to them, never looser.
MAX_MIOU_DROP = 0.005  # measured 0.0023 (0.8539 → 0.8516)
MIN_AGREEMENT = 0.95  # measured 0.955 (0.955-0.958 under float32-rounding input noise)
MIN_ORT_PARITY = 0.97  # measured 0.9785; goal 0.99 missed, see docs/results.md (parity-chaos)


def _eval(busi, out, *extra) -> dict:
    assert main(["eval", "--data", str(busi), "--split", "val", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_w8a8_full_busi_val(busi, tmp_path):
    cal = tmp_path / "cal"
    assert main(["calibrate", "--calib-data", str(busi), "--split", "calib", "--num-images",
                 "32", "--out", str(cal)]) == 0
    fp32 = _eval(busi, tmp_path / "fp32.json")
    fq = _eval(busi, tmp_path / "w8a8.json", "--calibrated", str(cal),
               "--reference", str(tmp_path / "fp32.json"))
    assert fq["instances"] == fp32["instances"] == 164
    assert fq["miou"] > fp32["miou"] - MAX_MIOU_DROP
    assert fq["agreement_miou"] > MIN_AGREEMENT
    onnx_dir = tmp_path / "int8"
    assert main(["export", "--calibrated", str(cal), "--out", str(onnx_dir)]) == 0
    for part, cuts in (("encoder", 100), ("decoder", 50)):  # 103 and 54 quantizer sites
        forced = json.loads((onnx_dir / f"{part}.onnx.json").read_text())["forced_parity"]
        assert forced["cuts"] >= cuts and forced["code_mismatch"] < 1e-3
    ort = _eval(busi, tmp_path / "ort.json", "--backend", "onnxruntime", "--onnx-dir",
                str(onnx_dir), "--reference", str(tmp_path / "w8a8.json"))
    assert ort["agreement_miou"] >= MIN_ORT_PARITY
