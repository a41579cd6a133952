"""LiteMedSAM's exports are unchanged by the model-adapter refactor: the tiny LiteMedSAM
calibrated with w8a8 (both targets) and its bimodal variant with w8a8-ptq4sam (TensorRT target)
export byte for byte the ONNX files trtq exported before adapters existed.

GOLDEN was produced on main at d2db4b8 (before adapters) from the same fixtures as this test
(`tests/conftest.py`: `tiny_qdq`, `tiny_ptq4sam_qdq`; calibration on the synthetic COCO split,
deterministic: two runs gave the same bytes), as the SHA-256 of each file, with the versions in
VERSIONS. The bytes depend on the exporter, so with other versions the test is skipped: after an
upgrade, regenerate GOLDEN from a commit whose exports are known to be right.

The onnxruntime target ships onnxruntime's optimized graph, whose bytes depend on what ran
before in the same process (measured: this test alone matches GOLDEN, after 480 other tests in one
pytest process it does not). In-process the test therefore pins the TensorRT-target files (the
same calibration's scales, written as Q/DQ by trtq alone) and checks the onnxruntime-target files
in a fresh process (`test_onnxruntime_target_bytes_in_a_fresh_process`, slow).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

VERSIONS = {"torch": "2.13.0+cpu", "onnx": "1.23.2", "onnxruntime": "1.32.0"}
GOLDEN = {
    ("w8a8", "tensorrt", "encoder"):
        "910b91c3133609c6f1936da85dd5989f2c5b24dca2d8d670ea4622647bb585b0",
    ("w8a8", "tensorrt", "decoder"):
        "a247011af427b413a9f4a0dbc3f92d1d38e8e30813035ffa6b92c603dd99ab78",
    ("w8a8", "onnxruntime", "encoder"):
        "ffeead9879e79bd521401f93c896a093aa787b1eb02fd204aee5678f6a6b1921",
    ("w8a8", "onnxruntime", "decoder"):
        "873b216769b2978677bfc7d2c5cf6275455ed31b1f22b96d693ab392b7c605be",
    ("w8a8-ptq4sam", "tensorrt", "encoder"):
        "d2dafac33a8368e97c80c0b2c4ce841b30ab4e666b1277629c21f09121ad831b",
    ("w8a8-ptq4sam", "tensorrt", "decoder"):
        "99645a15ecfc7e6fa9ddffaf9623fb96a5ac81a4b64ef4e91e79be2847571e6e",
}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def test_tiny_litemedsam_exports_are_the_pre_adapter_bytes(tiny_qdq, tiny_ptq4sam_qdq):
    if _versions() != VERSIONS:
        pytest.skip(f"golden bytes are for {VERSIONS}, this is {_versions()}")
    folders = {("w8a8", "tensorrt"): tiny_qdq["tensorrt"],
               ("w8a8-ptq4sam", "tensorrt"): tiny_ptq4sam_qdq["onnx"]}
    got = {(recipe, target, part): hashlib.sha256(
               (folder / f"{part}.onnx").read_bytes()).hexdigest()
           for (recipe, target), folder in folders.items() for part in ("encoder", "decoder")}
    assert got == {k: v for k, v in GOLDEN.items() if k[1] == "tensorrt"}


@pytest.mark.slow
def test_onnxruntime_target_bytes_in_a_fresh_process():
    """The onnxruntime-target pair, exported in a process that ran nothing else."""
    if _versions() != VERSIONS:
        pytest.skip(f"golden bytes are for {VERSIONS}, this is {_versions()}")
    here = Path(__file__).resolve()
    test = f"{here}::test_tiny_litemedsam_onnxruntime_pair"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-m", "not slow", test], cwd=here.parents[2], capture_output=True,
                         text=True, env={**os.environ, "TRTQ_ORT_GOLDEN": "1"})
    assert run.returncode == 0, run.stdout[-2000:]


def test_tiny_litemedsam_onnxruntime_pair(tiny_qdq):
    if os.environ.get("TRTQ_ORT_GOLDEN") != "1":
        pytest.skip("run by test_onnxruntime_target_bytes_in_a_fresh_process in its own process")
    if _versions() != VERSIONS:
        pytest.skip(f"golden bytes are for {VERSIONS}, this is {_versions()}")
    got = {("w8a8", "onnxruntime", part): hashlib.sha256(
               (tiny_qdq["onnxruntime"] / f"{part}.onnx").read_bytes()).hexdigest()
           for part in ("encoder", "decoder")}
    assert got == {k: v for k, v in GOLDEN.items() if k[1] == "onnxruntime"}
