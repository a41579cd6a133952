"""`trtq bench` argument handling without a GPU: providers, engine-only and compare-only flags,
and a TensorRT engine refused with a clear reason where it cannot run."""

from __future__ import annotations

import pytest

from trtq.cli import main


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trtq: error: ") and "\n" not in err, err
    return err


def test_flags_that_belong_to_another_mode(tiny_onnx, tmp_path, capsys):
    onnx = str(tiny_onnx / "encoder.onnx")
    out = str(tmp_path / "r.json")
    assert "--cuda-graph, --trtexec apply to --engine" in _error(
        capsys, ["bench", "--onnx", onnx, "--cuda-graph", "--trtexec", "--out", out])
    assert "--accuracy apply to --compare" in _error(
        capsys, ["bench", "--onnx", onnx, "--accuracy", "e.json", "--out", out])
    assert "--compare only reads results" in _error(
        capsys, ["bench", "--compare", "a.json", "--tegrastats", "--out", out])


def test_missing_provider_is_named(tiny_onnx, tmp_path, capsys):
    err = _error(capsys, ["bench", "--onnx", str(tiny_onnx / "encoder.onnx"), "--provider",
                          "cuda", "--out", str(tmp_path / "r.json")])
    assert "CUDAExecutionProvider" in err and "available" in err
    assert not (tmp_path / "r.json").exists()


def test_engine_without_a_gpu_is_refused(trt, tiny_onnx, tmp_path, capsys):
    from trtq.engines.build import BuildOptions, build_engine
    from trtq.engines.device import current_device

    if current_device() is not None:
        pytest.skip("a GPU is visible here; tests/engines/test_tensorrt_gpu.py runs engines")
    engine = tmp_path / "decoder.fp32.engine"
    build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(precision="fp32"), trt=trt)
    capsys.readouterr()
    err = _error(capsys, ["bench", "--engine", str(engine), "--out", str(tmp_path / "r.json")])
    assert "no CUDA GPU is visible" in err
    assert "does not exist; build it" in _error(
        capsys, ["bench", "--engine", str(tmp_path / "absent.engine"), "--out",
                 str(tmp_path / "r.json")])


def test_engine_bench_options_are_validated():
    from trtq.bench.tensorrt_bench import EngineBenchOptions
    from trtq.errors import BackendError

    with pytest.raises(BackendError, match="iterations >= 1"):
        EngineBenchOptions(iterations=0)
    with pytest.raises(BackendError, match="--duration must be > 0"):
        EngineBenchOptions(duration_s=0)
