"""TensorRT and TensorRT-RTX behind one lazy import: parse ONNX, list layers, build plans.

TensorRT is never imported at module level; `import_tensorrt` picks the module. TensorRT-RTX
(`pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings`) parses ONNX and builds plans
ahead of time on a machine without a GPU, so CI can check that a graph is accepted; running a
plan needs a GPU. Its networks are always strongly typed and it has no precision flags.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from trtq.engines.build_config import BuildOptions, configure
from trtq.engines.plugin_libs import (
    MISSING_PLUGIN_HINT,
    load_plugin_libraries,
    mentions_missing_plugin,
)
from trtq.engines.shapes import DEFAULT_DYNAMIC_RANGE, resolve_profile
from trtq.engines.versions import module_version
from trtq.errors import ArtifactError, BackendError
from trtq.tensorrt_flavour import RTX_MODULES, flavour_of

log = logging.getLogger("trtq.engines")

_INSTALL_HINT = ("pip install tensorrt on a machine with an NVIDIA GPU (on Jetson use JetPack's "
                 "python3-libnvinfer), or pip install tensorrt-rtx-cu13-libs "
                 "tensorrt-rtx-cu13-bindings for parse/build checks without a GPU")
__all__ = ["DEFAULT_DYNAMIC_RANGE", "build_serialized", "flavour_of", "import_tensorrt",
           "network_layers", "parse_onnx", "shared_logger", "summarize_layers"]
# Errors are kept and raised in a BackendError by the caller, so they are only logged at DEBUG.
_LOGGING_LEVELS = {"INTERNAL_ERROR": logging.ERROR, "ERROR": logging.DEBUG,
                   "WARNING": logging.WARNING, "INFO": logging.DEBUG}


def import_tensorrt(allow_rtx: bool = True):
    """The `tensorrt` module if importable, else TensorRT-RTX when `allow_rtx`."""
    names = ("tensorrt",) + (RTX_MODULES if allow_rtx else ())
    reasons = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            reasons.append(f"{name}: {exc}")
    raise BackendError(f"no TensorRT Python module is importable ({'; '.join(reasons)}); "
                       f"{_INSTALL_HINT}")


def make_logger(trt):
    """A new TensorRT logger that keeps warnings and errors and forwards them to `trtq.engines`.

    TensorRT uses the first logger a Builder or Runtime registers for the whole process and
    ignores (with a warning) any other while one is alive, so callers use `shared_logger`.
    """

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity, msg):
            name = severity.name
            if name in ("INTERNAL_ERROR", "ERROR", "WARNING"):
                self.messages.append((name, msg))
            level = _LOGGING_LEVELS.get(name, 5)  # VERBOSE goes below DEBUG
            if log.isEnabledFor(level):
                log.log(level, "TensorRT: %s", msg)

        def errors(self, since: int = 0) -> list[str]:
            return [msg for name, msg in self.messages[since:] if name != "WARNING"]

    return CollectingLogger()


_LOGGERS: dict[str, Any] = {}


def shared_logger(trt):
    """The one collecting logger per TensorRT module (see `make_logger`)."""
    if trt.__name__ not in _LOGGERS:
        _LOGGERS[trt.__name__] = make_logger(trt)
    return _LOGGERS[trt.__name__]


@dataclass(frozen=True)
class ParsedNetwork:
    """A parsed ONNX network; builder, network, parser and logger must stay alive together."""

    builder: Any
    network: Any
    parser: Any
    logger: Any
    trt: Any
    flavour: str
    version: str
    path: Path

    @property
    def strongly_typed(self) -> bool:
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return flag is not None and bool(self.network.get_flag(flag))


class LayerInfo(NamedTuple):
    """One network layer, as `network_layers` lists it."""

    name: str
    type: str
    precision: str | None  # set only when a weakly typed network pins it
    output_dtypes: tuple[str, ...]


def network_flags(trt, strongly_typed: bool | None = None) -> int:
    """`create_network` flags: EXPLICIT_BATCH on 8.x/9.x, STRONGLY_TYPED when asked (9.1+) and
    always on TensorRT 11+; TensorRT-RTX networks are strongly typed with no flag at all."""
    version = module_version(trt)
    if strongly_typed is False and version.always_strongly_typed:
        raise BackendError(f"{version.label} networks are always strongly typed (no weak "
                           "typing, no FP16/INT8 builder flags); leave strongly_typed unset")
    if version.rtx:
        return 0
    kinds = trt.NetworkDefinitionCreationFlag
    flags = 1 << int(kinds.EXPLICIT_BATCH) if version.needs_explicit_batch_flag else 0
    if strongly_typed is None:
        strongly_typed = version.always_strongly_typed
    if strongly_typed:
        if not version.has_strongly_typed or not hasattr(kinds, "STRONGLY_TYPED"):
            raise BackendError(f"{version.label} has no strongly typed networks (needs 9.1+); "
                               "leave strongly_typed unset")
        flags |= 1 << int(kinds.STRONGLY_TYPED)
    return flags


def _parser_error(error) -> str:
    where = []
    for attr, label in (("node_name", "node"), ("node_operator", "op")):
        value = getattr(error, attr, lambda: "")()
        if value:
            where.append(f"{label} {value}")
    if not where and error.node() >= 0:
        where.append(f"node #{error.node()}")
    return f"[{', '.join(where) or 'model'}] {error.desc()}"


def parse_onnx(path: str | os.PathLike, trt=None, *, strongly_typed: bool | None = None,
               plugins: Sequence[str | os.PathLike] = ()) -> ParsedNetwork:
    """Parse an ONNX file into a TensorRT network; every parser error is in the BackendError.

    `plugins` are plugin libraries (.so) loaded into the registry before parsing."""
    trt = trt or import_tensorrt()
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {path} does not exist; run `trtq export` first")
    flavour, version = flavour_of(trt), trt.__version__
    logger = shared_logger(trt)
    start = len(logger.messages)
    if flavour == "tensorrt" and hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    load_plugin_libraries(trt, plugins)
    try:
        builder = trt.Builder(logger)
    except (TypeError, RuntimeError) as exc:  # pybind11 reports a null Builder as TypeError
        detail = "; ".join(logger.errors(start)) or str(exc)
        raise BackendError(f"{flavour} {version} cannot create a Builder ({detail}); TensorRT "
                           "needs a CUDA GPU, TensorRT-RTX builds without one") from None
    network = builder.create_network(network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        listing = "\n  ".join(errors or logger.errors(start) or ["(no error reported)"])
        fix = (MISSING_PLUGIN_HINT if mentions_missing_plugin(listing)
               else "change or remove these nodes")
        raise BackendError(f"{flavour} {version} cannot parse {path} ({len(errors)} parser "
                           f"error(s)); {fix}:\n  {listing}")
    return ParsedNetwork(builder, network, parser, logger, trt, flavour, version, path)


def network_layers(parsed: ParsedNetwork) -> list[LayerInfo]:
    """Every layer of the parsed network: name, type, pinned precision, output dtypes."""
    layers = []
    for i in range(parsed.network.num_layers):
        layer = parsed.network.get_layer(i)
        pinned = getattr(layer, "precision_is_set", False)  # absent on TensorRT-RTX
        dtypes = tuple(layer.get_output(j).dtype.name for j in range(layer.num_outputs))
        layers.append(LayerInfo(layer.name, layer.type.name,
                                layer.precision.name if pinned else None, dtypes))
    return layers


def summarize_layers(layers: ParsedNetwork | Sequence[LayerInfo]) -> dict[str, int]:
    """Layer counts by type, most common first; QUANTIZE and DEQUANTIZE are always present."""
    if isinstance(layers, ParsedNetwork):
        layers = network_layers(layers)
    counts = Counter(layer.type for layer in layers)
    summary = dict(counts.most_common())
    for kind in ("QUANTIZE", "DEQUANTIZE"):
        summary.setdefault(kind, 0)
    return summary


def network_inputs(parsed: ParsedNetwork) -> dict[str, tuple[int, ...]]:
    """Input name → dimensions (-1 where dynamic) of a parsed network."""
    tensors = [parsed.network.get_input(i) for i in range(parsed.network.num_inputs)]
    return {t.name: tuple(t.shape) for t in tensors}


def build_serialized(source: str | os.PathLike | ParsedNetwork, *, precision: str = "fp32",
                     workspace_mib: int | None = None,
                     shapes: Mapping[str, Sequence[Sequence[int]]] | None = None,
                     trt=None) -> bytes:
    """Build a serialized engine (TensorRT) or plan (TensorRT-RTX, ahead of time on the CPU)
    in memory, without a sidecar (`trtq.engines.build.build_engine` writes engine files).

    `precision` sets FP16 (fp16) or INT8+FP16 (int8) builder flags on weakly typed TensorRT
    networks (int8 also keeps the float plan's layers FP32, `trtq.engines.float_constraints`);
    strongly typed networks (always on TensorRT-RTX) ignore it. `shapes` maps a
    dynamic input to (min, opt, max) shapes; dynamic dimensions it leaves out get
    DEFAULT_DYNAMIC_RANGE.
    """
    options = BuildOptions(precision=precision, workspace_mib=workspace_mib)
    parsed = source if isinstance(source, ParsedNetwork) else parse_onnx(source, trt)
    config, _ = configure(parsed, options, resolve_profile(network_inputs(parsed), shapes))
    return bytes(serialize_network(parsed, config))


def serialize_network(parsed: ParsedNetwork, config) -> memoryview:
    """Build the serialized engine (plan); a failed build raises with the builder's errors."""
    start = len(parsed.logger.messages)
    plan = parsed.builder.build_serialized_network(parsed.network, config)
    if plan is None:
        listing = "\n  ".join(parsed.logger.errors(start) or ["(the builder logged no error)"])
        raise BackendError(f"{parsed.flavour} {parsed.version} could not build {parsed.path}:"
                           f"\n  {listing}\n(out of memory on a small Jetson? lower --workspace, "
                           "close other processes or add swap)")
    return memoryview(plan)
