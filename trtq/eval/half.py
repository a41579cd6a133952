"""A SAM-family model in half precision, for the FP16 baseline's accuracy without a GPU.

`HalfBackend` runs the model with FP16 weights and FP16 activations: every layer reads FP16
tensors and writes FP16 tensors, the arithmetic of an FP16 TensorRT engine (FP16 operands,
wider accumulation inside each GEMM or convolution, FP16 results). PyTorch computes Linear
layers, matmuls, normalisation and activations natively in FP16 on the CPU. Its FP16
convolution is a slow reference loop on CPUs without FP16 units (about 25 s per LiteMedSAM
image), so convolutions take their FP16 input and weight exactly, multiply-accumulate in
float32 and round the result to FP16: the same operands and the same rounding of the output.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _Fp32AccumulateConv(nn.Module):
    """Wraps a Conv2d/ConvTranspose2d holding FP16 parameters (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        weight = c.weight.float()
        bias = None if c.bias is None else c.bias.float()
        if isinstance(c, nn.ConvTranspose2d):
            y = F.conv_transpose2d(x.float(), weight, bias, c.stride, c.padding,
                                   c.output_padding, c.groups, c.dilation)
        else:
            y = F.conv2d(x.float(), weight, bias, c.stride, c.padding, c.dilation, c.groups)
        return y.half()


def to_half(model: nn.Module) -> nn.Module:
    """`model` in place with FP16 parameters and buffers, its convolutions wrapped."""
    model.half()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.Conv2d, nn.ConvTranspose2d):
                setattr(parent, name, _Fp32AccumulateConv(child))
    return model


class HalfBackend:
    """An evaluation backend (`trtq.eval.backends`) over the model in FP16."""

    name = "torch-fp16"

    def __init__(self, model) -> None:
        self.model = to_half(model.eval())
        self.preprocess = model.preprocess
        self._decoder = self.model.box_decoder()

    def encode(self, image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.image_encoder(torch.from_numpy(image).half()).float().numpy()

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            masks, iou = self._decoder(torch.from_numpy(embeddings).half(),
                                       torch.from_numpy(boxes).half())
        return masks.float().numpy(), iou.float().numpy()
