"""Engine-test helpers: a one-Conv Q/DQ graph and the build summary printed at the end."""

from __future__ import annotations

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
