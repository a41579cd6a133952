"""Activation ranges of an ONNX graph, observed in onnxruntime with trtq's observers.

The graph gets every calibrated tensor as an extra output and runs once per sample; each output
streams into the `ActivationObserver` of its quantizer spec (min/max, percentile, entropy, MSE:
the same code PyTorch calibration runs). A graph with external data is run from a temporary file
beside the original, so its data file is found where the graph says. `macs_at_run_time` reads
the shapes of one run the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from trtq.progress import progress
from trtq.recipes import QuantizerSpec

log = logging.getLogger("trtq.onnx_ptq")


def _with_outputs(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    present = {o.name for o in augmented.graph.output}
    for name in tensors:
        if name not in present:
            augmented.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return augmented


@contextlib.contextmanager
def _session(model: onnx.ModelProto, names: Iterable[str], source: Path, has_external: bool):
    """A CPU session of `model` with the tensors `names` as extra outputs. A graph with external
    data runs from a temporary file beside `source` (its data file is found where the graph
    says), removed afterwards."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    augmented = _with_outputs(model, names)
    if not has_external:
        yield ort.InferenceSession(augmented.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
        return
    temp = source.with_name(f".{source.stem}.calib-{os.getpid()}.onnx")
    onnx.save(augmented, str(temp))
    try:
        yield ort.InferenceSession(str(temp), options, providers=["CPUExecutionProvider"])
    finally:
        temp.unlink(missing_ok=True)


def observe(model: onnx.ModelProto, source: str | os.PathLike,
            wanted: dict[str, list[QuantizerSpec]], feeds: list[dict[str, np.ndarray]],
            has_external: bool = False, show_progress: bool = False
            ) -> dict[tuple[str, QuantizerSpec], tuple[float, float]]:
    """(lo, hi) of each (tensor, spec) in `wanted` (tensor → the specs its quantizers use),
    observed over `feeds`. `model` may be loaded without its external data (then
    `has_external`), `source` is its file."""
    import torch

    from trtq.calib.observers import ActivationObserver

    observers = {(t, s): ActivationObserver(s) for t, specs in wanted.items() for s in specs}
    names = list(wanted)
    with _session(model, names, Path(source), has_external) as session:
        for feed in progress(feeds, show_progress, len(feeds), "calibrating"):
            values = dict(zip(names, session.run(names, feed), strict=True))
            for (tensor, _), observer in observers.items():
                observer.update(torch.from_numpy(np.asarray(values[tensor], dtype=np.float32)))
    return {key: observer.compute() for key, observer in observers.items()}


def macs_at_run_time(model: onnx.ModelProto, source: str | os.PathLike,
                     feed: dict[str, np.ndarray], has_external: bool = False) -> dict[str, int]:
    """Multiply-accumulates of each Conv/ConvTranspose/MatMul/Gemm (node name → MACs) from the
    shapes one run on `feed` produces (ONNX shape inference loses shapes computed at run time,
    as a ViT's Reshape of its patch tokens)."""
    from trtq.export.onnx_graph import Graph
    from trtq.export.qdq_lint import MAC_OPS, node_macs

    g = Graph(model)
    mac_nodes = [n for n in model.graph.node if n.op_type in MAC_OPS]
    names = sorted({t for n in mac_nodes for t in (*n.input[:2], n.output[0])
                    if t and t not in g.initializers and t not in feed})
    with _session(model, names, Path(source), has_external) as session:
        shapes = {name: tuple(v.shape) for name, v in zip(names, session.run(names, feed),
                                                           strict=True)}
    shapes |= {k: tuple(v.shape) for k, v in feed.items()}
    shapes |= {k: tuple(init.dims) for k, init in g.initializers.items()}
    return {n.name: node_macs(n, shapes) for n in mac_nodes}
