"""Custom ops: the LogQuant CUDA kernel and its TensorRT IPluginV3 (C++ and Python
registration), with a numpy/PyTorch reference. Arrives with the log-quant plugin issue."""
