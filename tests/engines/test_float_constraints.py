"""`trtq.engines.float_constraints`: weakly typed INT8 builds pin the float plan's layers.

The networks are real: TensorRT-RTX's ONNX parser (TensorRT's importer) parses real trtq exports,
so the layer names and types are the ones TensorRT makes. The weakly typed API itself (layer
precision, set_output_type, the INT8/FP16/OBEY builder flags) exists only in TensorRT 8.5–10.x,
which is not installed here and needs a GPU: `WeakTensorRT` (tests/engines/conftest.py) records
those calls and hands everything else, the build included, to the real TensorRT-RTX.
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtq.engines.build import BuildOptions, build_engine
from trtq.engines.float_constraints import node_of_layer, plan_layers
from trtq.engines.float_plan import float_plan, layer_key
from trtq.engines.tensorrt_api import parse_onnx
from trtq.export.onnx_graph import Graph

FLOATS = ("FLOAT", "HALF")
MACS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@pytest.fixture(scope="module")
def rtx():
    return pytest.importorskip("tensorrt_rtx_bindings")


def _layers_of(network, node: str) -> list:
    """The layers the parser made from `node`: its name, or its name + `_<counter>`."""
    pattern = re.compile(re.escape(node) + r"(_\d+)?")
    layers = (network.get_layer(i) for i in range(network.num_layers))
    return [layer for layer in layers if pattern.fullmatch(layer.name)]


def _float_inputs(layer) -> bool:
    tensors = (layer.get_input(i) for i in range(layer.num_inputs))
    return any(t is not None and t.dtype.name in FLOATS for t in tensors)


def _expect_pinned(recorder, layer) -> None:
    assert recorder.precision.get(layer.name) == "FLOAT", layer.name
    outputs = {i: "FLOAT" for i in range(layer.num_outputs)
               if layer.get_output(i).dtype.name in FLOATS}
    assert recorder.output_types.get(layer.name, {}) == outputs, layer.name


def _expect_free(recorder, layer) -> None:
    assert layer.name not in recorder.precision and layer.name not in recorder.output_types


def _check_calls(recorder, onnx_path, rtx) -> dict[str, int]:
    """Every layer computing on floats of every LayerNorm/Softmax/LogQuant node and of every
    float MAC is pinned FP32; Q/DQ layers and INT8 MACs are not. Returns planned nodes per
    reason."""
    model = onnx.load(str(onnx_path))
    g = Graph(model)
    network = parse_onnx(onnx_path, rtx).network
    plan = float_plan(model)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key, reason = layer_key(node), plan.get(layer_key(node))
        dq_fed = all(g.producer.get(name) is not None
                     and g.producer[name].op_type == "DequantizeLinear" for name in node.input[:2])
        if node.op_type in ("LayerNormalization", "Softmax") or reason == "logquant":
            layers = _layers_of(network, key)
            assert layers, key
            for layer in layers:  # index arithmetic on INT32/BOOL is exact: left alone
                (_expect_pinned if _float_inputs(layer) else _expect_free)(recorder, layer)
        elif node.op_type in MACS:
            assert (reason is None) if dq_fed else reason in ("float-conv", "float-matmul"), key
            layers = _layers_of(network, key)
            assert layers, key
            for layer in layers:
                if dq_fed:
                    _expect_free(recorder, layer)
                elif _float_inputs(layer):
                    _expect_pinned(recorder, layer)
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    for i in range(network.num_layers):
        if network.get_layer(i).type.name in ("QUANTIZE", "DEQUANTIZE"):
            _expect_free(recorder, network.get_layer(i))
    return counts


@pytest.mark.parametrize(("version", "export", "part"), [
    ("10.3.0", "ptq4sam", "decoder"), ("10.3.0", "ptq4sam", "encoder"),
    ("8.5.2", "w8a8", "encoder")])
def test_weakly_typed_int8_build_pins_the_float_plan(weak_trt, rtx, tiny_ptq4sam_qdq, tiny_qdq,
                                                     tmp_path, version, export, part):
    folder = tiny_ptq4sam_qdq["onnx"] if export == "ptq4sam" else tiny_qdq["tensorrt"]
    trt = weak_trt(version)
    engine = tmp_path / f"{part}.int8.engine"
    result = build_engine(folder / f"{part}.onnx", engine, BuildOptions(precision="int8"),
                          trt=trt)
    calls = trt.recorder
    assert calls.flags == ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert calls.network_flags == [1 if version.startswith("8.") else 0]  # EXPLICIT_BATCH on 8.x
    planned = _check_calls(calls, folder / f"{part}.onnx", rtx)
    assert planned["layernorm"] and planned["softmax"] and planned.get("float-conv", 0) + \
        planned.get("float-matmul", 0)
    assert ("logquant" in planned) == (export == "ptq4sam")
    record = json.loads((tmp_path / f"{part}.int8.engine.json").read_text())
    constraints = record["build"]["precision_constraints"]
    assert constraints == result.record["build"]["precision_constraints"]
    assert constraints["status"] == "applied" and constraints["obey_precision_constraints"]
    assert constraints["plan_nodes"] == {r: planned[r] for r in constraints["plan_nodes"]}
    assert set(constraints["plan_nodes"]) == set(planned)
    assert constraints["unmatched"] == []
    assert sum(n for by in constraints["layers"].values() for n in by.values()) == \
        len(calls.precision)
    assert {p for by in constraints["layers"].values() for p in by} == {"fp32"}
    named = {node for nodes in constraints["constrained_nodes"].values() for node in nodes}
    assert named <= set(float_plan(onnx.load(str(folder / f"{part}.onnx"))))
    assert len(calls.precision) - constraints["helper_layers"] >= len(named) > 0


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_weakly_typed_fp16_and_fp32_builds_are_untouched(weak_trt, tiny_onnx, tmp_path,
                                                         precision):
    trt = weak_trt("10.3.0")
    result = build_engine(tiny_onnx / "decoder.onnx", tmp_path / "d.engine",
                          BuildOptions(precision=precision), trt=trt)
    assert trt.recorder.flags == (["FP16"] if precision == "fp16" else [])
    assert trt.recorder.precision == {} and trt.recorder.output_types == {}
    assert result.record["build"]["precision_constraints"]["status"] == "skipped: not int8"


def test_strongly_typed_option_on_10x_makes_no_calls(weak_trt, tiny_ptq4sam_qdq, tmp_path):
    trt = weak_trt("10.3.0")
    result = build_engine(tiny_ptq4sam_qdq["onnx"] / "decoder.onnx", tmp_path / "d.engine",
                          BuildOptions(precision="int8", strongly_typed=True), trt=trt)
    assert trt.recorder.network_flags == [1 << 5]  # STRONGLY_TYPED
    assert trt.recorder.flags == [] and trt.recorder.precision == {}
    assert trt.recorder.output_types == {}
    constraints = result.record["build"]["precision_constraints"]
    assert constraints["status"] == "skipped: strongly typed"


def test_real_tensorrt_rtx_int8_build_is_skipped_as_strongly_typed(rtx, tiny_ptq4sam_qdq,
                                                                    tmp_path):
    # TensorRT-RTX has none of the weakly typed calls: any attempt would raise AttributeError
    # and fail this real build.
    parsed = parse_onnx(tiny_ptq4sam_qdq["onnx"] / "decoder.onnx", rtx)
    assert not hasattr(parsed.network.get_layer(0), "precision")
    assert not hasattr(parsed.network.get_layer(0), "set_output_type")
    assert not hasattr(rtx.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS")
    engine = tmp_path / "decoder.int8.engine"
    build_engine(tiny_ptq4sam_qdq["onnx"] / "decoder.onnx", engine,
                 BuildOptions(precision="int8"), trt=rtx)
    record = json.loads((tmp_path / "decoder.int8.engine.json").read_text())
    constraints = record["build"]["precision_constraints"]
    assert constraints["status"] == "skipped: strongly typed"
    assert "TensorRT-RTX" in constraints["why"] and "plan_nodes" not in constraints


def _unnamed_graph(path):
    """x → Q/DQ → Conv (Q/DQ weights, named) → unnamed Softmax → unnamed LayerNormalization →
    unnamed MatMul with a float weight → y."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(0.02), "s"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
             numpy_helper.from_array(np.int8(0), "z"),
             numpy_helper.from_array(np.ones(6, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(6, np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "m")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="xq"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="xd"),
             helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], name="wq", axis=0),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wd", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"),
             helper.make_node("Softmax", ["c"], ["p"], axis=-1),
             helper.make_node("LayerNormalization", ["p", "gamma", "beta"], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "m"], ["y"])]
    graph = helper.make_graph(nodes, "unnamed", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 4, 6, 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_unnamed_nodes_match_the_parsers_layer_names(rtx, tmp_path):
    path = _unnamed_graph(tmp_path / "unnamed.onnx")
    model = onnx.load(str(path))
    plan = float_plan(model)
    assert plan == {"node_of_p": "softmax", "node_of_n": "layernorm", "node_of_y": "float-matmul"}
    network = parse_onnx(path, rtx).network
    layers = plan_layers(network, plan, {layer_key(n) for n in model.graph.node})
    assert layers.unmatched == [] and layers.integer_layers == 0
    assert {p.node for p in layers.pinned} == {"node_of_p", "node_of_n", "node_of_y", None}
    assert "conv" not in {p.name for p in layers.pinned}


def test_layer_names_map_to_nodes_exact_name_first():
    nodes = {"/a/Max", "/a/Max_1", "/a/GreaterOrEqual"}
    assert node_of_layer("/a/Max_1", nodes) == "/a/Max_1"
    assert node_of_layer("/a/Max_17", nodes) == "/a/Max"
    assert node_of_layer("/a/GreaterOrEqual_195", nodes) == "/a/GreaterOrEqual"
    assert node_of_layer("ONNXTRT_Broadcast_3", nodes) is None
    assert node_of_layer("/a/Max_x", nodes) is None
