"""AGQ's log2 quantizer: the format, the τ/scale search, and its three implementations
(PyTorch, standard-ONNX decomposition, trtq::LogQuant custom op) agreeing bit for bit."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch

from trtq.calib.logquant import (
    AgqObserver,
    encode,
    levels,
    log_fake_quant,
    log_fake_quant_numpy,
    output_error,
    search_scale,
)
from trtq.calib.logquant_onnx import LogQuantFunction
from trtq.export.onnxruntime_session import create_session


def _softmax_rows(seed: int = 0, shape=(16, 4, 32, 300), spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(shape, generator=g) * spread, dim=-1)
    x[0, 0, 0, :4] = torch.tensor([0.0, 1e-42, 1.0, 2.5])  # zero, denormal, s-clamp, above s
    return x


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("tau", [1, 2, 4])
def test_codes_follow_the_log2_rounding_rule(bits, tau):
    x = _softmax_rows(bits * tau)
    scale = 0.5
    q = encode(x, bits, tau, scale)
    assert int(q.min()) >= 0 and int(q.max()) <= 2 ** bits - 1
    exact = -tau * torch.log2(x.double().clamp_min(1e-300) / scale)
    expected = torch.clamp(torch.round(exact), 0, 2 ** bits - 1).long()
    away_from_ties = (exact - exact.floor() - 0.5).abs() > 1e-4
    in_float32 = exact < -tau * math.log2(np.finfo(np.float32).tiny / scale) - 0.5
    check = away_from_ties & in_float32
    assert bool(torch.all(q[check] == expected[check]))
    y = log_fake_quant(x, bits, tau, scale)
    assert bool(torch.all(y[~in_float32] == 0))  # below float32's range: the zero code
    assert float(y[0, 0, 0, 0]) == 0.0  # a true zero decodes to exactly 0
    if bits < 7 or tau == 4:  # grids that stay inside float32: zero is the last code
        assert int(q[0, 0, 0, 0]) == 2 ** bits - 1
    table = levels(bits, tau, scale)
    nonzero = table[table > 0]
    assert table[-1] == 0.0 and np.all(np.diff(nonzero) < 0)  # at most 2^b - 1 non-zero levels
    assert np.count_nonzero(table) <= 2 ** bits - 1
    assert float(y[0, 0, 0, 0]) == 0.0 and float(y[0, 0, 0, 3]) == pytest.approx(scale)
    assert bool(torch.all(log_fake_quant(-x, bits, tau, scale) == 0))  # negatives → zero code


def test_log_grid_beats_uniform_on_softmax_probabilities():
    # The point of AGQ: probabilities near 1/4096 vanish on a uniform INT8 grid of [0, max].
    x = _softmax_rows(1, shape=(2, 2, 8, 4096), spread=1.0)
    uniform = torch.fake_quantize_per_tensor_affine(x, float(x.max()) / 255, 0, 0, 255)
    logq = log_fake_quant(x, 8, 4, float(x.max()))
    assert float((uniform == 0).float().mean()) > 0.9
    assert float((logq - x).abs().mean()) < 0.05 * float((uniform - x).abs().mean())


def test_search_scale_is_no_worse_than_its_bounds_and_tau_is_the_argmin():
    a = _softmax_rows(2, shape=(4, 2, 16, 64))
    v = torch.randn(4, 2, 64, 8, generator=torch.Generator().manual_seed(3))
    m = float(a.max())
    for tau in (1, 2, 4):
        scale, error = search_scale(a, v, 4, tau)
        assert min(0.1, 0.01 * m) <= scale <= m
        assert error <= output_error(a, v, 4, tau, m, 2.4) + 1e-12
        assert error == pytest.approx(output_error(a, v, 4, tau, scale, 2.4))
    observer = AgqObserver(4)
    observer.update_pair(a, v)
    observer.update_pair(a[:2], v[:2])
    tau, scale = observer.compute()
    assert observer.batches == 2 and tau == min(observer.errors, key=observer.errors.get)
    assert scale == pytest.approx(np.mean(observer.scales[tau]))


class _LogQuant(torch.nn.Module):
    def __init__(self, bits, tau, scale, form):
        super().__init__()
        self.args = (bits, tau, scale, form)

    def forward(self, x):
        return LogQuantFunction.apply(x, *self.args)


def _export(tmp_path, bits, tau, scale, form, example):
    path = tmp_path / f"lq_{form}_{bits}_{tau}.onnx"
    torch.onnx.export(_LogQuant(bits, tau, scale, form), (example,), str(path), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}},
                      custom_opsets={"trtq": 1} if form == "plugin" else None)
    return path


@pytest.mark.parametrize("bits, tau", [(4, 1), (6, 2), (8, 4), (8, 1), (8, 2)])
def test_pytorch_decomposed_and_custom_op_are_identical(tmp_path, bits, tau):
    x = _softmax_rows(bits + tau)
    scale = float(np.float32(0.2775896489620209))  # needs all of float32's digits
    reference = log_fake_quant(x, bits, tau, scale).numpy()
    assert np.array_equal(log_fake_quant_numpy(x.numpy(), bits, tau, scale), reference)
    for form in ("onnx", "plugin"):
        path = _export(tmp_path, bits, tau, scale, form, x[:1])
        model = onnx.load(str(path))
        ops = {n.op_type for n in model.graph.node}
        if form == "plugin":
            node = next(n for n in model.graph.node if n.op_type == "LogQuant")
            assert node.domain == "trtq"
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["bits"] == bits and attrs["tau"] == tau
            assert np.float32(attrs["scale"]) == np.float32(scale)
        else:
            assert "LogQuant" not in ops and {"Log", "Gather", "Less"} <= ops
        got = create_session(path).run(None, {"x": x.numpy()})[0]
        mismatches = int(np.count_nonzero(got != reference))
        assert mismatches == 0, f"{form}: {mismatches} of {reference.size} values differ"


def test_parameters_are_checked():
    x = torch.rand(4)
    with pytest.raises(ValueError, match="tau=3"):
        log_fake_quant(x, 8, 3, 1.0)
    with pytest.raises(ValueError, match="scale"):
        log_fake_quant(x, 8, 1, math.nan)
    with pytest.raises(ValueError, match="bits=9"):
        log_fake_quant(x, 9, 1, 1.0)
