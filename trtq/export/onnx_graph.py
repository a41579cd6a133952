"""Small read helpers over an ONNX graph: constants, producers, consumers, static shapes."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


class Graph:
    """Index of one `onnx.GraphProto`: who produces and who consumes each tensor."""

    def __init__(self, model: onnx.ModelProto, base_dir: str | None = None) -> None:
        self.model = model
        self.base_dir = base_dir  # where a graph loaded without its external data keeps it
        self.graph = model.graph
        self.initializers = {i.name: i for i in self.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant-node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name], base_dir=self.base_dir or "")
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def is_constant(self, name: str) -> bool:
        return self.constant(name) is not None


def attribute(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def static_shapes(model: onnx.ModelProto, unknown: int = 1,
                  data_prop: bool = False) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor after ONNX shape inference; symbolic dims count as `unknown`.
    `data_prop` also propagates computed shapes (Shape → Gather → Concat → Reshape)."""
    return _shapes(onnx.shape_inference.infer_shapes(model, data_prop=data_prop), unknown)


def resolved_shapes(model: onnx.ModelProto, unknown: int = 1) -> dict[str, tuple[int, ...]]:
    """Like `static_shapes`, through onnxruntime's symbolic shape inference, which also follows
    shapes computed at run time (the heads of an attention reshaped with Shape → Gather →
    Concat); onnx's inference with data propagation where the symbolic one fails."""
    import os
    import tempfile

    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # where it cannot finish, onnxruntime's inference saves its partial model (and external data
    # files named by UUIDs) into the working directory: give it a private one
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="trtq-shapes-") as scratch:
        os.chdir(scratch)
        try:
            inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        except Exception:  # noqa: BLE001 - e.g. custom ops it cannot type; fall back
            inferred = None
        finally:
            os.chdir(here)
    if inferred is None:
        return static_shapes(model, unknown, data_prop=True)
    return _shapes(inferred, unknown)


def _shapes(inferred: onnx.ModelProto, unknown: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + \
        list(inferred.graph.output)
    for value in values:
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else unknown
                                   for d in ttype.shape.dim)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes
