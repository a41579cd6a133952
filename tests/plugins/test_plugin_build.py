"""`trtq build` serves LogQuant plugin nodes with trtq's Python plugin when no C++ library is
built. TensorRT-RTX's parser can only add plugin layers in a process started with its library
alias on LD_LIBRARY_PATH (see trtq.plugins.python_plugin), so the build runs in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trtq.engines.versions import module_version


def test_trtq_build_registers_the_python_plugin(trt, tiny_ptq4sam_qdq, tmp_path):
    if not module_version(trt).rtx:
        pytest.skip("the subprocess set-up below is TensorRT-RTX's; real TensorRT builds with "
                    "the plugin in tests/engines/test_tensorrt_gpu.py-style runs")
    from trtq.plugins.python_plugin import python_plugin_env

    env = python_plugin_env(trt, dict(os.environ))
    env.pop("TRTQ_LOGQUANT_PLUGIN", None)
    env["TRTQ_CACHE"] = str(tmp_path / "cache")  # no C++ plugin library there
    engine = tmp_path / "decoder.int8.engine"
    done = subprocess.run([sys.executable, "-m", "trtq", "build", "--onnx",
                           str(tiny_ptq4sam_qdq["plugin"] / "decoder.onnx"), "--out", str(engine)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "decoder.int8.engine.json").read_text())
    assert record["logquant_plugin"] == "python" and record["build"]["plugins"] == []
    assert engine.stat().st_size > 1_000_000
    assert "Python plugin registered" in done.stderr
