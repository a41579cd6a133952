"""Where Q/DQ goes in a float ONNX graph, by TensorRT's placement rules.

A site is one input of a Conv, ConvTranspose, MatMul or Gemm node. Constant weights are
quantized per output channel (Conv: axis 0 of [K, C, R, S]; ConvTranspose: axis 1 of
[C, K/g, R, S]; Gemm: 0 with transB, else 1; MatMul's 2-D [K, N]: 1), activations per tensor.
Each site carries the name of the quantizer it stands for, built from the node's name as torch
writes it (`/blocks.0/attn/qkv/MatMul` → module `blocks.0.attn.qkv`):

* a layer with a constant weight: `<module>.input_quantizer` and `<module>.weight_quantizer`;
* a product of two activations (attention's Q·Kᵀ and A·V): `<module>.<op>.input_quantizer` and
  `<module>.<op>.other_quantizer`, `<op>` being the node's own last name part in lower case
  (`matmul`, `matmul_1`).

These are the names trtq's recipe rules match, the same as for a PyTorch model's quantizers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

from trtq.errors import TrtqError
from trtq.export.onnx_graph import Graph, attribute

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
FLOAT_TYPES = (onnx.TensorProto.FLOAT,)


@dataclass(frozen=True)
class Site:
    """One quantized input of one node."""

    node: str  # the consuming node's name
    op_type: str
    slot: int  # which input of the node
    tensor: str  # the tensor that input reads
    quantizer: str  # the quantizer name recipes match
    weight: bool  # a constant (quantized once, per channel) or an activation (calibrated)
    axis: int | None = None  # output-channel axis of a weight
    has_weight: bool = True  # the node multiplies by a constant (not two activations)

    @property
    def module_types(self) -> tuple[str, ...]:
        """What a recipe rule's `module_type` matches here: the ONNX op type, and the PyTorch
        layer it comes from (a MatMul/Gemm with a constant weight is a `Linear`, Conv a
        `Conv2d`, ConvTranspose a `ConvTranspose2d`)."""
        torch_names = {"Conv": "Conv2d", "ConvTranspose": "ConvTranspose2d"}
        layer = torch_names.get(self.op_type) or ("Linear" if self.has_weight else None)
        return (self.op_type, layer) if layer else (self.op_type,)


def _clean(part: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.\-]", "_", part)


def module_of(node: onnx.NodeProto, index: int) -> tuple[str, str]:
    """(module path, op part) of a node: `/a/b.1/c/MatMul_1` → (`a.b.1.c`, `matmul_1`). A node
    without a torch-style scoped name is its own module (`<name>`, `<op>`)."""
    parts = [p for p in node.name.split("/") if p]
    if len(parts) >= 2:
        return ".".join(_clean(p) for p in parts[:-1]), _clean(parts[-1]).lower()
    own = _clean(parts[0]) if parts else f"{node.op_type.lower()}_{index}"
    return own, node.op_type.lower()


def _weight_axis(node: onnx.NodeProto, ndim: int) -> int | None:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if attribute(node, "transB", 0) else 1
    return 1 if ndim == 2 else None  # MatMul: a batched constant is quantized per tensor


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate


def find_sites(model: onnx.ModelProto, base_dir: str | None = None) -> list[Site]:
    """Every quantizable input of every Conv/ConvTranspose/MatMul/Gemm in `model`."""
    check_quantizable(model)
    g = Graph(model, base_dir)
    sites: list[Site] = []
    taken: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if node.op_type not in QUANTIZED_OPS or node.domain not in ("", "ai.onnx"):
            continue
        weight_slot = 1 if node.op_type != "MatMul" or _constant_weight(g, node) else None
        module, op = module_of(node, index)
        if weight_slot is None:
            owner = _unique(f"{module}.{op}", taken)
            names = ("input_quantizer", "other_quantizer")
            sites += [Site(node.name, node.op_type, slot, node.input[slot], f"{owner}.{leaf}",
                           False, has_weight=False) for slot, leaf in enumerate(names)]
            continue
        if not g.is_constant(node.input[1]):
            continue  # a Conv/Gemm whose weight is computed: left float
        owner = _unique(module if module not in taken else f"{module}.{op}", taken)
        ndim = len(_dims(g, node.input[1]))
        sites.append(Site(node.name, node.op_type, 0, node.input[0],
                          f"{owner}.input_quantizer", False))
        sites.append(Site(node.name, node.op_type, 1, node.input[1],
                          f"{owner}.weight_quantizer", True, _weight_axis(node, ndim)))
    return sites


def _dims(g: Graph, name: str) -> tuple[int, ...]:
    init = g.initializers.get(name)
    if init is not None:
        return tuple(init.dims)
    return tuple(g.constant(name).shape)


def _constant_weight(g: Graph, node: onnx.NodeProto) -> bool:
    return g.is_constant(node.input[1]) and not g.is_constant(node.input[0])


def check_quantizable(model: onnx.ModelProto) -> None:
    """Refuse graphs this step cannot quantize, saying why."""
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "QLinearConv",
              "MatMulInteger", "ConvInteger"}:
        raise TrtqError("this ONNX graph is already quantized (it holds QuantizeLinear/"
                        "DequantizeLinear or integer ops); give quantize-onnx the float model")
    for value in model.graph.input:
        elem = value.type.tensor_type.elem_type
        if elem == onnx.TensorProto.FLOAT16:
            raise TrtqError(f"input {value.name} is float16: quantize-onnx takes an FP32 graph "
                            "(export it in float32; TensorRT picks FP16 itself)")
    if not any(n.op_type in QUANTIZED_OPS for n in model.graph.node):
        raise TrtqError("this ONNX graph has no Conv, ConvTranspose, MatMul or Gemm: nothing to "
                        "quantize")
