"""Which GPU and Jetson module trtq sees (recorded in engine sidecars, checked on load)."""

from __future__ import annotations

import pytest

from trtq.engines.device import (
    _from_cuda_python,
    _from_torch,
    current_device,
    jetson_module,
    module_has_dla,
    require_device,
)
from trtq.errors import BackendError

NANO = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"


def test_jetson_module_from_the_device_tree(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(NANO.encode() + b"\x00")  # the device tree string is NUL-terminated
    assert jetson_module(model) == NANO
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert jetson_module(model) is None
    assert jetson_module(tmp_path / "absent") is None


@pytest.mark.parametrize("module, has", [
    (NANO, False), ("NVIDIA Jetson AGX Orin Developer Kit", True),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", True),
    ("NVIDIA Jetson Xavier NX Developer Kit", True), ("NVIDIA Jetson Thor", None), (None, None)])
def test_dla_by_module(module, has):
    assert module_has_dla(module) is has


def test_no_gpu_means_no_device_and_a_clear_error():
    if current_device() is not None:
        pytest.skip("a GPU is visible here")
    with pytest.raises(BackendError, match="no CUDA GPU is visible"):
        require_device()


@pytest.mark.cuda
def test_cuda_python_and_torch_agree_on_the_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to PyTorch")
    via_torch = _from_torch(0)
    via_cuda = _from_cuda_python(0)
    if via_cuda is None:
        pytest.skip("cuda-python is not installed")
    assert via_cuda == via_torch
    assert via_torch.compute_capability == "{}.{}".format(*torch.cuda.get_device_capability(0))
    assert current_device(torch.cuda.device_count()) is None
