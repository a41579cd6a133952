"""Quant modules, calibrate(), quant state, retargeting and calibration data."""

from __future__ import annotations

import pytest
import torch

from trtq.calib import (
    CalibrationError,
    calibrate,
    load_quant_state,
    quantize,
    quantizers,
    save_quant_state,
    set_enabled,
)
from trtq.calib.calibrate import retarget
from trtq.calib.modules import QuantConvBN, QuantLinear, QuantMatMul
from trtq.data.calibration import CalibSample, calibration_samples
from trtq.errors import DataError
from trtq.models import load_model
from trtq.models.sam_adapter import SAM, sample_inputs
from trtq.recipes import get_recipe


def _outputs(model):
    image, boxes = sample_inputs(model)
    with torch.no_grad():
        emb = model.image_encoder(image)
        return emb, *model.box_decoder()(emb, boxes)


@pytest.fixture(scope="module")
def samples(synthetic_coco):
    return calibration_samples(synthetic_coco, "calib", 2)


def test_installed_modules_keep_keys_and_off_is_bitwise_fp32():
    ref = load_model("tiny_litemedsam")
    model = load_model("tiny_litemedsam")
    keys = set(model.state_dict())
    table = quantize(model, get_recipe("w8a8", SAM.rules))
    assert set(model.state_dict()) == keys  # quantizers hold no parameters or buffers
    kinds = {type(m) for m in model.modules()}
    assert {QuantLinear, QuantConvBN, QuantMatMul} <= kinds
    assert "image_encoder.layers.1.blocks.0.attn.qk_matmul.other_quantizer" in table
    assert "prompt_encoder.mask_downscaling.0.input_quantizer" not in table
    for got, want in zip(_outputs(model), _outputs(ref), strict=True):
        assert torch.equal(got, want)


def test_calibrate_turns_quantizers_on_and_off_restores_fp32(samples):
    ref = _outputs(load_model("tiny_litemedsam"))
    recipe = get_recipe("w8a8", SAM.rules).with_activation_observer("percentile")
    model = calibrate(load_model("tiny_litemedsam"), recipe, samples)
    on = [n for n, q in quantizers(model) if q.enabled]
    assert len(on) == sum(1 for _, q in quantizers(model) if q.spec is not None) > 150
    quant = _outputs(model)
    assert not torch.equal(quant[0], ref[0])
    rel = float((quant[0] - ref[0]).abs().max() / ref[0].abs().max())
    assert 0 < rel < 0.2  # 8-bit noise, not garbage
    set_enabled(model, False)
    for got, want in zip(_outputs(model), ref, strict=True):
        assert torch.equal(got, want)


def test_folded_convbn_equals_conv_then_bn():
    model = load_model("tiny_litemedsam")
    quantize(model, get_recipe("w8a8", SAM.rules))
    block = model.image_encoder.layers[0].blocks[0].conv2
    assert isinstance(block, QuantConvBN)
    x = torch.randn(1, block.c.in_channels, 16, 16)
    with torch.no_grad():
        plain = block(x)
        block.weight_quantizer.calibrating = True  # folded path, quantizer passes through
        block.weight_quantizer.observer = type("Null", (), {"update": lambda self, t: None})()
        folded = block(x)
    assert torch.allclose(plain, folded, atol=1e-5)


def test_state_round_trip_reproduces_outputs(samples, tmp_path):
    recipe = get_recipe("w8a8", SAM.rules).with_activation_observer("minmax")
    model = calibrate(load_model("tiny_litemedsam"), recipe, samples)
    save_quant_state(model, recipe, tmp_path / "state.pt")
    again = load_model("tiny_litemedsam")
    assert load_quant_state(again, tmp_path / "state.pt") == recipe
    for got, want in zip(_outputs(again), _outputs(model), strict=True):
        assert torch.equal(got, want)
    other = load_model("tiny_mobile_sam")
    with pytest.raises(CalibrationError):
        load_quant_state(other, tmp_path / "state.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a state")
    with pytest.raises(CalibrationError, match="re-run"):
        load_quant_state(load_model("tiny_litemedsam"), tmp_path / "bad.pt")


def test_retarget_switches_activation_format(samples):
    model = calibrate(load_model("tiny_litemedsam"), get_recipe("w8a8", SAM.rules), samples)
    name = "image_encoder.layers.1.blocks.0.attn.proj.input_quantizer"
    q = dict(quantizers(model))[name]
    sym_scale = float(q.scale)
    recipe = retarget(model, get_recipe("w8a8", SAM.rules), "onnxruntime", float_attention=True,
                      model_rules=SAM.rules)
    assert recipe.target == "onnxruntime" and not q.spec.symmetric and q.spec.qmax == 255
    assert float(q.scale) != sym_scale
    w = dict(quantizers(model))[name.replace("input", "weight")]
    assert w.spec.symmetric  # weights stay symmetric int8
    mm = dict(quantizers(model))["image_encoder.layers.1.blocks.0.attn.qk_matmul.input_quantizer"]
    assert not mm.enabled and recipe.spec_for("x.qk_matmul.input_quantizer") is None
    conv = dict(quantizers(model))["image_encoder.layers.0.blocks.0.conv1.input_quantizer"]
    assert not conv.enabled  # onnxruntime target: convolutions stay float
    assert recipe.spec_for("image_encoder.layers.0.blocks.0.conv1.weight_quantizer") is None


def test_no_data_is_an_error():
    with pytest.raises(CalibrationError, match="no calibration images"):
        calibrate(load_model("tiny_litemedsam"), get_recipe("w8a8", SAM.rules), [])


def test_calibration_samples_from_coco_and_folder(synthetic_coco, tmp_path):
    samples = calibration_samples(synthetic_coco, "calib", 3)
    assert len(samples) == 3 and all(s.boxes.shape[1] == 4 for s in samples)
    assert [len(s.boxes) for s in samples] == [2, 1, 2]  # the annotations' boxes, per image
    with pytest.raises(DataError, match="evaluation split"):
        calibration_samples(synthetic_coco, "val", 3)
    assert len(calibration_samples(synthetic_coco, "val", 1, allow_eval_split=True)) == 1
    with pytest.raises(DataError, match="--split"):
        calibration_samples(synthetic_coco)
    from PIL import Image

    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "a.png")
    (folder,) = calibration_samples(tmp_path)
    assert isinstance(folder, CalibSample) and folder.boxes.shape == (1, 4)
