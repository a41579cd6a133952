"""Deploy-test fixtures: a real sshd on 127.0.0.1 with a stand-in Jetson root (see loopback.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.loopback import (
    Loopback,
    start_loopback,
    stop_sshd,
    stop_standins,
    write_device_root,
)


@pytest.fixture(scope="session")
def device_root(tmp_path_factory) -> Iterator[Path]:
    """The stand-in Orin Nano (JetPack 6.2) root; needs no ssh. The same folder as
    `loopback.device_root`: tests that change it (fail-build marker, trtexec removed) undo it."""
    root = write_device_root(tmp_path_factory.mktemp("jetson_root"))
    yield root
    stop_standins(root)


@pytest.fixture(scope="session")
def loopback(tmp_path_factory, device_root) -> Iterator[Loopback]:
    """A real OpenSSH server on 127.0.0.1 for the session (skips when OpenSSH or rsync is
    missing). Its sessions see TRTQ_DEVICE_ROOT=<device_root>."""
    lb, proc = start_loopback(tmp_path_factory.mktemp("loopback_ssh"), device_root)
    try:
        yield lb
    finally:
        stop_sshd(proc, lb)


@pytest.fixture(scope="session")
def tiny_run_folder(tiny_onnx, calibrate_export, synthetic_coco, tmp_path_factory) -> Path:
    """A `trtq run`-shaped folder: tiny FP32 export (→ FP16) and its W8A8 Q/DQ export."""
    root = tmp_path_factory.mktemp("tiny_run")
    shutil.copytree(tiny_onnx, root / "onnx")
    int8 = calibrate_export("tiny_litemedsam", "w8a8", synthetic_coco,
                            tmp_path_factory.mktemp("tiny_int8"))
    shutil.copytree(int8, root / "onnx-int8-tensorrt")
    return root
