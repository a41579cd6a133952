"""trtq: post-training quantization of vision transformers for TensorRT on Jetson and desktop GPUs.

Importing this package is cheap: the heavy dependencies (torch, onnx, onnxruntime, TensorRT)
are imported by the submodules that need them. The Python API (`trtq.quantize`, `trtq.save`,
`trtq.load`, `trtq.export_onnx`) lives in `trtq.api` and is loaded on first use.
"""

from trtq.errors import TrtqError

__version__ = "0.1.0"

_API = ("quantize", "save", "load", "export_onnx")

__all__ = ["TrtqError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from trtq import api

        return getattr(api, name)
    raise AttributeError(f"module 'trtq' has no attribute {name!r}")
