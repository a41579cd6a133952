"""Which nodes of an INT8 Q/DQ ONNX graph must stay float in TensorRT, and why (the float plan).

A weakly typed INT8 build (TensorRT 8.5–10.x) also sets the FP16 flag, so TensorRT may run any
layer that Q/DQ does not pin in FP16. `float_plan` names the nodes the recipe keeps float on
purpose, from op types and the Q/DQ structure alone (no model names), with one reason each:

- `layernorm`: LayerNormalization, and the decomposed form (ReduceMean → Sub → Pow(2) →
  ReduceMean → Add(eps) → Sqrt → Div, with the affine Mul/Add that follows). FP32: LayerNorm
  overflows in FP16 (`Pow(x, 2)` with |x| ≈ 1400; TensorRT itself warns and advises FP32 layer
  norms; TENSORRT.md §7.2).
- `softmax`: Softmax. FP32: its exponentials and sum feed the attention probabilities that the
  recipe quantizes (or log-quantizes) right after; FP16 rounding there moves codes.
- `logquant`: AGQ's log2 quantizer, as the `trtq::LogQuant` plugin node or as its standard-op
  decomposition (Max/Div/Log/Mul/Round/Clip/Cast/Gather/GreaterOrEqual/Less/Add/Sub, written
  by `trtq.calib.logquant_onnx`). FP32: the comparisons against float32 threshold tables are
  what make the decomposition bit-exact; in FP16 the tables and inputs round and codes move.
- `float-conv` / `float-matmul`: Conv/ConvTranspose and MatMul/Gemm whose two inputs do not
  both come straight from DequantizeLinear in a Q/DQ graph (the recipe's float hot spots, e.g.
  a depthwise conv, the attn·v matmul after a log quantizer, the prompt encoder's Fourier
  features, the mask decoder's heads). FP32, not FP16, because: these layers are float precisely
  because they were measured as the most precision-sensitive ones, and the accuracy trtq reports
  is measured against the FP32 graph; the same architecture (MobileSAM's TinyViT encoder and the
  SAM mask decoder) gave "erroneous results" in FP16 TensorRT engines, so NanoSAM builds both in
  FP32 (TENSORRT.md §6), and TensorRT 10.3 (JetPack 6) has a reported FP16 miscompile of ViT
  models (§7.2); and they are a small share of the MACs (see `int8_mac_coverage`), so FP32
  costs little next to the INT8 layers around them. Change `PRECISION["float-*"]` to "fp16"
  only after measuring accuracy on the device.

Keys are the names TensorRT's ONNX parser gives the first layer of each node: the node name, or
`node_of_<first output>` for an unnamed node (checked with TensorRT-RTX 1.7's parser).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import onnx

from trtq.export.onnx_graph import Graph

PRECISION = {"layernorm": "fp32", "softmax": "fp32", "logquant": "fp32",
             "float-conv": "fp32", "float-matmul": "fp32"}
REASONS = tuple(PRECISION)
_STANDARD = ("", "ai.onnx")
_FLOAT_MACS = {"Conv": "float-conv", "ConvTranspose": "float-conv", "MatMul": "float-matmul",
               "Gemm": "float-matmul"}
# The ops of the LogQuant decomposition (trtq.calib.logquant_onnx._decomposed).
_LOGQUANT_OPS = frozenset({"Max", "Log", "Div", "Mul", "Round", "Clip", "Cast", "Gather",
                           "GreaterOrEqual", "Less", "Add", "Sub"})
_LOGQUANT_PLUGIN = ("trtq", "LogQuant")


def layer_key(node: onnx.NodeProto) -> str:
    """The name TensorRT's ONNX parser gives the (first) layer of `node`."""
    return node.name or f"node_of_{node.output[0]}"


def float_plan(model: onnx.ModelProto, base_dir: str | None = None) -> dict[str, str]:
    """Node key (`layer_key`) → reason, in graph order, for every node that must stay float;
    a node found by several rules keeps the first (LayerNorm, Softmax, LogQuant, float MACs).
    `base_dir`: the folder of a graph loaded without its external weights."""
    g = Graph(model, base_dir)
    found: dict[str, str] = {}
    for finder in (_layernorms, _softmaxes, _logquants, _float_macs):
        for node, reason in finder(g):
            found.setdefault(layer_key(node), reason)
    order = {layer_key(node): i for i, node in enumerate(model.graph.node)}
    return dict(sorted(found.items(), key=lambda item: order[item[0]]))


def float_plan_of(path: str | os.PathLike) -> dict[str, str]:
    return float_plan(onnx.load(str(path), load_external_data=False), str(Path(path).parent))


def plan_counts(plan: dict[str, str]) -> dict[str, int]:
    """Planned nodes per reason, in REASONS order (reasons with none left out)."""
    counts = Counter(plan.values())
    return {reason: counts[reason] for reason in REASONS if counts[reason]}


# -- finders: each yields (node, reason) ----------------------------------------------------------
def _softmaxes(g: Graph) -> Iterator[tuple[onnx.NodeProto, str]]:
    for node in g.graph.node:
        if node.op_type == "Softmax" and node.domain in _STANDARD:
            yield node, "softmax"


def _float_macs(g: Graph) -> Iterator[tuple[onnx.NodeProto, str]]:
    if not any(n.op_type == "DequantizeLinear" for n in g.graph.node):
        return  # not a Q/DQ graph: nothing is INT8, nothing to single out
    for node in g.graph.node:
        reason = _FLOAT_MACS.get(node.op_type)
        if reason and not all(_from_dq(g, name) for name in node.input[:2]):
            yield node, reason


def _from_dq(g: Graph, name: str) -> bool:
    producer = g.producer.get(name)
    return producer is not None and producer.op_type == "DequantizeLinear"


def _layernorms(g: Graph) -> Iterator[tuple[onnx.NodeProto, str]]:
    for node in g.graph.node:
        if node.op_type == "LayerNormalization":
            yield node, "layernorm"
        elif node.op_type == "ReduceMean":
            for part in _decomposed_layernorm(g, node):
                yield part, "layernorm"


def _logquants(g: Graph) -> Iterator[tuple[onnx.NodeProto, str]]:
    for node in g.graph.node:
        if (node.domain, node.op_type) == _LOGQUANT_PLUGIN:
            yield node, "logquant"
        elif node.op_type == "Log" and node.domain in _STANDARD:
            source = _logquant_source(g, node)
            if source is not None:
                yield from ((n, "logquant") for n in _logquant_region(g, source))


# -- the decomposed LayerNorm ---------------------------------------------------------------------
def _single(g: Graph, tensor: str, op_type: str) -> onnx.NodeProto | None:
    """The one consumer of `tensor` with this op type, else None."""
    users = [u for u in g.consumers.get(tensor, []) if u.op_type == op_type]
    return users[0] if len(users) == 1 else None


def _other_input(g: Graph, node: onnx.NodeProto, tensor: str) -> str | None:
    """The input of a two-input node that is not `tensor`."""
    rest = [name for name in node.input if name != tensor]
    return rest[0] if len(rest) == 1 and len(node.input) == 2 else None


def _decomposed_layernorm(g: Graph, mean: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The nodes of mean/variance normalisation starting at `mean` (a ReduceMean of x), plus
    a following constant Mul and Add (the affine part); [] when `mean` starts no such chain."""
    x = mean.input[0]
    for sub in g.consumers.get(mean.output[0], []):
        if sub.op_type != "Sub" or list(sub.input) != [x, mean.output[0]]:
            continue
        chain = _variance_chain(g, sub)
        if chain:
            return [mean, sub, *chain, *_affine(g, chain[-1].output[0])]
    return []


def _variance_chain(g: Graph, sub: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Pow(d, 2) → ReduceMean → Add(eps) → Sqrt → Div(d, ·) after `sub` (d = x − mean)."""
    pow_ = _single(g, sub.output[0], "Pow")
    exponent = g.constant(pow_.input[1]) if pow_ is not None else None
    if exponent is None or exponent.size != 1 or float(exponent.reshape(-1)[0]) != 2.0:
        return []
    var = _single(g, pow_.output[0], "ReduceMean")
    add = var and _single(g, var.output[0], "Add")
    sqrt = add and _single(g, add.output[0], "Sqrt")
    if not (sqrt and g.is_constant(_other_input(g, add, var.output[0]) or "")):
        return []
    div = _single(g, sqrt.output[0], "Div")
    if div is None or div.input[1] != sqrt.output[0]:
        return []
    numerator = g.producer.get(div.input[0])
    if numerator is None or list(numerator.input) != list(sub.input):
        return []  # not (x − mean) / sqrt(var + eps)
    middle = [numerator] if layer_key(numerator) != layer_key(sub) else []
    return [pow_, var, add, sqrt, *middle, div]


def _affine(g: Graph, tensor: str) -> list[onnx.NodeProto]:
    """A Mul by a constant, then an Add of a constant, right after `tensor` (either optional)."""
    found = []
    for op_type in ("Mul", "Add"):
        node = _single(g, tensor, op_type)
        if node is None or len(g.consumers.get(tensor, [])) != 1:
            continue
        if not g.is_constant(_other_input(g, node, tensor) or ""):
            break
        found.append(node)
        tensor = node.output[0]
    return found


# -- the LogQuant decomposition -------------------------------------------------------------------
def _const_operand(g: Graph, node: onnx.NodeProto) -> str | None:
    """The non-constant input of a two-input node whose other input is constant, else None."""
    if len(node.input) != 2:
        return None
    a, b = node.input
    if g.is_constant(b) and not g.is_constant(a):
        return a
    if g.is_constant(a) and not g.is_constant(b):
        return b
    return None


def _logquant_source(g: Graph, log_node: onnx.NodeProto) -> str | None:
    """x in Log(Div(Max(x, FLT_MIN), scale)) (Mul allowed for Div), else None."""
    tensor = log_node.input[0]
    for _ in range(4):
        producer = g.producer.get(tensor)
        if producer is None or producer.op_type not in ("Div", "Mul", "Max"):
            return None
        operand = _const_operand(g, producer)
        if operand is None:
            return None
        if producer.op_type == "Max":
            return operand
        tensor = operand
    return None


def _logquant_region(g: Graph, x: str) -> list[onnx.NodeProto]:
    """Every node computed from x alone (and constants) through LogQuant ops, starting at the
    Max(x, constant) nodes; [] unless it holds the quantizer's Round and table Gather."""
    region = [n for n in g.consumers.get(x, [])
              if n.op_type == "Max" and _const_operand(g, n) == x]
    inside = {out for node in region for out in node.output}
    frontier = list(region)
    while frontier:
        for out in frontier.pop().output:
            for user in g.consumers.get(out, []):
                if user.op_type not in _LOGQUANT_OPS or user.output[0] in inside:
                    continue
                if all(i in inside or i == x or g.is_constant(i) for i in user.input if i):
                    region.append(user)
                    inside.update(user.output)
                    frontier.append(user)
    ops = {node.op_type for node in region}
    return region if {"Log", "Round", "Gather"} <= ops else []
