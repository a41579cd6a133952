"""ONNX export: FP32 encoder/decoder pairs now; Q/DQ INT8, FP16 and the LogQuant op next."""
