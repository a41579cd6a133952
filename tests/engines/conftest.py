"""Engine-test helpers: a one-Conv Q/DQ graph, a recording stand-in for the weakly typed
TensorRT API, and the build summary printed at the end."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _qdq_conv_model(path, activation_zero_point: int = 0):
    """x -> Q/DQ (per-tensor, int8) -> Conv with Q/DQ weights (per-channel, axis 0) -> y."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    weight_scale = (np.abs(weight).reshape(8, -1).max(1) / 127).astype(np.float32)
    initializers = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(weight_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(8, np.int8), "w_zero_point"),
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(activation_zero_point, np.int8), "x_zero_point"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero_point"], ["xq"], name="x_q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero_point"], ["xd"],
                         name="x_dq"),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero_point"], ["wq"], name="w_q",
                         axis=0),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero_point"], ["wd"],
                         name="w_dq", axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def qdq_conv():
    """Writes a one-Conv INT8 Q/DQ ONNX: qdq_conv(path, activation_zero_point=0) -> path."""
    return _qdq_conv_model


_BUILDS: list[str] = []


@pytest.fixture
def record_build():
    """Adds a line to the 'TensorRT engine builds' section printed at the end of the run."""
    return _BUILDS.append


def pytest_terminal_summary(terminalreporter):
    if _BUILDS:
        terminalreporter.section("TensorRT engine builds (real builder)")
        for line in _BUILDS:
            terminalreporter.write_line(line)


# -- a recording stand-in for weakly typed TensorRT (8.5–10.x), over real TensorRT-RTX ----------
# TensorRT 8.5–10.x is not installed here (nor the GPU it needs to create a Builder), and
# TensorRT-RTX has no weak typing: its layers have no `precision` / `set_output_type`, its
# BuilderFlag no INT8, FP16 or OBEY_PRECISION_CONSTRAINTS. `WeakTensorRT(rtx, "10.3.0")` presents
# those calls and records them, and hands everything else to the real TensorRT-RTX: its ONNX
# parser makes the network (TensorRT's importer, so the layer names are real) and its builder
# builds the plan.

class Recorder:
    """The weakly typed calls a build made."""

    def __init__(self) -> None:
        self.precision: dict[str, str] = {}  # layer name → DataType name
        self.output_types: dict[str, dict[int, str]] = {}  # layer name → {output: DataType}
        self.flags: list[str] = []  # BuilderFlag names passed to config.set_flag
        self.network_flags: list[int] = []  # create_network(flags)


class _Delegate:
    def __init__(self, real, recorder: Recorder) -> None:
        object.__setattr__(self, "real", real)
        object.__setattr__(self, "recorder", recorder)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __setattr__(self, name, value):
        if isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)  # a recorded setter of the stand-in
        else:
            setattr(self.real, name, value)


class _Layer(_Delegate):
    @property
    def precision(self):
        return SimpleNamespace(name=self.recorder.precision.get(self.real.name, "FLOAT"))

    @precision.setter
    def precision(self, dtype) -> None:
        self.recorder.precision[self.real.name] = dtype.name

    @property
    def precision_is_set(self) -> bool:
        return self.real.name in self.recorder.precision

    def set_output_type(self, index: int, dtype) -> None:
        if not 0 <= index < self.real.num_outputs:
            raise IndexError(f"{self.real.name} has no output {index}")
        self.recorder.output_types.setdefault(self.real.name, {})[index] = dtype.name


class _Network(_Delegate):
    def get_layer(self, index: int) -> _Layer:
        return _Layer(self.real.get_layer(index), self.recorder)

    def get_flag(self, flag) -> bool:
        return bool(self.recorder.network_flags[-1] & (1 << int(flag)))


class _Config(_Delegate):
    def set_flag(self, flag) -> None:
        self.recorder.flags.append(flag)


class _Builder(_Delegate):
    def create_network(self, flags: int = 0) -> _Network:
        self.recorder.network_flags.append(flags)
        return _Network(self.real.create_network(0), self.recorder)

    def create_builder_config(self) -> _Config:
        return _Config(self.real.create_builder_config(), self.recorder)

    def build_serialized_network(self, network: _Network, config: _Config):
        return self.real.build_serialized_network(network.real, config.real)

    @property
    def num_DLA_cores(self) -> int:
        return 0


class WeakTensorRT:
    """`tensorrt` as 8.5–10.x presents it, recording the weak-typing calls (see the module)."""

    BuilderFlag = SimpleNamespace(**{name: name for name in (
        "FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
        "GPU_FALLBACK")})
    NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5)

    def __init__(self, rtx, version: str = "10.3.0") -> None:
        self.rtx = rtx
        self.__name__ = "tensorrt_weak_standin"  # not "tensorrt": keeps its own shared logger
        self.__version__ = version
        self.recorder = Recorder()

    def __getattr__(self, name):  # DataType, ILogger, MemoryPoolType, ProfilingVerbosity, ...
        if name == "init_libnvinfer_plugins":
            raise AttributeError(name)
        return getattr(self.rtx, name)

    def Builder(self, logger) -> _Builder:  # noqa: N802 (TensorRT's name)
        return _Builder(self.rtx.Builder(logger), self.recorder)

    def OnnxParser(self, network: _Network, logger):  # noqa: N802 (TensorRT's name)
        return self.rtx.OnnxParser(network.real, logger)


@pytest.fixture
def weak_trt():
    """weak_trt(version="10.3.0") -> a WeakTensorRT over TensorRT-RTX (skipped without it)."""
    rtx = pytest.importorskip("tensorrt_rtx_bindings")
    return lambda version="10.3.0": WeakTensorRT(rtx, version)
