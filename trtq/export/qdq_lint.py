"""TensorRT explicit-quantization lint and INT8 MAC coverage of a Q/DQ ONNX graph.

Lint rules (TENSORRT.md §1.5): every zero point exactly 0 and INT8 (TensorRT's parser rejects
anything else); scales constant, finite and strictly positive; per-channel scales only on
constant weights, one per channel of the quantized axis; every QuantizeLinear feeds
DequantizeLinear nodes only; no INT32 DequantizeLinear (quantized biases); opset ≥ 13.

Coverage: the share of Conv/ConvTranspose/MatMul/Gemm multiply-accumulates whose two inputs
both come straight from DequantizeLinear, i.e. that TensorRT can run in INT8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from trtq.export.onnx_graph import Graph, attribute

MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass
class LintReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quantize_nodes: int = 0
    dequantize_nodes: int = 0


def lint_qdq(model: onnx.ModelProto, base_dir: str | None = None) -> LintReport:
    """The lint of `model`; `base_dir`: the folder of a graph loaded without its external data
    (`trtq.export.onnx_files.load_graph`)."""
    g = Graph(model, base_dir)
    report = LintReport()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset < 13:
        report.errors.append(f"opset {opset} < 13: per-channel Q/DQ needs opset 13 or newer")
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.op_type == "QuantizeLinear":
            report.quantize_nodes += 1
            _check_q_feeds_dq(g, node, report)
        else:
            report.dequantize_nodes += 1
            _check_dq_source(g, node, report)
        _check_qparams(g, node, report)
    return report


def _check_q_feeds_dq(g: Graph, node, report: LintReport) -> None:
    users = g.consumers.get(node.output[0], [])
    bad = [u.op_type for u in users if u.op_type != "DequantizeLinear"]
    if not users or bad:
        report.errors.append(f"{node.name}: QuantizeLinear output feeds "
                             f"{bad or 'nothing'}, not a DequantizeLinear (unpaired Q)")


def _check_dq_source(g: Graph, node, report: LintReport) -> None:
    source = node.input[0]
    producer = g.producer.get(source)
    if producer is not None and producer.op_type == "QuantizeLinear":
        return
    value = g.constant(source)
    if value is None:
        report.errors.append(f"{node.name}: DequantizeLinear input {source} comes from "
                             f"{producer.op_type if producer else 'a graph input'}, not a "
                             "QuantizeLinear or a constant (unpaired DQ)")
    elif value.dtype == np.int32:
        report.errors.append(f"{node.name}: INT32 DequantizeLinear (a quantized bias); "
                             "TensorRT only dequantizes INT8/FP8/INT4: keep biases in float")
    elif value.dtype != np.int8:
        report.errors.append(f"{node.name}: constant of type {value.dtype} dequantized; "
                             "TensorRT needs INT8")
    else:
        report.warnings.append(f"{node.name}: INT8 weight with DequantizeLinear only "
                               "(TensorRT 10+; TensorRT 8.x expects float weight → Q → DQ)")


def _check_qparams(g: Graph, node, report: LintReport) -> None:
    name = node.name or node.output[0]
    scale = g.constant(node.input[1])
    if scale is None:
        report.errors.append(f"{name}: scale is not a constant (TensorRT needs build-time scales)")
        return
    if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        report.errors.append(f"{name}: scale has non-positive or non-finite values "
                             f"(min {float(np.min(scale)):.3g}); TensorRT needs scales > 0")
    if len(node.input) > 2 and node.input[2]:
        zp = g.constant(node.input[2])
        if zp is None:
            report.errors.append(f"{name}: zero point is not a constant")
        elif zp.dtype != np.int8:
            report.errors.append(f"{name}: zero point type {zp.dtype}, TensorRT needs INT8 "
                                 "(uint8 activations belong to the onnxruntime target)")
        elif np.any(zp != 0):
            report.errors.append(f"{name}: zero point is not 0; TensorRT supports only "
                                 "symmetric quantization")
    if scale.size > 1:
        _check_per_channel(g, node, scale, report)


def _check_per_channel(g: Graph, node, scale: np.ndarray, report: LintReport) -> None:
    name = node.name or node.output[0]
    source = node.input[0]
    if node.op_type == "DequantizeLinear" and source in g.producer:
        source = g.producer[source].input[0]  # the Q's input
    weight = g.constant(source)
    if weight is None:
        report.errors.append(f"{name}: per-channel scales on an activation; TensorRT supports "
                             "per-axis quantization of weights only")
        return
    axis = attribute(node, "axis", 1)
    axis = axis + weight.ndim if axis < 0 else axis
    if not 0 <= axis < weight.ndim or weight.shape[axis] != scale.size:
        report.errors.append(f"{name}: {scale.size} scales do not match axis {axis} of the "
                             f"weight {list(weight.shape)}")
        return
    for consumer, wanted in _output_channel_axes(g, node, weight.ndim):
        if wanted is None:
            report.warnings.append(f"{name}: per-channel weight feeds {consumer.op_type} "
                                   f"{consumer.name}; its output-channel axis is not checked")
        elif axis != wanted:
            report.errors.append(f"{name}: per-channel axis {axis} is not the output-channel "
                                 f"axis {wanted} of {consumer.op_type} {consumer.name} (weight "
                                 f"{list(weight.shape)}): each scale would scale an input "
                                 "channel")


def _output_channel_axes(g: Graph, node, ndim: int):
    """(MAC consumer, the weight axis that holds its output channels) for the tensor `node`
    quantizes: Conv 0; ConvTranspose 1; Gemm 0 with transB, else 1; MatMul's [.., K, N] the
    last. None where the consumer takes it in another role."""
    dq_nodes = [node] if node.op_type == "DequantizeLinear" else \
        [u for u in g.consumers.get(node.output[0], []) if u.op_type == "DequantizeLinear"]
    for dq in dq_nodes:
        for user in g.consumers.get(dq.output[0], []):
            slot = list(user.input).index(dq.output[0])
            if user.op_type == "Conv" and slot == 1:
                yield user, 0
            elif user.op_type == "ConvTranspose" and slot == 1:
                yield user, 1
            elif user.op_type == "Gemm" and slot == 1:
                yield user, 0 if attribute(user, "transB", 0) else 1
            elif user.op_type == "MatMul" and slot == 1:
                yield user, ndim - 1
            else:
                yield user, None


# -- coverage ---------------------------------------------------------------------------------
def node_macs(node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one Conv/ConvTranspose/MatMul/Gemm (symbolic dims as 1)."""
    out = shapes.get(node.output[0])
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    if out is None or b is None or a is None:
        return 0
    if node.op_type == "Conv":
        return math.prod(out) * math.prod(b[1:])
    if node.op_type == "ConvTranspose":
        return math.prod(a) * b[1] * math.prod(b[2:])
    k = a[-1] if node.op_type == "MatMul" or not attribute(node, "transA", 0) else a[0]
    return math.prod(out) * k


def _from_dq(g: Graph, name: str) -> bool:
    producer = g.producer.get(name)
    return producer is not None and producer.op_type == "DequantizeLinear"


@dataclass
class Coverage:
    total_macs: int
    int8_macs: int
    float_layers: list[tuple[str, int]]  # (node name, MACs), largest first

    @property
    def fraction(self) -> float:
        return self.int8_macs / self.total_macs if self.total_macs else 0.0


def _inferred_macs(model: onnx.ModelProto) -> dict[str, int]:
    """MACs per node with shapes from onnxruntime's symbolic inference, which follows shapes
    computed at run time (a ViT's token reshape: ONNX's own inference leaves those dims
    symbolic, counted as 1)."""
    from trtq.export.onnx_graph import resolved_shapes

    shapes = resolved_shapes(model)
    return {n.name: node_macs(n, shapes) for n in model.graph.node if n.op_type in MAC_OPS}


def int8_mac_coverage(model: onnx.ModelProto, macs_by_node: dict[str, int] | None = None
                      ) -> Coverage:
    """Coverage of `model`; `macs_by_node` (node name → MACs, e.g. from shapes seen at run time)
    replaces the MACs ONNX shape inference finds, which are 0 where it cannot follow a shape."""
    g = Graph(model)
    if macs_by_node is None:
        macs_by_node = _inferred_macs(model)
    total = int8 = 0
    floats = []
    for node in model.graph.node:
        if node.op_type not in MAC_OPS:
            continue
        macs = macs_by_node.get(node.name, 0)
        total += macs
        if _from_dq(g, node.input[0]) and _from_dq(g, node.input[1]):
            int8 += macs
        else:
            floats.append((node.name, macs))
    floats.sort(key=lambda item: -item[1])
    return Coverage(total, int8, floats)


def module_path(node_name: str) -> str:
    """The module path of an exported node: `/image_encoder/layers.1/attn/qkv/MatMul` →
    `image_encoder.layers.1.attn.qkv` (a part traced from a submodule lacks that submodule's
    prefix: `trtq.models.adapters.ExportBoundary.module_prefix`)."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])
