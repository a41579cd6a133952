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


ORIN_NANO_LINE = ("07-29-2026 18:00:27 RAM 2272/7620MB (lfb 4x4MB) SWAP 221/3810MB (cached 0MB) "
                  "CPU [0%@729,0%@1036,0%@1036,0%@1036,0%@729,0%@729] GR3D_FREQ 0% "
                  "cpu@54.937C soc2@55.562C soc0@56.156C gpu@55.468C tj@56.656C soc1@56.656C "
                  "VDD_IN 4673mW/4673mW VDD_CPU_GPU_CV 527mW/527mW VDD_SOC 1339mW/1339mW")


def test_tegrastats_power_is_added_to_the_record(tiny_onnx, tmp_path, monkeypatch, capsys):
    """With stand-ins for tegrastats and nvpmodel on PATH (a real Orin Nano line), the
    benchmark record carries the sampled power and the power-mode warnings are logged."""
    import json
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tegrastats").write_text(
        f"#!/bin/sh\nwhile true; do echo '{ORIN_NANO_LINE}'; sleep 0.05; done\n")
    (bin_dir / "nvpmodel").write_text("#!/bin/sh\necho 'NV Power Mode: 15W'\necho 0\n")
    for tool in ("tegrastats", "nvpmodel"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "r.json"
    assert main(["bench", "--onnx", str(tiny_onnx / "decoder.onnx"), "--iterations", "5",
                 "--tegrastats", "--interval", "50", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["power"]["power_mw_mean"] == pytest.approx(4673)
    assert record["power"]["samples"] >= 1
    assert record["power_mode"]["nvpmodel"]["mode"] == "15W"
    captured = capsys.readouterr()
    assert "MAXN" in captured.err  # the warning says how to reach the max mode
    assert "| 4.67 |" in captured.out  # power W in the Markdown table
