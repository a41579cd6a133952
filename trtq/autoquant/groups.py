"""Layer groups: the units `trtq autoquant` turns INT8 on or off, and how a measured time is
attributed to one.

A group is a repeated block of the model: the module path up to its last numeric index
(`backbone.stages.1.blocks.0`, `head.layers.1`), or, for a module with no index, its first
three components (`head.fusion.attn`); SAM's are listed in `trtq.models.sam_adapter`. Every
quantizer belongs to the group of its owner module, so switching a group off leaves its Linear
layers, convolutions and attention matmuls float together.

Times come from two sources, both named after ONNX nodes: onnxruntime's per-node profile
(`/stages.1/blocks.0/attn/qkv/MatMul`, where a part traced from a submodule lacks that
submodule's prefix: the model adapter's `ExportBoundary.module_prefix`, passed here as
`prefix`) and TensorRT's per-layer profile, whose layer names join the ONNX nodes a layer fused
(`A + B + C`) or name the first and last of a Myelin region (`{ForeignNode[A...B]}`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from trtq.calib.modules import quantizers
from trtq.export.qdq_lint import module_path

OTHER = "(not attributable to a group)"
_INDEX = re.compile(r"^\d+$")
_FOREIGN = re.compile(r"ForeignNode\[(.+?)(?:\.\.\.(.+))?\]")


def group_of(module: str) -> str:
    """The group of a module path (see the module docstring)."""
    parts = module.split(".")
    indexed = [i for i, p in enumerate(parts) if _INDEX.match(p)]
    if indexed:
        return ".".join(parts[:indexed[-1] + 1])
    return ".".join(parts[:3])


def quantizer_groups(model) -> dict[str, list[str]]:
    """{group: [quantizer names]} over the model's configured quantizers, in model order."""
    groups: dict[str, list[str]] = {}
    for name, q in quantizers(model):
        if q.spec is not None:
            groups.setdefault(group_of(name.rpartition(".")[0]), []).append(name)
    return groups


def node_module(node_name: str, prefix: str = "") -> str:
    """The module of an ONNX node of a part whose node names lack `prefix`:
    `/layers.1/blocks.0/attn/qkv/MatMul` with prefix "backbone." →
    `backbone.layers.1.blocks.0.attn.qkv`; '' for names without a module path."""
    module = module_path(node_name.strip())
    if not module:
        return ""
    return module if module.startswith(prefix.rstrip(".")) else prefix + module


def attribute(node_name: str, prefix: str, groups: Iterable[str]) -> str:
    """The group a node (or a TensorRT layer naming ONNX nodes) of a part whose node names
    lack `prefix` belongs to, or OTHER."""
    names = _layer_nodes(node_name)
    ordered = sorted(groups, key=len, reverse=True)
    for name in names:
        module = node_module(name, prefix)
        for group in ordered:
            if module == group or module.startswith(group + "."):
                return group
    return OTHER


def _layer_nodes(name: str) -> list[str]:
    """The ONNX node names inside a TensorRT layer name (or the name itself)."""
    foreign = _FOREIGN.search(name)
    if foreign:
        return [n for n in foreign.groups() if n]
    return [n.strip() for n in name.split(" + ") if n.strip()]
