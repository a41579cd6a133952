"""Real TensorRT on a GPU: build the tiny FP16 and INT8 engines, load them through the sidecar
check, run them, and compare with onnxruntime. Skipped (with the reason) where `tensorrt` or a
GPU is missing, which includes CI and TensorRT-RTX machines."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from trtq.engines.build import BuildOptions, build_engine
from trtq.engines.device import current_device

pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="module")
def real_trt():
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        pytest.skip(f"real TensorRT is not installed ({exc}); TensorRT-RTX covers parse/build")
    if current_device() is None:
        pytest.skip("no CUDA GPU visible (cuda-python / PyTorch); engines cannot run here")
    return trt


def _feeds(onnx_path) -> dict[str, np.ndarray]:
    """Random inputs of the exported shapes; two boxes for the decoder's dynamic input."""
    from trtq.engines.shapes import onnx_input_dims

    rng = np.random.default_rng(0)
    feeds = {}
    for name, dims in onnx_input_dims(onnx_path).items():
        if name == "boxes":
            feeds[name] = np.array([[2, 3, 40, 50], [0, 0, 63, 63]], np.float32)
        else:
            feeds[name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def _run(trt, engine_path, feeds):
    from trtq.engines.engine_check import load_engine
    from trtq.engines.runner import EngineRunner

    return EngineRunner(load_engine(engine_path, trt), trt)(feeds)


def _onnxruntime(path, feeds):
    from trtq.export.onnxruntime_session import create_session

    session = create_session(path)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_fp16_engine_matches_onnxruntime(real_trt, tiny_onnx, tmp_path, part):
    engine = tmp_path / f"{part}.fp16.engine"
    build_engine(tiny_onnx / f"{part}.onnx", engine, BuildOptions(precision="fp16"),
                 trt=real_trt)
    feeds = _feeds(tiny_onnx / f"{part}.onnx")
    got, want = _run(real_trt, engine, feeds), _onnxruntime(tiny_onnx / f"{part}.onnx", feeds)
    for name, ref in want.items():
        err = np.abs(got[name].astype(np.float32) - ref).max() / (np.abs(ref).max() + 1e-6)
        assert err < 2e-2, (name, err)


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_int8_engine_runs_int8_layers_and_matches_onnxruntime(real_trt, tiny_qdq, tmp_path,
                                                               part):
    from trtq.engines.engine_check import engine_layers, layer_precisions, load_engine

    onnx_path = tiny_qdq["tensorrt"] / f"{part}.onnx"
    engine = tmp_path / f"{part}.int8.engine"
    build_engine(onnx_path, engine, BuildOptions(precision="int8"), trt=real_trt)
    precisions = layer_precisions(engine_layers(load_engine(engine, real_trt), real_trt))
    assert precisions.get("int8", 0) > 0, precisions
    feeds = _feeds(onnx_path)
    got, want = _run(real_trt, engine, feeds), _onnxruntime(onnx_path, feeds)
    for name, ref in want.items():
        err = np.abs(got[name].astype(np.float32) - ref).max() / (np.abs(ref).max() + 1e-6)
        assert err < 0.1, (name, err)


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_engine_benchmark_record(real_trt, tiny_onnx, tmp_path, cuda_graph):
    from trtq.bench.tensorrt_bench import EngineBenchOptions, bench_engine

    engine = tmp_path / "decoder.fp16.engine"
    build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(precision="fp16"),
                 trt=real_trt)
    record = bench_engine(engine, EngineBenchOptions(iterations=30, warmup=5,
                                                     cuda_graph=cuda_graph,
                                                     shapes={"boxes": (2, 4)}), trt=real_trt)
    lat = record["latency_ms"]
    assert record["backend"] == "tensorrt" and record["iterations"] == 30
    assert 0 < lat["min"] <= lat["median"] <= lat["p99"] <= lat["max"]
    assert record["input_shapes"]["boxes"] == [2, 4]
    assert record["memory"]["engine_device_mib"] >= 0 and record["memory"]["gpu_used_mib"] > 0
