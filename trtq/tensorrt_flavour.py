"""Which flavour an imported TensorRT module is: TensorRT or TensorRT-RTX, by its name alone.

`trtq.engines` and `trtq.plugins` both ask; the answer lives below both so that plugins import
nothing from engines. Neither TensorRT module is imported here.
"""

from __future__ import annotations

# The TensorRT-RTX wheels install `tensorrt_rtx_bindings`; the `tensorrt-rtx-cu13` sdist adds a
# `tensorrt_rtx` module that re-exports it.
RTX_MODULES = ("tensorrt_rtx", "tensorrt_rtx_bindings")


def is_rtx(trt) -> bool:
    """Whether `trt` (an imported module, or a stand-in with a `__name__`) is TensorRT-RTX."""
    return trt.__name__.split(".")[0] in RTX_MODULES


def flavour_of(trt) -> str:
    """'tensorrt_rtx' for TensorRT-RTX, else 'tensorrt'."""
    return "tensorrt_rtx" if is_rtx(trt) else "tensorrt"
