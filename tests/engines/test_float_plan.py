"""`trtq.engines.float_plan`: which nodes of real trtq exports must stay float, and why."""

from __future__ import annotations

import warnings

import onnx
import pytest
import torch
from torch import nn

from trtq.engines.float_plan import PRECISION, float_plan, layer_key, plan_counts
from trtq.export.onnx_graph import Graph
from trtq.export.qdq_lint import int8_mac_coverage

MACS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# The LogQuant decomposition's ops, as trtq.export.logquant_onnx writes them: 18 nodes a site.
LOGQUANT_OPS = {"Max": 2, "Div": 1, "Log": 1, "Mul": 1, "Round": 1, "Clip": 1, "Cast": 3,
                "Gather": 3, "Add": 2, "GreaterOrEqual": 1, "Less": 1, "Sub": 1}


def _of(plan: dict[str, str], reason: str) -> set[str]:
    return {name for name, why in plan.items() if why == reason}


def _nodes(model, op_type: str) -> set[str]:
    return {layer_key(n) for n in model.graph.node if n.op_type == op_type}


def _float_macs(model) -> dict[str, str]:
    g = Graph(model)

    def from_dq(name):
        return name in g.producer and g.producer[name].op_type == "DequantizeLinear"

    return {layer_key(n): "float-conv" if n.op_type.startswith("Conv") else "float-matmul"
            for n in model.graph.node
            if n.op_type in MACS and not (from_dq(n.input[0]) and from_dq(n.input[1]))}


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_ptq4sam_export_plan(tiny_ptq4sam_qdq, part):
    model = onnx.load(str(tiny_ptq4sam_qdq["onnx"] / f"{part}.onnx"))
    plan = float_plan(model)
    assert _of(plan, "layernorm") == _nodes(model, "LayerNormalization") != set()
    assert _of(plan, "softmax") == _nodes(model, "Softmax") != set()
    sites = len(_nodes(model, "Log"))
    assert sites == len(_nodes(model, "Softmax"))  # AGQ log-quantizes every attention map
    logquant = [n for n in model.graph.node if plan.get(layer_key(n)) == "logquant"]
    ops = {op: sum(n.op_type == op for n in logquant) for op in LOGQUANT_OPS}
    assert ops == {op: count * sites for op, count in LOGQUANT_OPS.items()}
    for op in ("Log", "Round", "Clip", "GreaterOrEqual", "Less"):
        assert _nodes(model, op) <= _of(plan, "logquant")
    floats = _float_macs(model)
    assert {k: v for k, v in plan.items() if v.startswith("float-")} == floats
    # the same float hot spots as the export's INT8 MAC coverage, computed independently
    assert set(floats) == {name for name, _ in int8_mac_coverage(model).float_layers}
    int8_macs = {layer_key(n) for n in model.graph.node if n.op_type in MACS} - set(floats)
    assert len(int8_macs) > 10 and not int8_macs & set(plan)
    assert plan_counts(plan) == {r: len(_of(plan, r)) for r in PRECISION if _of(plan, r)}


def test_plugin_form_plans_the_plugin_nodes(tiny_ptq4sam_qdq):
    model = onnx.load(str(tiny_ptq4sam_qdq["plugin"] / "decoder.onnx"))
    plan = float_plan(model)
    plugins = {layer_key(n) for n in model.graph.node if n.domain == "trtq"}
    assert len(plugins) == len(_nodes(model, "Softmax")) > 0
    assert _of(plan, "logquant") == plugins


def test_w8a8_plan_and_the_fp32_export(tiny_qdq, tiny_onnx):
    encoder = onnx.load(str(tiny_qdq["tensorrt"] / "encoder.onnx"))
    plan = float_plan(encoder)
    assert "logquant" not in plan.values()
    assert _of(plan, "float-conv") == set(_float_macs(encoder))
    depthwise = {layer_key(n) for n in encoder.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)}
    assert depthwise & _of(plan, "float-conv")  # TinyViT's float depthwise convs
    assert depthwise - _of(plan, "float-conv")  # (its quantized ones are not planned)
    fp32 = float_plan(onnx.load(str(tiny_onnx / "decoder.onnx")))  # no Q/DQ: no float MACs
    assert set(fp32.values()) == {"layernorm", "softmax"}


class _Norms(nn.Module):
    """nn.LayerNorm (decomposed at opset 13), a hand-written LayerNorm2d, and two look-alikes
    that are not layer norms: centering only, and a mean/variance chain with no eps."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.weight = nn.Parameter(torch.randn(4, 1, 1))

    def forward(self, x, image):
        y = self.ln(x)
        centred = y - y.mean(-1, keepdim=True)
        mean = image.mean(1, keepdim=True)
        var = (image - mean).pow(2).mean(1, keepdim=True)
        norm2d = self.weight * ((image - mean) / torch.sqrt(var + 1e-6))
        no_eps = (image - image.mean(2, keepdim=True)) / torch.sqrt(
            (image - image.mean(2, keepdim=True)).pow(2).mean(2, keepdim=True))
        return centred, norm2d, no_eps


def test_decomposed_layernorms(tmp_path):
    path = tmp_path / "norms.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Norms(), (torch.randn(2, 3, 8), torch.randn(1, 4, 5, 5)), str(path),
                          dynamo=False, opset_version=13)
    model = onnx.load(str(path))
    plan = float_plan(model)
    ops = sorted(n.op_type for n in model.graph.node if layer_key(n) in plan)
    # nn.LayerNorm: ReduceMean Sub Pow ReduceMean Add Sqrt Div Mul Add; LayerNorm2d: the same
    # with its weight Mul (written in front, computed after Div) and no bias
    assert ops == sorted(["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul",
                          "Add"] + ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt",
                                    "Div", "Mul"])
    assert set(plan.values()) == {"layernorm"}
    outputs = {n.output[0]: layer_key(n) for n in model.graph.node}
    assert outputs[model.graph.output[0].name] not in plan  # centering alone is no layer norm
    assert outputs[model.graph.output[2].name] not in plan  # nor a chain without eps
