"""Pin the float plan's layers to FP32 in weakly typed INT8 builds (TensorRT 8.5–10.x).

A weakly typed INT8 build sets the INT8 and FP16 builder flags, so TensorRT may run every layer
that Q/DQ does not pin in FP16. For each node of `trtq.engines.float_plan` this sets, on every
layer the parser made from it, `layer.precision` and `layer.set_output_type(i, …)` (float
outputs only: shape and index outputs keep their integer types) to the plan's precision, and
sets BuilderFlag.OBEY_PRECISION_CONSTRAINTS (8.2+): with it, a constrained layer that has no
implementation in that precision fails the build with an error, where PREFER_… would silently
fall back to another precision (NvInfer.h, ILayer::setPrecision and setOutputType).

Layers are found by name: TensorRT's ONNX parser names the first layer of a node after the node
and any further ones `<node>_<counter>` (e.g. GreaterOrEqual → `…/GreaterOrEqual`,
`…/GreaterOrEqual_195`, `…/GreaterOrEqual_196`; Gemm → MatrixMultiply `…/Gemm` + bias add
`…/Gemm_754`); an exact node name wins over a suffixed reading. Layers named after no node
(`ONNXTRT_Broadcast_…` shuffles of a constant operand, `ONNXTRT_ShapeShuffle_…`) that feed only
constrained layers are pinned with them ("helper layers"), so a threshold table cannot pass
through an FP16 shuffle. Layers that compute on integers or booleans only (the decomposition's
index arithmetic, the Or of GreaterOrEqual) are exact in any mode and left alone.

Strongly typed networks (TensorRT 11, TensorRT-RTX, `--strongly-typed` on 9.1+) reject both
calls and have no precision flags: their types come from the ONNX, where these nodes are FP32
already, so nothing is called there; FP16 and FP32 builds have no INT8 flag and are not touched.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import onnx

from trtq.engines.float_plan import PRECISION, float_plan, layer_key, plan_counts

log = logging.getLogger("trtq.engines")

APPLIED = "applied"
SKIPPED_NOT_INT8 = "skipped: not int8"
SKIPPED_STRONGLY_TYPED = "skipped: strongly typed"
_FLOAT_TYPES = ("FLOAT", "HALF", "BF16")
_DTYPES = {"fp32": "FLOAT", "fp16": "HALF"}
_NO_PRECISION = ("SHAPE", "CONSTANT")  # read only dimensions / hold weights: nothing to compute


class PinnedLayer(NamedTuple):
    index: int  # in the network
    name: str
    node: str | None  # the plan node it was made from; None for a helper layer
    reason: str


def node_of_layer(layer_name: str, nodes: set[str]) -> str | None:
    """The ONNX node (its `layer_key`) a parsed layer was made from, else None."""
    if layer_name in nodes:
        return layer_name
    base, sep, counter = layer_name.rpartition("_")
    return base if sep and counter.isdigit() and base in nodes else None


def _computes_on_float(layer) -> bool:
    if layer.type.name in _NO_PRECISION:
        return False
    inputs = (layer.get_input(i) for i in range(layer.num_inputs))
    return any(t is not None and t.dtype.name in _FLOAT_TYPES for t in inputs)


class LayerPlan(NamedTuple):
    pinned: list[PinnedLayer]  # network order
    integer_layers: int  # layers of plan nodes that compute on integers only (left alone)
    unmatched: list[str]  # plan nodes with no layer of their name


def plan_layers(network, plan: dict[str, str], nodes: set[str]) -> LayerPlan:
    """The layers of `network` to pin for `plan` (node key → reason); `nodes` holds every node
    key of the ONNX, so that `…/Max_1` is read as its own node, not as a layer of `…/Max`."""
    pinned: dict[int, PinnedLayer] = {}
    integer_only = 0
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    owners = [node_of_layer(layer.name, nodes) for layer in layers]
    for i, (layer, owner) in enumerate(zip(layers, owners, strict=True)):
        if owner not in plan:
            continue
        if _computes_on_float(layer):
            pinned[i] = PinnedLayer(i, layer.name, owner, plan[owner])
        else:
            integer_only += 1
    _add_helpers(layers, owners, pinned)
    seen = set(owners)
    return LayerPlan(sorted(pinned.values()), integer_only,
                     [node for node in plan if node not in seen])


def _add_helpers(layers: list, owners: list, pinned: dict[int, PinnedLayer]) -> None:
    """Pin layers named after no node whose outputs all feed pinned layers (last first, so a
    chain of them resolves in one pass)."""
    users = defaultdict(list)
    for i, layer in enumerate(layers):
        for j in range(layer.num_inputs):
            tensor = layer.get_input(j)
            if tensor is not None:
                users[tensor.name].append(i)
    for i in reversed(range(len(layers))):
        layer = layers[i]
        if i in pinned or owners[i] is not None or not _computes_on_float(layer):
            continue
        fed = [u for j in range(layer.num_outputs) for u in users[layer.get_output(j).name]]
        if fed and all(u in pinned for u in fed):
            reasons = sorted({pinned[u].reason for u in fed},
                             key=lambda r: PRECISION[r] != "fp32")
            pinned[i] = PinnedLayer(i, layer.name, None, reasons[0])


def pin_layer(layer, dtype) -> None:
    """Set the layer's precision and the type of each of its float outputs to `dtype`."""
    layer.precision = dtype
    for i in range(layer.num_outputs):
        if layer.get_output(i).dtype.name in _FLOAT_TYPES:
            layer.set_output_type(i, dtype)


def constrain_float_layers(parsed, precision: str, config) -> dict:
    """Pin the float plan of `parsed.path` in a weakly typed INT8 build; what was done (or why
    nothing was), for the engine sidecar."""
    if precision != "int8":
        return {"status": SKIPPED_NOT_INT8,
                "why": f"a {precision} build sets no INT8 flag; nothing to keep out of it"}
    if parsed.strongly_typed:
        return {"status": SKIPPED_STRONGLY_TYPED,
                "why": "strongly typed networks take every type from the ONNX and reject "
                       "layer precision calls (TensorRT 11, TensorRT-RTX, --strongly-typed)"}
    model = onnx.load(str(parsed.path), load_external_data=False)
    plan = float_plan(model, str(Path(parsed.path).parent))
    layers = plan_layers(parsed.network, plan, {layer_key(n) for n in model.graph.node})
    trt = parsed.trt
    for item in layers.pinned:
        pin_layer(parsed.network.get_layer(item.index),
                  getattr(trt.DataType, _DTYPES[PRECISION[item.reason]]))
    if layers.pinned:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    record = _record(plan, layers)
    if record["unmatched"]:
        log.warning("%s: %d float-plan node(s) have no layer of that name in the parsed network "
                    "(left to TensorRT): %s", parsed.path.name, len(record["unmatched"]),
                    ", ".join(record["unmatched"][:5]))
    log.info("%s: %d layers pinned (%s)", parsed.path.name, len(layers.pinned),
             record["layers"])
    return record


def _record(plan: dict[str, str], layers: LayerPlan) -> dict:
    by_reason: dict[str, Counter] = defaultdict(Counter)
    nodes: dict[str, list[str]] = defaultdict(list)
    for item in layers.pinned:
        by_reason[item.reason][PRECISION[item.reason]] += 1
        if item.node is not None and item.node not in nodes[item.reason]:
            nodes[item.reason].append(item.node)
    planned = plan_counts(plan)
    return {"status": APPLIED, "obey_precision_constraints": bool(layers.pinned),
            "precisions": {reason: PRECISION[reason] for reason in planned},
            "plan_nodes": planned,
            "layers": {reason: dict(by_reason[reason]) for reason in planned
                       if reason in by_reason},
            "helper_layers": sum(item.node is None for item in layers.pinned),
            "integer_layers_left": layers.integer_layers,
            "constrained_nodes": dict(nodes),
            "unmatched": layers.unmatched}

