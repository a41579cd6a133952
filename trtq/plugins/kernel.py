"""The LogQuant CUDA kernel as a shared library: built with nvcc, called through ctypes.

`build_kernel_library(out)` compiles `logquant/logquant_kernel.cu` (no TensorRT needed) for
the SM list; `KernelLibrary(path)` exposes the host parameter function and the FP32/FP16
launchers on raw device pointers and a CUDA stream handle. The TensorRT plugins (C++ and the
Python registration) launch the same kernel.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
from pathlib import Path

from trtq.errors import BackendError

log = logging.getLogger("trtq.plugins")

SOURCE_DIR = Path(__file__).resolve().parent / "logquant"
KERNEL_SOURCE = SOURCE_DIR / "logquant_kernel.cu"
# Jetson Orin (8.7) and the desktop GPUs TensorRT 10/11 support. Jetson Xavier (7.2) needs the
# CUDA 11/12 nvcc of JetPack 5 (CUDA 13 dropped sm_72); pass archs=("72",) there.
DEFAULT_ARCHS = ("75", "80", "86", "87", "89", "90")


class LogQuantParams(ctypes.Structure):
    """Mirror of `TrtqLogQuantParams` in logquant.h."""

    _fields_ = [("level", ctypes.c_float * 4), ("half_step", ctypes.c_float * 4),
                ("scale", ctypes.c_float), ("tau", ctypes.c_int32), ("bits", ctypes.c_int32),
                ("usable", ctypes.c_int32)]


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = Path(home) / "bin" / "nvcc"
    return str(candidate) if candidate.is_file() else None


def nvcc_command(nvcc: str, out: Path, archs=DEFAULT_ARCHS) -> list[str]:
    """nvcc line building the kernel library: SASS for each SM, plus PTX of the newest."""
    gencode = []
    for arch in archs:
        gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    newest = max(archs, key=int)
    gencode += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return [nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-shared", *gencode,
            "-o", str(out), str(KERNEL_SOURCE)]


def build_kernel_library(out: str | os.PathLike, archs=DEFAULT_ARCHS,
                         nvcc: str | None = None) -> Path:
    """Compile the kernel library to `out` (replaced atomically); needs nvcc, not a GPU."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise BackendError("nvcc is not on PATH (nor in $CUDA_HOME/bin); install the CUDA "
                           "toolkit, or on a Jetson: sudo apt install nvidia-jetpack")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    command = nvcc_command(nvcc, tmp, archs)
    log.info("compiling the LogQuant kernel: %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"nvcc failed ({done.returncode}) building {out}:\n"
                           f"{(done.stderr or done.stdout).strip()[-3000:]}")
    os.replace(tmp, out)
    return out


class KernelLibrary:
    """ctypes view of a built kernel library."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            self.lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise BackendError(f"cannot load the LogQuant kernel library {path} ({exc}); "
                               "rebuild it with trtq.plugins.kernel.build_kernel_library") \
                from None
        self.lib.trtq_logquant_params.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_float,
                                                  ctypes.POINTER(LogQuantParams)]
        self.lib.trtq_logquant_params.restype = ctypes.c_int
        for name in ("trtq_logquant_f32", "trtq_logquant_f16"):
            fn = getattr(self.lib, name)
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                           ctypes.POINTER(LogQuantParams), ctypes.c_void_p]
            fn.restype = ctypes.c_int

    def params(self, bits: int, tau: int, scale: float) -> LogQuantParams:
        out = LogQuantParams()
        if self.lib.trtq_logquant_params(int(bits), int(tau), float(scale), ctypes.byref(out)):
            raise BackendError(f"invalid LogQuant parameters bits={bits} tau={tau} "
                               f"scale={scale}: need bits 2..8, tau 1/2/4, finite scale > 0")
        return out

    def launch(self, dtype: str, x_ptr: int, y_ptr: int, n: int, params: LogQuantParams,
               stream: int = 0) -> None:
        """y = LogQuant(x) on device pointers ('float32' or 'float16'), asynchronous."""
        fn = {"float32": self.lib.trtq_logquant_f32, "float16": self.lib.trtq_logquant_f16}[dtype]
        status = fn(x_ptr, y_ptr, n, ctypes.byref(params), stream)
        if status != 0:
            raise BackendError(f"LogQuant kernel launch failed (cudaError {status})")
