"""Model adapters: what the model-agnostic core needs to know about one model family, as data.

The quantization core (quantizer insertion, calibration, search, Q/DQ export, lint, autoquant)
knows no model. What is model-specific lives in an adapter beside the model, and the core takes
it as a parameter:

* `rules`: the recipe presets' model rules (`trtq.recipes.ModelRules`): the layers kept float,
  BIG's attentions, extra post-GELU / shifted-input sites, the onnxruntime hot spots;
* `boundaries`: the export parts, one ONNX file each (`DIR/<name>.onnx`), with the prefix each
  part's ONNX node names lack relative to the whole model's module names (profiles and lint
  reports name ONNX nodes; recipes and autoquant's groups name modules);
* `build_parts(model)`: those parts as `OnnxPart`s (module, example inputs, input/output names,
  parity inputs), for `trtq export`;
* `module_types`: the model classes it serves (qualified names), so that `adapter_for_module`
  finds it for a model object (the Python API).

Registered models name their adapter (`register_model(..., adapter="sam")`); any other model (a
user's `nn.Module`) gets `GENERIC`, whose presets are the generic rules alone. The built-in
adapters: `trtq.models.sam_adapter.SAM` (SAM ViT, MobileSAM, LiteMedSAM) and
`trtq.models.classifiers.VIT_CLASSIFIER` (ViT/DeiT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trtq.errors import TrtqError
from trtq.recipes import GENERIC_RULES, ModelRules


@dataclass(frozen=True)
class OnnxPart:
    """One exported graph: the module, example inputs for tracing, names, and parity inputs."""

    name: str  # the file is <name>.onnx (SAM: "encoder" / "decoder")
    module: Any
    example_args: tuple
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    parity_feeds: tuple[dict, ...]
    dynamic_axes: dict | None = None


@dataclass(frozen=True)
class ExportBoundary:
    """An export part's name and the prefix its ONNX node names lack: a part traced from the
    submodule `backbone` names its nodes `/blocks.0/...` for the module `backbone.blocks.0`,
    so its prefix is "backbone."; a part traced from a wrapper that holds the model's
    submodules under their own names has none."""

    name: str
    module_prefix: str = ""


@dataclass(frozen=True)
class ModelAdapter:
    """A model family's specifics (see the module docstring)."""

    name: str
    rules: ModelRules = GENERIC_RULES
    boundaries: tuple[ExportBoundary, ...] = ()
    build_parts: Callable[[Any], tuple[OnnxPart, ...]] | None = None
    module_types: tuple[str, ...] = ()
    # builds the calibration task (`trtq.calib.tasks`) from data that is not a task or a
    # forward loop (SAM: CalibSamples → a box-prompted run with the mask loss)
    calibration_task: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        names = self.part_names
        if len(set(names)) != len(names):
            raise ValueError(f"adapter {self.name!r}: export part names repeat: {names}")
        if (self.build_parts is None) != (not names):
            raise ValueError(f"adapter {self.name!r}: give both its export boundaries and "
                             "build_parts, or neither")

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.boundaries)

    def part_prefix(self, part: str | None) -> str:
        """The module-name prefix that part `part`'s ONNX node names lack ('' if unknown)."""
        return next((b.module_prefix for b in self.boundaries if b.name == part), "")

    @property
    def part_prefixes(self) -> dict[str, str]:
        return {b.name: b.module_prefix for b in self.boundaries}

    def export_parts(self, model) -> tuple[OnnxPart, ...]:
        """The model's export parts, in `boundaries` order."""
        if self.build_parts is None:
            raise TrtqError(f"models with the {self.name} adapter have no export boundaries "
                            "for `trtq export`; export one with trtq.export_onnx(model, "
                            "example_inputs, path)")
        parts = tuple(self.build_parts(model))
        if tuple(p.name for p in parts) != self.part_names:
            raise ValueError(f"adapter {self.name!r} built parts "
                             f"{[p.name for p in parts]}, not {list(self.part_names)}")
        return parts


GENERIC = ModelAdapter("generic")

_ADAPTERS: dict[str, ModelAdapter] = {}


def register_adapter(adapter: ModelAdapter) -> ModelAdapter:
    if adapter.name in _ADAPTERS and _ADAPTERS[adapter.name] is not adapter:
        raise ValueError(f"model adapter {adapter.name!r} is registered twice")
    _ADAPTERS[adapter.name] = adapter
    return adapter


register_adapter(GENERIC)


def get_adapter(name: str) -> ModelAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise TrtqError(f"unknown model adapter {name!r}; registered: "
                        f"{', '.join(sorted(_ADAPTERS))}") from None


def adapter_for(model_name: str | None) -> ModelAdapter:
    """The adapter registered model `model_name` names; GENERIC for any other model."""
    from trtq.models.registry import get_spec, model_names

    if model_name not in model_names():
        return GENERIC
    return get_adapter(get_spec(model_name).adapter)


def adapter_for_module(model) -> ModelAdapter:
    """The adapter serving `model`'s class (or a base class of it); GENERIC for others."""
    for cls in type(model).__mro__:
        qualified = f"{cls.__module__}.{cls.__qualname__}"
        for adapter in _ADAPTERS.values():
            if qualified in adapter.module_types:
                return adapter
    return GENERIC
