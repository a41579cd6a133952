"""The GPU an engine is built for or run on: name, compute capability, Jetson module, DLA.

TensorRT engines only run on the GPU model and TensorRT version that built them, so the builder
records this and the loader compares it. The GPU is read through cuda-python (the `tensorrt`
extra installs it) or, failing that, PyTorch; with neither, or no GPU, there is no device and
TensorRT-RTX builds ahead of time.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from trtq.errors import BackendError

log = logging.getLogger("trtq.engines")

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
# Jetson modules with DLA cores (TENSORRT.md §1.1, §9): AGX Orin and Orin NX have two, the Orin
# Nano none; Xavier AGX/NX have two.
_DLA_MODULES = ("AGX Orin", "Orin NX", "AGX Xavier", "Xavier NX")
_NO_DLA_MODULES = ("Orin Nano",)


@dataclass(frozen=True)
class DeviceInfo:
    """A CUDA GPU as TensorRT sees it; `jetson` is the module name on a Jetson, else None."""

    name: str
    compute_capability: str
    jetson: str | None = None

    def describe(self) -> str:
        where = f" ({self.jetson})" if self.jetson else ""
        return f"{self.name}{where}, compute capability {self.compute_capability}"

    def to_dict(self) -> dict:
        return asdict(self)


def jetson_module(model_file: Path = DEVICE_TREE_MODEL) -> str | None:
    """The Jetson module name from the device tree ('NVIDIA Jetson Orin Nano ...'), or None."""
    with contextlib.suppress(OSError):
        text = model_file.read_bytes().decode("utf-8", "replace").strip("\x00 \n")
        if "jetson" in text.lower():
            return text
    return None


def module_has_dla(module: str | None) -> bool | None:
    """Whether a Jetson module has DLA cores; None when unknown (not a Jetson, new module)."""
    if not module:
        return None
    if any(name.lower() in module.lower() for name in _NO_DLA_MODULES):
        return False
    if any(name.lower() in module.lower() for name in _DLA_MODULES):
        return True
    return None


def _from_cuda_python(index: int) -> DeviceInfo | None:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            return None
    err, props = cudart.cudaGetDeviceProperties(index)
    if int(err) != 0:
        log.debug("cudaGetDeviceProperties(%d) failed: %s", index, err)
        return None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(name.strip("\x00 "), f"{props.major}.{props.minor}", jetson_module())


def _from_torch(index: int) -> DeviceInfo | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return DeviceInfo(torch.cuda.get_device_name(index), f"{major}.{minor}", jetson_module())


def current_device(index: int = 0) -> DeviceInfo | None:
    """The CUDA GPU `index`, or None when there is none (or nothing here can query it)."""
    return _from_cuda_python(index) or _from_torch(index)


def require_device(index: int = 0) -> DeviceInfo:
    device = current_device(index)
    if device is None:
        raise BackendError("no CUDA GPU is visible here (checked with cuda-python and PyTorch); "
                           "run this on the machine with the GPU, e.g. the Jetson")
    return device
