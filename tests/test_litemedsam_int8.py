"""The real LiteMedSAM, W8A8 on real busi images: accuracy, export parity, lint, coverage.

Small on purpose (4 calibration images, 8 validation images) so it runs in the default suite;
the full-split figures come from experiments/w8a8_accuracy.sh.
"""

from __future__ import annotations

import pytest

from trtq.data import CocoBoxDataset
from trtq.eval.backends import OnnxRuntimeBackend, TorchBackend
from trtq.eval.sam_eval import evaluate

VAL_IMAGES = 8


@pytest.fixture(scope="module")
def val(busi):
    return list(CocoBoxDataset(busi, "val", limit=VAL_IMAGES))


@pytest.fixture(scope="module")
def fp32_result(litemedsam, val):
    result = evaluate(TorchBackend(litemedsam), val)
    return {**result.summary(), "per_instance": result.per_instance}


@pytest.fixture(scope="module")
def fake_quant(litemedsam_calibrated):
    from trtq.calib.state_dir import load_calibrated
    from trtq.models import load_model

    model = load_model("litemedsam")
    load_calibrated(model, "litemedsam", litemedsam_calibrated)
    return model


def test_w8a8_fake_quant_stays_close_to_fp32(fake_quant, val, fp32_result):
    result = evaluate(TorchBackend(fake_quant), val, reference=fp32_result)
    assert result.miou > fp32_result["miou"] - 0.03
    assert result.agreement_miou > 0.93


def test_int8_onnx_matches_fake_quant_masks(fake_quant, litemedsam_qdq, val):
    fq = evaluate(TorchBackend(fake_quant), val)
    reference = {"per_instance": fq.per_instance}
    ort = evaluate(OnnxRuntimeBackend(litemedsam_qdq, model="litemedsam"), val, reference)
    assert ort.agreement_miou >= 0.97  # 8 lesions; full busi/val in test_litemedsam_int8_full


def test_int8_export_is_lint_clean_with_full_coverage(litemedsam_qdq):
    from trtq.commands.inspect_cmd import inspect_onnx

    for part in ("encoder", "decoder"):
        result = inspect_onnx(str(litemedsam_qdq / f"{part}.onnx"))
        assert result["lint_errors"] == []
        assert result["int8_mac_coverage_of_recipe"] >= 0.95
    assert inspect_onnx(str(litemedsam_qdq / "encoder.onnx"))["int8_mac_coverage"] > 0.99
