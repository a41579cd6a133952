"""`nn.ConvTranspose2d`, quantized (upsampling heads: segmentation and saliency decoders).

A transposed convolution's weight is [C_in, C_out / groups, kH, kW]: its output channels are
axis 1, where TensorRT and ONNX read a per-channel DequantizeLinear feeding ConvTranspose. The
weight quantizer therefore moves a recipe's per-channel axis 0 (the output-channel axis of
Linear and Conv weights, what `*.weight_quantizer` rules say) to axis 1; a grouped transposed
convolution is quantized per tensor (axis 1 then holds only one group's channels).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from trtq.calib.modules import register_quant_module
from trtq.calib.quantizer import TensorQuantizer


class OutputChannelQuantizer(TensorQuantizer):
    """A weight quantizer whose per-channel axis is `axis` (None: per tensor) whatever axis the
    recipe's spec names."""

    def __init__(self, axis: int | None) -> None:
        super().__init__()
        self.channel_axis = axis

    def configure(self, spec) -> None:
        if spec is not None and spec.axis is not None and spec.axis != self.channel_axis:
            spec = replace(spec, axis=self.channel_axis)
        super().configure(spec)


class QuantConvTranspose2d(nn.ConvTranspose2d):
    @classmethod
    def convert(cls, module: nn.ConvTranspose2d) -> QuantConvTranspose2d:
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)
        new._parameters = dict(module._parameters)
        new._buffers = dict(module._buffers)
        new._modules = dict(module._modules)
        new.input_quantizer = TensorQuantizer()
        new.weight_quantizer = OutputChannelQuantizer(1 if module.groups == 1 else None)
        return new

    def quant_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        padding = self._output_padding(x, output_size, self.stride, self.padding,
                                       self.kernel_size, 2, self.dilation)
        return nn.functional.conv_transpose2d(
            self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias, self.stride,
            self.padding, padding, self.groups, self.dilation)


register_quant_module(nn.ConvTranspose2d, QuantConvTranspose2d)
