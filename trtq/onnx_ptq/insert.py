"""Writing QuantizeLinear/DequantizeLinear into a float ONNX graph.

TensorRT target: every site gets its own Q → DQ pair with its own scale and zero-point
initializers (symmetric INT8, zero point 0); a weight is stored as its INT8 codes times its
scale (float) and quantized per output channel by a Q/DQ pair TensorRT folds at build time, the
form trtq's PyTorch export writes. onnxruntime target: activations are uint8 with a zero point,
one Q → DQ per tensor and range shared by its readers; weights are INT8 initializers feeding a
DequantizeLinear (what onnxruntime fuses into MatMulIntegerToFloat); convolutions stay float
(onnxruntime has no integer convolution with a float output: DQ → float Conv is slower than FP32).
New nodes go right before the first node that reads them, so the graph stays sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtq.export.onnx_graph import Graph
from trtq.export.qdq_rewrite import broadcast_scale, drop_unused_initializers
from trtq.onnx_ptq.sites import Site
from trtq.recipes import QuantizerSpec

ORT_FLOAT_OPS = ("Conv", "ConvTranspose")


@dataclass(frozen=True)
class QParams:
    scale: np.ndarray  # float32, scalar or [channels]
    zero_point: np.ndarray  # int8 or uint8, same shape
    axis: int | None = None


def qparams(lo, hi, spec: QuantizerSpec, axis: int | None = None) -> QParams:
    import torch

    from trtq.calib.observers import range_to_qparams

    scale, zp = range_to_qparams(torch.as_tensor(lo), torch.as_tensor(hi), spec)
    dtype = np.int8 if spec.qmin < 0 else np.uint8
    return QParams(scale.numpy().astype(np.float32), zp.numpy().astype(dtype), axis)


def weight_qparams(weight: np.ndarray, spec: QuantizerSpec, axis: int | None) -> QParams:
    """Per-channel (along `axis`) or per-tensor parameters of a constant weight."""
    import torch

    from trtq.calib.observers import weight_range

    axis = None if spec.axis is None else axis
    lo, hi = weight_range(torch.tensor(np.asarray(weight, np.float32)),
                          replace(spec, axis=axis))
    return qparams(lo, hi, spec, axis)


def weight_codes(weight: np.ndarray, scale: np.ndarray, spec: QuantizerSpec) -> np.ndarray:
    """The integer codes of `weight` (float32) for a `scale` broadcast to it."""
    return np.clip(np.round(weight.astype(np.float32) / scale), spec.qmin, spec.qmax)


class _Writer:
    """Collects new initializers and nodes, each anchored before its first reader."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.before: dict[str, list[onnx.NodeProto]] = {}

    def constant(self, name: str, value: np.ndarray) -> str:
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def qdq(self, prefix: str, tensor: str, params: QParams, anchor: str,
            with_q: bool = True) -> str:
        """`tensor` → (Q →) DQ; returns the dequantized tensor's name."""
        scale = self.constant(f"{prefix}.scale", params.scale)
        zero = self.constant(f"{prefix}.zero_point", params.zero_point)
        axis = {} if params.axis is None else {"axis": params.axis}
        nodes, source = [], tensor
        if with_q:
            source = f"{prefix}.quantized"
            nodes.append(helper.make_node("QuantizeLinear", [tensor, scale, zero], [source],
                                          name=f"{prefix}/QuantizeLinear", **axis))
        out = f"{prefix}.dequantized"
        nodes.append(helper.make_node("DequantizeLinear", [source, scale, zero], [out],
                                      name=f"{prefix}/DequantizeLinear", **axis))
        self.before.setdefault(anchor, []).extend(nodes)
        return out

    def finish(self) -> None:
        ordered = []
        for node in self.model.graph.node:
            ordered += self.before.get(node.name, [])
            ordered.append(node)
        del self.model.graph.node[:]
        self.model.graph.node.extend(ordered)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (sites and anchors refer to nodes by name): unnamed nodes
    and repeated names (ONNX allows both) get their op type and index."""
    taken: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in taken:
            base = f"{node.op_type}_{index}"
            node.name = base
            while node.name in taken:
                node.name += "_"
        taken.add(node.name)


def insert_qdq(model: onnx.ModelProto, sites: list[Site], specs: dict[str, QuantizerSpec],
               ranges: dict[tuple[str, QuantizerSpec], tuple[float, float]],
               target: str) -> dict[str, int]:
    """Quantize `sites` whose quantizer has a spec, in place; returns counts for the record.
    `ranges` holds each activation (tensor, spec)'s observed (lo, hi)."""
    g = Graph(model)
    nodes = {n.name: n for n in model.graph.node}
    writer = _Writer(model)
    shared: dict[tuple, str] = {}
    counts = {"activation_quantizers": 0, "weight_quantizers": 0, "float_by_target": 0}
    for site in sites:
        spec = specs.get(site.quantizer)
        if spec is None:
            continue
        if target == "onnxruntime" and site.op_type in ORT_FLOAT_OPS:
            counts["float_by_target"] += 1
            continue
        node = nodes[site.node]
        if site.weight:
            weight = g.constant(site.tensor)
            params = weight_qparams(weight, spec, site.axis)
            scale = broadcast_scale(params.scale, weight.ndim, params.axis or 0)
            codes = weight_codes(weight, scale, spec)
            if target == "onnxruntime":
                stored = writer.constant(f"{site.quantizer}.int8", codes.astype(np.int8))
                node.input[site.slot] = writer.qdq(site.quantizer, stored, params, node.name,
                                                   with_q=False)
            else:
                stored = writer.constant(f"{site.quantizer}.weight",
                                         (codes * scale).astype(np.float32))
                node.input[site.slot] = writer.qdq(site.quantizer, stored, params, node.name)
            counts["weight_quantizers"] += 1
            continue
        params = qparams(*ranges[(site.tensor, spec)], spec)
        key = (site.tensor, params.scale.item(), int(params.zero_point))
        if target == "onnxruntime" and key in shared:
            node.input[site.slot] = shared[key]
        else:
            first = _first_reader(model, site.tensor, node.name) \
                if target == "onnxruntime" else node.name
            node.input[site.slot] = shared[key] = writer.qdq(site.quantizer, site.tensor,
                                                             params, first)
        counts["activation_quantizers"] += 1
    writer.finish()
    drop_unused_initializers(model)
    return counts


def _first_reader(model: onnx.ModelProto, tensor: str, fallback: str) -> str:
    for node in model.graph.node:
        if tensor in node.input:
            return node.name
    return fallback
