"""Run a deserialized TensorRT engine on NumPy inputs (name-based I/O, TensorRT 8.5+).

Device memory comes from PyTorch's CUDA allocator, so no pycuda is needed; the engine runs on
a PyTorch stream of `device`. `bind` uploads inputs and allocates outputs once; `execute`
enqueues the engine on those buffers (what a benchmark times); `__call__` does both and copies
the outputs back.
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
        self.stream = torch.cuda.Stream(self.device)
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU "
                               "memory?); close other GPU processes")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.buffers: dict = {}

    def _torch_dtype(self, name: str):
        return self.torch.from_numpy(
            np.zeros(0, self.trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def input_shapes(self, overrides: Mapping[str, tuple] | None = None) -> dict[str, tuple]:
        """Each input's shape: static, else `overrides`, else the profile's opt shape."""
        shapes = {}
        for name in self.inputs:
            shape = tuple(self.engine.get_tensor_shape(name))
            if overrides and name in overrides:
                shape = tuple(overrides[name])
            elif -1 in shape:
                shape = tuple(self.engine.get_tensor_profile_shape(name, 0)[1])
            shapes[name] = shape
        return shapes

    def bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Upload inputs, set shapes, allocate outputs and set every tensor address."""
        missing = sorted(set(self.inputs) - set(feeds))
        if missing:
            raise BackendError(f"engine inputs {missing} were not given (inputs: {self.inputs})")
        self.buffers = {}
        for name in self.inputs:
            tensor = self.torch.from_numpy(np.ascontiguousarray(feeds[name])).to(
                self.device, self._torch_dtype(name))
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise BackendError(f"input {name!r} shape {tuple(tensor.shape)} is outside the "
                                   "engine's optimization profile; rebuild with --shapes")
            self.context.set_tensor_address(name, tensor.data_ptr())
            self.buffers[name] = tensor
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = self.torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            self.buffers[name] = out
        # the uploads ran on PyTorch's current stream; the engine runs on self.stream
        self.stream.wait_stream(self.torch.cuda.current_stream(self.device))

    def execute(self) -> None:
        """Enqueue the engine on the bound buffers (asynchronous, on `self.stream`)."""
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BackendError("TensorRT failed to run the engine (see the TensorRT log above)")

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.bind(feeds)
        self.execute()
        self.stream.synchronize()
        return {name: self.buffers[name].cpu().numpy() for name in self.outputs}
