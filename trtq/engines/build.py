"""Build a TensorRT engine from ONNX and record where and how it was built.

`build_engine(onnx, engine, BuildOptions(...))` works with TensorRT 8.5–11 (`tensorrt`) and
TensorRT-RTX (ahead of time, no GPU needed). The version differences (TENSORRT.md §1–2) are
decided from `trtq.engines.versions`:
- weakly typed builds (8.x–10.x by default) set FP16 / INT8+FP16 builder flags, and INT8 ones
  pin LayerNorm, Softmax, LogQuant and the float Conv/MatMul layers to FP32
  (`trtq.engines.float_constraints`; the sidecar's build.precision_constraints says what);
- strongly typed builds (TensorRT 11, TensorRT-RTX, or asked for on 9.1+) take every type from
  the ONNX, so an FP16 build first converts the FP32 ONNX to FP16 (`trtq.export.fp16`) and keeps
  that file beside the engine;
- DLA (`dla_core`) with GPU fallback only where the release and the device have one.
The engine is written atomically with a sidecar `<engine>.json` (TensorRT version, device,
build flags, the ONNX's and recipe's hashes) that `trtq.engines.engine_check` verifies on load.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from trtq.artifacts import (
    atomic_output,
    check_writable,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)
from trtq.engines.build_config import BuildOptions, check_dla, configure, save_timing_cache
from trtq.engines.device import current_device, jetson_module
from trtq.engines.plugin_libs import check_library
from trtq.engines.shapes import resolve_profile
from trtq.engines.tensorrt_api import (
    import_tensorrt,
    network_inputs,
    network_layers,
    parse_onnx,
    serialize_network,
)
from trtq.engines.versions import module_version
from trtq.errors import ArtifactError

log = logging.getLogger("trtq.engines")
ENGINE_KIND = "tensorrt-engine"


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    onnx_built: Path  # the ONNX the builder parsed (the FP16 conversion on strongly typed FP16)
    seconds: float
    size_bytes: int
    record: dict
    network_dtypes: dict  # parsed network: layer count per first-output data type


class OnnxContent(NamedTuple):
    qdq: bool  # QuantizeLinear / DequantizeLinear nodes
    fp16: bool  # FP16 initializers (an FP16 conversion)
    logquant: bool  # trtq::LogQuant plugin nodes


def onnx_content(path: Path) -> OnnxContent:
    """What an ONNX file holds that decides how it is built (checked before use)."""
    import onnx

    from trtq.calib.logquant_onnx import DOMAIN, OP_TYPE
    from trtq.export.onnxruntime_session import check_onnx

    model = onnx.load(str(check_onnx(path)), load_external_data=False)
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    return OnnxContent(
        qdq=bool(ops & {("", "QuantizeLinear"), ("", "DequantizeLinear")}),
        fp16=any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer),
        logquant=(DOMAIN, OP_TYPE) in ops)


def logquant_plugin(trt, content: OnnxContent, plugins: tuple[str, ...]) -> tuple[tuple, str]:
    """(plugin libraries to load, how LogQuant nodes are served) for one build.

    With LogQuant nodes and no --plugins: trtq's C++ plugin library where it is built
    (`trtq.plugins.plugin_library`), else trtq's Python plugin, registered in this process
    (kernel compiled on first run). Where neither can serve, the parser names the nodes."""
    if not content.logquant:
        return plugins, "none"
    if plugins:
        return plugins, "libraries"
    from trtq.plugins import plugin_library
    from trtq.plugins.python_plugin import python_plugin_blocker, register_logquant_plugin

    library = plugin_library()
    if library is not None:
        log.info("LogQuant nodes: loading trtq's plugin library %s", library)
        return (str(library),), "libraries"
    blocker = python_plugin_blocker(trt)
    if blocker:
        log.warning("LogQuant nodes: no plugin library here, and %s", blocker)
        return (), "missing"
    register_logquant_plugin(trt)
    log.info("LogQuant nodes: trtq's Python plugin registered (no C++ library built here)")
    return (), "python"


def fp16_onnx_path(engine: Path) -> Path:
    """Where a strongly typed FP16 build keeps its FP16 ONNX: encoder.fp16.engine →
    encoder.fp16.onnx, model.engine → model.fp16.onnx."""
    engine = Path(engine)
    stem = engine.stem if engine.suffix == ".engine" else engine.name
    return engine.with_name(stem + ("" if stem.endswith(".fp16") else ".fp16") + ".onnx")


def onnx_to_build(onnx_path: Path, content: OnnxContent, engine: Path, precision: str,
                  strongly_typed: bool, force: bool) -> Path:
    """The ONNX to parse for this precision (`content` is `onnx_content(onnx_path)`), converted
    to FP16 where needed."""
    qdq, fp16, _ = content
    if precision == "int8" and not qdq:
        raise ArtifactError(f"{onnx_path} has no Q/DQ nodes, so there is nothing to build in "
                            "INT8; export it with `trtq export --calibrated DIR`, or build "
                            "--precision fp16")
    if precision != "int8" and qdq:
        raise ArtifactError(f"{onnx_path} is an INT8 Q/DQ model; build it with --precision int8 "
                            "(the FP16 baseline comes from the FP32 export)")
    if precision != "fp16" or not strongly_typed or fp16:
        return onnx_path
    from trtq.export.fp16 import write_fp16

    target = fp16_onnx_path(engine)
    log.info("strongly typed FP16 build: converting %s to FP16 (%s)", onnx_path, target)
    return write_fp16(onnx_path, target, force=force)


def _onnx_provenance(onnx_path: Path) -> dict:
    if not sidecar_path(onnx_path).is_file():
        return {}
    record = read_sidecar(onnx_path)  # refuses an ONNX changed since export
    keys = ("model", "part", "precision", "recipe_sha256", "target", "logquant_form",
            "calibration_id")
    return {f"onnx_{k}" if k == "precision" else k: record[k] for k in keys if k in record}


def _record(trt, options: BuildOptions, onnx_built: Path, strongly_typed: bool,
            profile: dict, *, precision_constraints: dict) -> dict:
    version = module_version(trt)
    device = current_device()
    return {
        "tensorrt": {"module": trt.__name__, "version": trt.__version__, "rtx": version.rtx},
        "device": device.to_dict() if device else None,
        "jetson": jetson_module(),
        "ahead_of_time": device is None,
        "precision": options.precision,
        "build": {**asdict(options), "strongly_typed": strongly_typed,
                  "shapes": {k: [list(s) for s in v] for k, v in profile.items()},
                  "plugins": [{"path": str(p), "sha256": sha256_file(p)}
                              for p in map(check_library, options.plugins)],
                  "onnx_built": onnx_built.name,
                  "precision_constraints": precision_constraints},
    }


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                 options: BuildOptions | None = None, *, force: bool = False,
                 trt=None) -> BuildResult:
    """Build `onnx_path` into `engine_path` (+ sidecar); refuses to overwrite without force.
    `options` default: `BuildOptions()` (FP16)."""
    options = options or BuildOptions()
    onnx_path, engine = Path(onnx_path), Path(engine_path)
    check_writable(engine, force)
    trt = trt or import_tensorrt()
    version = module_version(trt)
    strongly_typed = (version.always_strongly_typed if options.strongly_typed is None
                      else options.strongly_typed)
    if options.dla_core is not None:
        check_dla(version, options.dla_core, None, jetson_module())
    content = onnx_content(onnx_path)  # checked once; the FP16 conversion refuses LogQuant
    onnx_built = onnx_to_build(onnx_path, content, engine, options.precision, strongly_typed,
                               force)
    provenance = _onnx_provenance(onnx_path)
    plugins, served = logquant_plugin(trt, content, options.plugins)
    options = replace(options, plugins=tuple(plugins))
    parsed = parse_onnx(onnx_built, trt, strongly_typed=options.strongly_typed,
                        plugins=options.plugins)
    profile = resolve_profile(network_inputs(parsed), options.shapes)
    dtypes = Counter(layer.output_dtypes[0] if layer.output_dtypes else "NONE"
                     for layer in network_layers(parsed))
    config, constraints = configure(parsed, options, profile)
    start = time.perf_counter()
    plan = serialize_network(parsed, config)
    seconds = time.perf_counter() - start
    with atomic_output(engine, force) as tmp:
        tmp.write_bytes(memoryview(plan))
    if options.timing_cache:
        save_timing_cache(config, Path(options.timing_cache), trt)
    record = {**_record(trt, options, onnx_built, parsed.strongly_typed, profile,
                        precision_constraints=constraints), **provenance,
              "logquant_plugin": served, "build_seconds": round(seconds, 3)}
    inputs = {"onnx": sha256_file(onnx_path)}
    if onnx_built != onnx_path:
        inputs["onnx_built"] = sha256_file(onnx_built)
    write_sidecar(engine, ENGINE_KIND, inputs, record, force=True)
    size = engine.stat().st_size
    log.info("built %s (%.1f MB) in %.1f s with %s", engine, size / 1e6, seconds, version.label)
    return BuildResult(engine, onnx_built, seconds, size, record, dict(dtypes.most_common()))
