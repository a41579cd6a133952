"""Before an engine is used: is it the file trtq built, for this GPU and this TensorRT?

TensorRT refuses (or worse, misbehaves with) a plan from another GPU model or TensorRT version;
its own message ("expecting compute 8.6 got compute 7.5") does not say what to do. trtq compares
the engine's sidecar with the running TensorRT and GPU first and says to rebuild on the target.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

from trtq.artifacts import read_sidecar
from trtq.engines.build import ENGINE_KIND
from trtq.engines.device import DeviceInfo, current_device
from trtq.engines.plugin_libs import load_plugin_libraries
from trtq.engines.tensorrt_api import import_tensorrt, shared_logger
from trtq.engines.versions import module_version
from trtq.errors import ArtifactError, BackendError

log = logging.getLogger("trtq.engines")
_CURRENT = object()


def _rebuild_hint(path: Path, record: dict) -> str:
    onnx = record.get("build", {}).get("onnx_built", "MODEL.onnx")
    precision = record.get("precision", "fp16")
    return (f"TensorRT engines run only on the GPU model and TensorRT version that built them: "
            f"rebuild it on this machine with `trtq build --onnx {onnx} --out {path} "
            f"--precision {precision} --force`")


def engine_problems(record: dict, trt, device: DeviceInfo | None) -> list[str]:
    """What differs between an engine's sidecar and the running TensorRT and GPU."""
    problems = []
    built = record.get("tensorrt", {})
    running = module_version(trt)
    if built.get("module") != trt.__name__ or built.get("version") != trt.__version__:
        problems.append(f"it was built with {built.get('module')} {built.get('version')}, this "
                        f"is {trt.__name__} {trt.__version__}")
    want = record.get("device")
    if want is None:
        if not running.rtx:
            problems.append("its sidecar names no GPU (an ahead-of-time TensorRT-RTX plan?)")
        return problems
    if device is None:
        problems.append(f"it was built for {DeviceInfo(**want).describe()} and no CUDA GPU is "
                        "visible here")
    elif (want["name"], want["compute_capability"]) != (device.name, device.compute_capability):
        problems.append(f"it was built for {DeviceInfo(**want).describe()}, this is "
                        f"{device.describe()}")
    return problems


def check_engine(path: str | os.PathLike, trt=None, device=_CURRENT) -> dict:
    """The engine's sidecar record, after checking file hash, TensorRT version and GPU."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"engine {path} does not exist; build it with `trtq build`")
    record = read_sidecar(path)
    if record.get("kind") != ENGINE_KIND:
        raise ArtifactError(f"{path} is a {record.get('kind')!r} artifact, not a TensorRT engine")
    trt = trt or import_tensorrt()
    device = current_device() if device is _CURRENT else device
    problems = engine_problems(record, trt, device)
    if problems:
        raise ArtifactError(f"engine {path} cannot be used here: {'; '.join(problems)}. "
                            + _rebuild_hint(path, record))
    return record


def load_engine(path: str | os.PathLike, trt=None, plugins=(), record: dict | None = None):
    """A deserialized ICudaEngine (needs a GPU), after `check_engine` (skipped when the caller
    passes the `record` it returned)."""
    trt = trt or import_tensorrt()
    record = record if record is not None else check_engine(path, trt)
    recorded = [p["path"] for p in record.get("build", {}).get("plugins", [])]
    load_plugin_libraries(trt, list(plugins) or recorded)
    if record.get("logquant_plugin") == "python":  # built with trtq's Python LogQuant plugin
        from trtq.plugins.python_plugin import register_logquant_plugin

        register_logquant_plugin(trt)
    logger = shared_logger(trt)
    start = len(logger.messages)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        detail = "; ".join(logger.errors(start)) or "no error logged"
        raise BackendError(f"{trt.__name__} {trt.__version__} could not load engine {path} "
                           f"({detail}). " + _rebuild_hint(Path(path), record))
    return engine


def engine_layers(engine, trt) -> list[dict]:
    """Per-layer information from the engine inspector (JSON format; DETAILED builds name
    each layer's inputs and outputs with their data types)."""
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    layers = json.loads(text).get("Layers", [])
    return [layer if isinstance(layer, dict) else {"Name": layer} for layer in layers]


_DTYPE_WORDS = (("int8", "int8"), ("fp16", "fp16"), ("half", "fp16"), ("bf16", "bf16"),
                ("fp8", "fp8"), ("int32", "int32"), ("int64", "int64"), ("fp32", "fp32"),
                ("float", "fp32"), ("bool", "bool"))


def datatype_of(fmt: str) -> str:
    """The data type named in an inspector format string ('Row major linear FP16 format',
    'Int8', 'Half' ...), as fp32/fp16/int8/..., or 'other'."""
    text = str(fmt).lower()
    return next((label for word, label in _DTYPE_WORDS if word in text), "other")


def layer_precisions(layers: list[dict]) -> dict[str, int]:
    """How many engine layers write each output data type (the first output's)."""
    counts: Counter = Counter()
    for layer in layers:
        outputs = layer.get("Outputs") or [{}]
        counts[datatype_of(outputs[0].get("Format/Datatype", ""))] += 1
    return dict(counts.most_common())
