"""Fake quantizers and observers: the arithmetic, the ranges, the modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trtq.calib.observers import ActivationObserver, SignedHistogram, range_to_qparams, weight_range
from trtq.calib.quantizer import CalibrationError, TensorQuantizer
from trtq.recipes import QuantizerSpec


def calibrated(spec: QuantizerSpec, *batches: torch.Tensor) -> TensorQuantizer:
    q = TensorQuantizer()
    q.configure(spec)
    q.start_calibration()
    for batch in batches:
        assert torch.equal(q(batch), batch)  # calibrating passes data through unchanged
    assert q.finish_calibration()
    q.enabled = True
    return q


def test_symmetric_int8_rounds_to_the_grid_and_clamps():
    x = torch.linspace(-2.0, 2.0, 1001)
    q = calibrated(QuantizerSpec(observer="minmax"), torch.tensor([-1.27, 1.27]))
    assert float(q.scale) == pytest.approx(0.01)
    assert int(q.zero_point) == 0
    y = q(x)
    assert torch.allclose(y, torch.clamp(torch.round(x / 0.01), -128, 127) * 0.01)
    assert float(y.min()) == pytest.approx(-1.28) and float(y.max()) == pytest.approx(1.27)


def test_asymmetric_uint8_zero_point_and_range():
    q = calibrated(QuantizerSpec(symmetric=False, observer="minmax"), torch.tensor([-1.0, 3.0]))
    assert float(q.scale) == pytest.approx(4.0 / 255)
    assert int(q.zero_point) == 64  # round(255 / 4)
    y = q(torch.linspace(-5, 5, 101))
    step = 4.0 / 255  # the rounded zero point shifts the range by less than one step
    assert -1.0 - step < float(y.min()) <= -1.0 + step and 3.0 - step <= float(y.max()) < 3.0 + step
    assert float(q(torch.tensor([0.0]))) == 0.0  # zero is exactly representable


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_bit_width_limits_the_number_of_levels(bits):
    q = calibrated(QuantizerSpec(bits=bits, observer="minmax"), torch.randn(1000))
    levels = torch.unique(q(torch.randn(100000) * 3)).numel()
    assert levels == 2 ** bits


def test_per_channel_narrow_weight_scales():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25], [0.0, 0.0]])
    q = TensorQuantizer()
    q.configure(QuantizerSpec(axis=0, narrow=True))
    q.calibrate_weight(w)
    q.enabled = True
    assert torch.allclose(q.scale, torch.tensor([2.0, 0.5, 1.0]) / 127)  # dead channel: 1/127
    assert q.spec.qmin == -127
    assert torch.allclose(q(w), w, atol=1e-2)


def test_quantizer_on_without_range_is_an_error():
    q = TensorQuantizer()
    q.configure(QuantizerSpec())
    q.enabled = True
    with pytest.raises(CalibrationError, match="calibrate"):
        q(torch.ones(3))


def test_histogram_grows_without_losing_counts():
    h = SignedHistogram(64)
    h.update(torch.tensor([0.1, -0.2, 0.3]))
    first_range = h.range
    h.update(torch.tensor([2.5, -0.05]))
    assert h.range >= 2.5 and math.log2(h.range / first_range).is_integer()
    assert float(h.counts.sum()) == 5
    assert float(h.folded().sum()) == 5


def _observe(observer: str, data: torch.Tensor, **kw) -> float:
    obs = ActivationObserver(QuantizerSpec(observer=observer, **kw))
    for chunk in data.split(len(data) // 4):
        obs.update(chunk)
    return obs.compute()[1]


def test_percentile_observer_on_uniform_data():
    data = torch.rand(400_000) * 2 - 1
    assert _observe("percentile", data, percentile=99.0) == pytest.approx(0.99, abs=2e-3)


def test_entropy_clips_outliers_but_keeps_the_bulk():
    torch.manual_seed(0)
    data = torch.cat([torch.randn(200_000), torch.tensor([40.0, -35.0])])
    assert 2.5 < _observe("entropy", data) < 20.0  # the outliers are clipped, the bulk is not
    assert _observe("minmax", data) == 40.0


def test_mse_clips_outliers_at_4_bits():
    torch.manual_seed(0)
    data = torch.cat([torch.randn(200_000), torch.tensor([40.0, -35.0])])
    assert 1.5 < _observe("mse", data, bits=4) < 10.0


def test_mse_range_beats_minmax_in_lp_error():
    torch.manual_seed(0)
    data = torch.cat([torch.randn(100_000), torch.tensor([30.0])])
    errs = {}
    for observer in ("minmax", "mse"):
        q = calibrated(QuantizerSpec(bits=4, observer=observer), data)
        errs[observer] = float((q(data) - data).abs().pow(2.4).sum())
    assert errs["mse"] < 0.5 * errs["minmax"]


def test_avg_minmax_averages_batch_extremes():
    obs = ActivationObserver(QuantizerSpec(observer="avg_minmax"))
    obs.update(torch.tensor([-1.0, 2.0]))
    obs.update(torch.tensor([-4.0, 1.0]))
    assert obs.compute() == (-3.0, 3.0)


def test_weight_mse_per_channel_beats_minmax():
    torch.manual_seed(0)
    w = torch.randn(8, 256)
    w[:, 0] = 12.0  # one outlier per channel
    err = {}
    for observer in ("minmax", "mse"):
        spec = QuantizerSpec(bits=4, axis=0, narrow=True, observer=observer)
        lo, hi = weight_range(w, spec)
        assert lo.shape == (8,)
        scale, _ = range_to_qparams(lo, hi, spec)
        wq = torch.clamp(torch.round(w / scale[:, None]), -7, 7) * scale[:, None]
        err[observer] = float((wq - w).abs().pow(2.4).sum())
    assert err["mse"] < err["minmax"]


def test_alt_symmetry_is_kept_for_retargeting():
    q = calibrated(QuantizerSpec(observer="minmax"), torch.tensor([-0.5, 3.0]))
    assert q.spec.symmetric and float(q.scale) == pytest.approx(3.0 / 127)
    q.flip_symmetry()
    assert not q.spec.symmetric
    assert float(q.scale) == pytest.approx(3.5 / 255)
    assert int(q.zero_point) == round(0.5 / (3.5 / 255))
    np.testing.assert_allclose(float(q(torch.tensor([3.0]))), 3.0, atol=3.5 / 255)
