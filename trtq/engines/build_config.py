"""The builder configuration for one build: workspace, precision flags, profile, DLA, caches,
and (weakly typed INT8) the layers kept float (`trtq.engines.float_constraints`).

Each setting is applied only where the running TensorRT has it (see `trtq.engines.versions`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from trtq.artifacts import atomic_output
from trtq.engines.device import module_has_dla
from trtq.engines.versions import TrtVersion, module_version
from trtq.errors import BackendError

log = logging.getLogger("trtq.engines")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BuildOptions:
    """How to build: one field per `trtq build` flag."""

    precision: str = "fp16"
    workspace_mib: int | None = None
    dla_core: int | None = None
    timing_cache: str | None = None
    plugins: tuple[str, ...] = ()
    shapes: Mapping[str, tuple] = field(default_factory=dict)
    strongly_typed: bool | None = None  # None: the release's default (strongly typed from 11)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise BackendError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise BackendError(f"--workspace must be at least 1 MiB, got {self.workspace_mib}")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise BackendError(f"--dla takes a core index (0 or 1), got {self.dla_core}")
            if self.precision == "fp32":
                raise BackendError("DLA runs only FP16 and INT8 layers; use --precision fp16 or "
                                   "int8 with --dla")


def check_dla(version: TrtVersion, core: int, num_cores: int | None,
              module: str | None) -> None:
    """Refuse a DLA build the release or the device cannot do, saying what to change."""
    refusal = version.dla_refusal()
    if refusal:
        raise BackendError(refusal)
    if module_has_dla(module) is False:
        raise BackendError(f"--dla {core}: this {module} has no DLA cores (only AGX Orin and "
                           "Orin NX have them); drop --dla and build for the GPU")
    if num_cores is None:
        return
    if num_cores == 0:
        raise BackendError(f"--dla {core}: this device has no DLA cores (TensorRT reports 0; "
                           "Orin Nano and desktop GPUs have none); drop --dla")
    if core >= num_cores:
        raise BackendError(f"--dla {core}: this device has {num_cores} DLA core(s), numbered "
                           f"0..{num_cores - 1}")


def _precision_flags(parsed, precision: str, config) -> None:
    if precision == "fp32":
        return
    if parsed.strongly_typed:
        log.info("%s: strongly typed network: precision comes from the ONNX types",
                 parsed.path.name)
        return
    for flag in ("FP16",) if precision == "fp16" else ("INT8", "FP16"):
        config.set_flag(getattr(parsed.trt.BuilderFlag, flag))


def timing_cache_supported(trt) -> bool:
    """TensorRT has timing caches; in TensorRT-RTX (1.2+) they are deprecated no-ops."""
    return not module_version(trt).rtx


def _timing_cache(config, path: Path | None, trt) -> None:
    if path is None:
        return
    if not timing_cache_supported(trt):
        log.warning("%s has no timing cache (a no-op since 1.2); --timing-cache %s is ignored",
                    module_version(trt).label, path)
        return
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None:
        raise BackendError(f"timing cache {path} is not readable by this TensorRT; delete it "
                           "or pass another --timing-cache path")
    config.set_timing_cache(cache, ignore_mismatch=True)
    log.info("timing cache %s: %s", path, f"{len(data)} bytes loaded" if data else "new")


def save_timing_cache(config, path: Path, trt) -> None:
    """Write the build's timing cache (it only grows; replacing it is the point)."""
    if not timing_cache_supported(trt):
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    with atomic_output(path, force=True) as tmp:
        tmp.write_bytes(memoryview(cache.serialize()))


def _dla(parsed, config, core: int) -> None:
    from trtq.engines.device import jetson_module

    check_dla(module_version(parsed.trt), core, parsed.builder.num_DLA_cores, jetson_module())
    trt = parsed.trt
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


class Configured(NamedTuple):
    config: Any  # the IBuilderConfig
    precision_constraints: dict  # what `constrain_float_layers` did, for the sidecar


def configure(parsed, options: BuildOptions, profile: dict) -> Configured:
    """A builder config for `parsed` with `options` and resolved `profile`."""
    from trtq.engines.float_constraints import constrain_float_layers

    trt = parsed.trt
    config = parsed.builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    _precision_flags(parsed, options.precision, config)
    constraints = constrain_float_layers(parsed, options.precision, config)
    if profile:
        opt_profile = parsed.builder.create_optimization_profile()
        for name, (low, opt, high) in profile.items():
            opt_profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(opt_profile)
    if hasattr(trt, "ProfilingVerbosity"):  # layer precisions for the engine inspector
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    _timing_cache(config, Path(options.timing_cache) if options.timing_cache else None,
                  trt)
    if options.dla_core is not None:
        _dla(parsed, config, options.dla_core)
    return Configured(config, constraints)
