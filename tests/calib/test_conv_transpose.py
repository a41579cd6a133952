"""nn.ConvTranspose2d's quantized twin: per-channel weights on the output-channel axis (1),
exact with quantizers off, exported lint-clean with full INT8 coverage."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import trtq
from trtq.calib.conv_transpose import QuantConvTranspose2d
from trtq.calib.modules import install_quant_modules, quantizers
from trtq.export.onnx_graph import Graph, attribute
from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq


class Head(nn.Module):
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 4, 2, 1, groups=groups)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return self.out(torch.relu(self.up(torch.relu(self.conv(x)))))


def _data(n: int = 3):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 8, 8, generator=g) for _ in range(n)]


def _loop(data):
    def loop(model):
        with torch.no_grad():
            for x in data:
                model(x)
        return len(data)
    return loop


def test_twin_is_exact_with_quantizers_off_and_keeps_output_size():
    torch.manual_seed(0)
    net = Head().eval()
    x = torch.randn(1, 3, 8, 8)
    want = net(x)
    up_want = net.up(torch.randn(1, 8, 5, 5), output_size=[11, 11])
    install_quant_modules(net)
    assert isinstance(net.up, QuantConvTranspose2d)
    torch.testing.assert_close(net(x), want, rtol=0, atol=0)
    torch.manual_seed(0)
    assert net.up(torch.randn(1, 8, 5, 5), output_size=[11, 11]).shape == up_want.shape


@pytest.mark.parametrize(("groups", "axis"), [(1, 1), (2, None)])
def test_weight_quantizer_uses_the_output_channel_axis(groups, axis):
    torch.manual_seed(0)
    net = trtq.quantize(Head(groups), "w8a8", _loop(_data()))
    spec = dict(quantizers(net))["up.weight_quantizer"].spec
    assert spec.axis == axis
    assert dict(quantizers(net))["conv.weight_quantizer"].spec.axis == 0
    scale = net.up.weight_quantizer.scale
    assert scale.numel() == (4 // groups if axis is not None else 1)


def test_exported_deconv_weight_is_per_channel_axis_1_and_fully_int8(tmp_path):
    torch.manual_seed(0)
    data = _data()
    net = trtq.quantize(Head(), "w8a8", _loop(data))
    path = tmp_path / "head.onnx"
    record = trtq.export_onnx(net, data[0], path)
    model = onnx.load(str(path))
    assert lint_qdq(model).errors == [] and record["lint_errors"] == []
    assert int8_mac_coverage(model).fraction == 1.0
    g = Graph(model)
    deconv = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    dq = g.producer[deconv.input[1]]
    assert dq.op_type == "DequantizeLinear" and attribute(dq, "axis") == 1
    assert np.asarray(g.constant(dq.input[1])).shape == (4,)
    assert record["parity_max_rel_diff"] < 1e-3
