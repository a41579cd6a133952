"""Benchmarks: latency runners (onnxruntime now; TensorRT, trtexec, tegrastats next), reports."""
