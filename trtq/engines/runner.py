"""Run a deserialized TensorRT engine on NumPy inputs (name-based I/O, TensorRT 8.5+).

Device memory comes from PyTorch's CUDA allocator, so no pycuda is needed; the engine runs on
the current PyTorch stream of `device`. This is the thin correctness path (tests, evaluation);
latency is measured by trtexec or `trtq bench`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trtq.errors import BackendError


class EngineRunner:
    """`runner({name: array}) -> {name: array}` for one engine and one execution context."""

    def __init__(self, engine, trt, device: str = "cuda:0") -> None:
        import torch

        if not torch.cuda.is_available():
            raise BackendError("running a TensorRT engine needs a CUDA build of PyTorch and a "
                               "GPU; install torch for this device (on Jetson: NVIDIA's wheel)")
        self.torch, self.trt, self.engine = torch, trt, engine
        self.device = torch.device(device)
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def _torch_dtype(self, name: str):
        return self.torch.from_numpy(
            np.zeros(0, self.trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.inputs) - set(feeds))
        if missing:
            raise BackendError(f"engine inputs {missing} were not given (inputs: {self.inputs})")
        keep = []
        for name in self.inputs:
            tensor = self.torch.from_numpy(np.ascontiguousarray(feeds[name])).to(
                self.device, self._torch_dtype(name))
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise BackendError(f"input {name!r} shape {tuple(tensor.shape)} is outside the "
                                   "engine's optimization profile; rebuild with --shapes")
            self.context.set_tensor_address(name, tensor.data_ptr())
            keep.append(tensor)
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = self.torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            results[name] = out
        stream = self.torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT failed to run the engine (see the TensorRT log above)")
        stream.synchronize()
        return {name: out.cpu().numpy() for name, out in results.items()}
