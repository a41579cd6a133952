"""FP16 ONNX for strongly typed TensorRT networks (TensorRT 11, TensorRT-RTX).

TensorRT 11 has no FP16 builder flag: an FP16 engine comes from an ONNX whose tensors are FP16.
`convert_to_fp16` rewrites an FP32 export so every float computation runs in float16 except the
ops in `keep_fp32_ops`, which get Cast(FLOAT) on their float inputs and Cast(FLOAT16) on their
float outputs. Graph inputs and outputs stay float32, so callers feed and read the same arrays
as with the FP32 export. INT8 (Q/DQ) graphs and custom-domain nodes are refused.

onnxruntime's CPU provider (1.32, x86) has FP16 kernels only for data movement and
LayerNormalization: it runs every other FP16 node in FP32 between Casts it inserts, then drops
back-to-back Casts, so it checks the wiring and the FP16 weights but neither FP16 rounding of
activations nor overflow. `onnx.reference.ReferenceEvaluator` computes each op in float16; the
tests use it for that. No op is kept in FP32 for onnxruntime's sake.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq.artifacts import (
    atomic_output,
    check_writable,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)
from trtq.errors import ArtifactError
from trtq.export import onnx_files

log = logging.getLogger("trtq.export")

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)  # 65504
# LayerNorm after attention overflows FP16 (TensorRT warns so), Softmax loses mass in FP16, and
# a decomposed norm squares its input (Pow) and sums it (Reduce*) before Sqrt: |x| > 256 squared
# is already past 65504.
KEEP_FP32_OPS: tuple[str, ...] = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum",
                                  "ReduceSumSquare", "ReduceL2", "Pow", "Sqrt")
# An elementwise op whose non-constant float inputs all come out of the FP32 region stays FP32,
# so a reduction's result never passes through FP16 on its way to the next kept op (the
# variance + eps Add between ReduceMean and Sqrt).
_FOLLOW_FP32_OPS = ("Add", "Sub", "Mul", "Div", "Reciprocal")
# Inputs the ONNX spec types as float32 whatever the data type T is: (op, input index).
_FP32_INPUTS = {("Resize", 2), ("Upsample", 1)}
_REFUSED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def _refuse_unsupported(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        what = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.op_type in _REFUSED_OPS:
            raise ArtifactError(f"{what}: INT8 Q/DQ graphs are not converted to FP16; convert "
                                "the FP32 export (trtq export without a recipe)")
        if node.domain not in ("", "ai.onnx"):
            raise ArtifactError(f"{what} is in custom domain {node.domain!r}, whose types the "
                                "FP16 conversion cannot know; export without custom ops")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute):
            raise ArtifactError(f"{what} holds a subgraph, which the FP16 conversion does not "
                                "handle; export without control flow")


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor after strict shape/type inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ArtifactError(f"ONNX type inference fails on the model ({str(exc)[:200]}); "
                            "re-export it") from None
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})
    untyped = [o for n in graph.node for o in n.output if o and not types.get(o)]
    if untyped:
        raise ArtifactError(f"ONNX type inference leaves {untyped[:3]} untyped; re-export the "
                            "model with static types")
    if FLOAT16 in types.values():
        raise ArtifactError("the model already has float16 tensors; convert the FP32 export")
    return types


def _constant_nodes(graph: onnx.GraphProto) -> set[int]:
    """Constant nodes and Identity nodes of constants (torch's export shares weights so)."""
    known = {i.name for i in graph.initializer}
    indices = set()
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" or (node.op_type == "Identity" and node.input[0] in known):
            indices.add(index)
            known.add(node.output[0])
    return indices


def _fp32_nodes(graph: onnx.GraphProto, floats: set[str], keep: tuple[str, ...],
                constants: set[int]) -> set[int]:
    """Indices of the non-constant nodes that compute in FP32: kept ops and their followers."""
    fixed = {i.name for i in graph.initializer} | {graph.node[i].output[0] for i in constants}
    fp32, produced = set(), set()
    for index, node in enumerate(graph.node):
        inputs = [name for name in node.input if name in floats and name not in fixed]
        kept = node.op_type in keep and (inputs or any(o in floats for o in node.output))
        follows = node.op_type in _FOLLOW_FP32_OPS and inputs and set(inputs) <= produced
        if index not in constants and (kept or follows):
            fp32.add(index)
            produced.update(node.output)
    return fp32


def _plan(graph: onnx.GraphProto, floats: set[str], keep: tuple[str, ...]):
    """The FP32 node indices and the precisions each tensor's uses need. A constant node is
    FP32 when all its consumers are; walking backwards settles it after its consumers."""
    constants = _constant_nodes(graph)
    fp32 = _fp32_nodes(graph, floats, keep, constants)
    needs: dict[str, set[int]] = defaultdict(set)
    for output in graph.output:
        needs[output.name].add(FLOAT)
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        if index in constants and needs[node.output[0]] <= {FLOAT}:
            fp32.add(index)
        for slot, name in enumerate(node.input):
            fixed = index in fp32 or (node.op_type, slot) in _FP32_INPUTS
            needs[name].add(FLOAT if fixed else FLOAT16)
    return fp32, needs, constants


def _to_fp16(array: np.ndarray, what: str, name: str = "") -> onnx.TensorProto:
    if array.size and float(np.abs(array).max()) > FP16_MAX:
        raise ArtifactError(f"{what} holds values beyond the FP16 range (±{FP16_MAX:.0f}); "
                            "keep its consumer in FP32 (keep_fp32_ops)")
    return numpy_helper.from_array(array.astype(np.float16), name)


def _retype(node: onnx.NodeProto) -> None:
    """Make a node of the FP16 region that creates a float tensor create a float16 one."""
    what = f"{node.op_type} {node.name or node.output[0]!r}"
    for attr in node.attribute:
        if attr.name in ("to", "dtype") and attr.i == FLOAT:
            attr.i = FLOAT16
        elif attr.name == "value" and attr.t.data_type == FLOAT:
            attr.t.CopyFrom(_to_fp16(numpy_helper.to_array(attr.t), what))
    if node.op_type == "Constant" and node.attribute[0].name in ("value_float", "value_floats"):
        value = np.array(helper.get_attribute_value(node.attribute[0]), np.float32)
        node.ClearField("attribute")
        node.attribute.append(helper.make_attribute("value", _to_fp16(value, what)))
    if node.op_type == "ConstantOfShape" and not node.attribute:  # default: float32 zero
        node.attribute.append(helper.make_attribute("value", _to_fp16(np.zeros(1), what)))


class _Rewrite:
    """Tracks where each float tensor lives in each precision and inserts the Casts."""

    def __init__(self, graph: onnx.GraphProto, floats: set[str]) -> None:
        self.floats = floats
        self.names = {n for node in graph.node for n in (*node.input, *node.output)}
        self.names |= {v.name for v in (*graph.input, *graph.initializer)}
        self.alias: dict[tuple[str, int], str] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.casts = 0

    def unique(self, name: str) -> str:
        candidate, n = name, 0
        while candidate in self.names:
            n += 1
            candidate = f"{name}_{n}"
        self.names.add(candidate)
        return candidate

    def get(self, name: str, dtype: int) -> str:
        """The name of `name` in `dtype`, casting from the other precision on first use."""
        if (name, dtype) not in self.alias:
            source = self.alias[(name, FLOAT16 if dtype == FLOAT else FLOAT)]
            out = self.unique(f"{name}/{'fp32' if dtype == FLOAT else 'fp16'}")
            self.nodes.append(helper.make_node("Cast", [source], [out], name=out, to=dtype))
            self.alias[(name, dtype)] = out
            self.casts += 1
        return self.alias[(name, dtype)]

    def add(self, node: onnx.NodeProto, fp32: bool, outputs: set[str]) -> None:
        for slot, name in enumerate(node.input):
            if name in self.floats:
                wanted = fp32 or (node.op_type, slot) in _FP32_INPUTS
                node.input[slot] = self.get(name, FLOAT if wanted else FLOAT16)
        if not fp32 and any(o in self.floats for o in node.output):
            _retype(node)
        self.nodes.append(node)
        for slot, name in enumerate(node.output):
            if name not in self.floats:
                continue
            if fp32 or name not in outputs:
                self.alias[(name, FLOAT if fp32 else FLOAT16)] = name
            else:  # an FP16 graph output: rename it and cast back to float32 under its name
                node.output[slot] = self.alias[(name, FLOAT16)] = self.unique(f"{name}/fp16")
                self.alias[(name, FLOAT)] = name
                self.nodes.append(helper.make_node("Cast", [node.output[slot]], [name],
                                                   name=self.unique(f"{name}/cast"), to=FLOAT))
                self.casts += 1


def _convert_initializers(graph: onnx.GraphProto, rewrite: _Rewrite,
                          needs: dict[str, set[int]]) -> None:
    """FP16 initializers for FP16 uses; those with FP32 uses too keep an FP32 twin."""
    inputs = {i.name for i in graph.input}
    for init in list(graph.initializer):
        need = needs.get(init.name, set())
        if init.data_type != FLOAT or init.name in inputs:
            continue
        if FLOAT in need or not need:
            rewrite.alias[(init.name, FLOAT)] = init.name
        if FLOAT16 in need:
            name = rewrite.unique(f"{init.name}/fp16") if FLOAT in need else init.name
            half = _to_fp16(numpy_helper.to_array(init), f"initializer {init.name!r}", name)
            if FLOAT in need:
                graph.initializer.append(half)
            else:
                init.CopyFrom(half)
            rewrite.alias[(init.name, FLOAT16)] = name


def _check(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ArtifactError(f"the FP16 graph is inconsistent ({str(exc).splitlines()[0]}); add "
                            "the op it names to keep_fp32_ops") from None


def convert_to_fp16(model: onnx.ModelProto,
                    keep_fp32_ops: tuple[str, ...] = KEEP_FP32_OPS) -> onnx.ModelProto:
    """A copy of `model` computing in float16 except `keep_fp32_ops`, float32 at its interface."""
    _refuse_unsupported(model)
    types = _tensor_types(model)
    floats = {name for name, dtype in types.items() if dtype == FLOAT}
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    fp32, needs, constants = _plan(graph, floats, tuple(keep_fp32_ops))
    rewrite = _Rewrite(graph, floats)
    rewrite.alias.update({(i.name, FLOAT): i.name for i in graph.input if i.name in floats})
    _convert_initializers(graph, rewrite, needs)
    outputs = {o.name for o in graph.output}
    for index, node in enumerate(graph.node):
        rewrite.add(node, index in fp32, outputs)
    graph.ClearField("node")
    graph.node.extend(rewrite.nodes)
    graph.ClearField("value_info")  # stale float32 types; inference recomputes them
    _check(result)
    log.info("FP16 graph: %d of %d nodes kept in FP32, %d casts inserted",
             len(fp32 - constants), len(model.graph.node), rewrite.casts)
    return result


def _fp16_sidecar(src: Path, dst: Path, keep: tuple[str, ...], data: str | None) -> None:
    """The source sidecar's fields (less its FP32 parity figures) plus the FP16 ones; `data`:
    the FP16 graph's external weights file, if it has one."""
    record = read_sidecar(src) if sidecar_path(src).is_file() else {}
    generic = ("schema_version", "kind", "file", "sha256", "created_utc", "versions", "inputs",
               "companions", "external_data")
    extra = {k: v for k, v in record.items() if k not in generic and not k.startswith("parity_")}
    extra.update(precision="fp16", fp16_keep_fp32_ops=list(keep), external_data=data)
    inputs = {**record.get("inputs", {}), "onnx_fp32": sha256_file(src)}
    write_sidecar(dst, record.get("kind", "onnx"), inputs, extra, force=True,
                  companions=(data,) if data else ())


def write_fp16(src: str | os.PathLike, dst: str | os.PathLike, force: bool = False, *,
               keep_fp32_ops: tuple[str, ...] = KEEP_FP32_OPS) -> Path:
    """Convert the ONNX file `src` to FP16 at `dst` (atomically), with a sidecar beside it."""
    from trtq.export.onnxruntime_session import check_onnx

    src, dst = check_onnx(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ArtifactError(f"{dst} is the source model; write the FP16 model to another path")
    check_writable(dst, force)
    check_writable(sidecar_path(dst), force)
    converted = convert_to_fp16(onnx.load(str(src)), keep_fp32_ops)
    with atomic_output(dst, force) as tmp:
        data = onnx_files.save(converted, tmp, dst.name)
    _fp16_sidecar(src, dst, tuple(keep_fp32_ops), data)
    log.info("wrote %s (FP16, %s kept in FP32)", dst, ", ".join(keep_fp32_ops) or "nothing")
    return dst
