"""trtq: post-training quantization of vision transformers for TensorRT on Jetson and desktop GPUs.

Importing this package is cheap: the heavy dependencies (torch, onnx, onnxruntime, TensorRT)
are imported by the submodules that need them.
"""

from trtq.errors import TrtqError

__version__ = "0.1.0"

__all__ = ["TrtqError", "__version__"]
