"""The quantization arithmetic follows ONNX QuantizeLinear exactly, asymmetric ranges contain 0,
and NaN/Inf never turns into a silent range (each of these failed on earlier code)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from trtq.calib import calibrate
from trtq.calib.observers import ActivationObserver, NonFiniteError, range_to_qparams
from trtq.calib.quantizer import TensorQuantizer
from trtq.data.calibration import CalibSample
from trtq.errors import CalibrationError
from trtq.models import load_model
from trtq.models.sam_adapter import SAM
from trtq.recipes import QuantizerSpec, get_recipe


def _onnxruntime_qdq(x: np.ndarray, scale: np.ndarray, zero: np.ndarray,
                     axis: int | None = None) -> np.ndarray:
    """onnxruntime's QuantizeLinear → DequantizeLinear of `x` (the runtime's own arithmetic)."""
    extra = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **extra),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **extra)]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _quantizer(spec: QuantizerSpec, scale, zero) -> TensorQuantizer:
    q = TensorQuantizer()
    q.configure(spec)
    q.scale = torch.as_tensor(scale, dtype=torch.float32)
    q.zero_point = torch.as_tensor(zero, dtype=torch.int32)
    q.enabled = True
    return q


def _ties(scale: float, low: int, high: int, rng) -> np.ndarray:
    """Exact half-step ties (k + ½)·s and their float32 neighbours: where x·(1/s) and x / s
    round differently."""
    k = rng.integers(low, high, 20000).astype(np.float32)
    x = ((k + np.float32(0.5)) * np.float32(scale)).astype(np.float32)
    return np.concatenate([x, np.nextafter(x, np.float32(np.inf)),
                           np.nextafter(x, np.float32(-np.inf))])


@pytest.mark.parametrize("scale", [0.0123, 0.0371, 0.0049])
def test_per_tensor_int8_and_uint8_match_onnxruntime_bit_for_bit(scale):
    rng = np.random.default_rng(0)
    x = _ties(scale, -130, 130, rng)
    sym = _quantizer(QuantizerSpec(), scale, 0)
    want = _onnxruntime_qdq(x, np.float32(scale), np.int8(0))
    assert np.array_equal(sym(torch.from_numpy(x)).numpy(), want)
    asym = _quantizer(QuantizerSpec(symmetric=False), scale, 37)
    x = _ties(scale, -40, 220, rng)
    want = _onnxruntime_qdq(x, np.float32(scale), np.uint8(37))
    assert np.array_equal(asym(torch.from_numpy(x)).numpy(), want)


def test_per_channel_weights_match_onnxruntime_bit_for_bit():
    rng = np.random.default_rng(1)
    scales = rng.uniform(0.002, 0.05, 16).astype(np.float32)
    w = np.stack([_ties(float(s), -127, 127, rng)[:3000] for s in scales])  # (16, 3000)
    q = _quantizer(QuantizerSpec(axis=0, narrow=True), scales, np.zeros(16))
    got = q(torch.from_numpy(w)).numpy()
    want = _onnxruntime_qdq(w, scales, np.zeros(16, dtype=np.int8), axis=0)
    inside = np.abs(w) <= 126.5 * scales[:, None]  # the narrow range clips −128 as ONNX cannot
    assert np.array_equal(got[inside], want[inside])
    assert np.all(np.abs(got) <= 127 * scales[:, None] * (1 + 1e-6))


def test_rounding_is_half_to_even():
    q = _quantizer(QuantizerSpec(), 1.0, 0)
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 200.0, -200.0])
    assert q(x).tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 127.0, -128.0]


@pytest.mark.parametrize("observer", ["minmax", "avg_minmax", "percentile", "entropy", "mse"])
def test_asymmetric_ranges_contain_zero(observer):
    """A tensor entirely in [1, 2]: the range must reach down to 0 (zero point in the code
    range), so nothing is clipped (an old percentile range gave every value error 1.0)."""
    x = torch.linspace(1.0, 2.0, 50001)
    spec = QuantizerSpec(symmetric=False, observer=observer)
    observer_ = ActivationObserver(spec)
    observer_.update(x)
    scale, zero = range_to_qparams(*map(torch.tensor, observer_.compute()), spec)
    assert 0 <= int(zero) <= 255
    q = _quantizer(spec, scale, zero)
    error = float((q(x) - x).abs().max())
    assert error <= float(scale) / 2 * 1.001 + 1e-6, (observer, error, float(scale))
    assert float(q(torch.zeros(3)).abs().max()) == 0.0  # 0 is exactly representable


def test_range_to_qparams_widens_to_zero_on_both_sides():
    spec = QuantizerSpec(symmetric=False)
    scale, zero = range_to_qparams(torch.tensor(1.0), torch.tensor(2.0), spec)
    assert int(zero) == 0 and float(scale) == pytest.approx(2.0 / 255)
    scale, zero = range_to_qparams(torch.tensor(-3.0), torch.tensor(-1.0), spec)
    assert int(zero) == 255 and float(scale) == pytest.approx(3.0 / 255)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_observers_refuse_non_finite_values(bad):
    x = torch.randn(1000)
    x[17] = bad
    for observer in ("minmax", "percentile", "entropy"):
        with pytest.raises(NonFiniteError, match="1 of 1000 activation values are NaN or Inf"):
            ActivationObserver(QuantizerSpec(observer=observer)).update(x)


def test_calibration_names_the_layer_and_the_image_of_a_nan():
    model = load_model("tiny_litemedsam")
    with torch.no_grad():  # a corrupt checkpoint: one NaN weight deep in the encoder
        model.image_encoder.layers[1].blocks[0].mlp.fc1.weight[3, 5] = float("nan")
    rgb = np.full((48, 64, 3), 120, dtype=np.uint8)
    samples = [CalibSample(rgb, np.array([[4.0, 4.0, 40.0, 30.0]]), "images/grey.png")]
    with pytest.raises(CalibrationError) as info:
        calibrate(model, get_recipe("w8a8", SAM.rules), samples)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("image_encoder.layers.1.blocks.0.mlp.fc2.input_quantizer: ")
    assert "NaN or Inf on calibration image images/grey.png" in message


def test_a_non_finite_weight_names_its_quantizer():
    q = TensorQuantizer()
    q.configure(QuantizerSpec(axis=0, narrow=True))
    q.name = "encoder.proj.weight_quantizer"
    w = torch.randn(4, 4)
    w[1, 1] = float("inf")
    with pytest.raises(CalibrationError, match=r"^encoder.proj.weight_quantizer: 1 of 16 weight"):
        q.calibrate_weight(w)
