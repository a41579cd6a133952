"""Inference engines: onnxruntime sessions now; TensorRT builders (8.5–11, TensorRT-RTX) next.

Optional backends are imported inside the functions that use them.
"""
