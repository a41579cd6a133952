"""Uniform quantization with the semantics of ONNX QuantizeLinear / DequantizeLinear.

One arithmetic for every uniform quantizer trtq simulates, searches with, folds biases from and
exports, so the fake-quantized PyTorch model and the exported graph round alike:

    q = saturate(round_half_to_even(x / scale) + zero_point, qmin, qmax)
    x̂ = (q − zero_point) · scale

`x / scale` is a true division, as the ONNX operator specifies and onnxruntime computes it.
torch's `fake_quantize_per_*_affine` multiplies by the reciprocal instead, which rounds a value
within a float32 step of a rounding tie the other way (about one value in 14 on exact half-step
ties); that would make the simulation disagree with the runtime on those values.

`fake_quant` is differentiable (straight-through inside the range, zero outside, as the usual
fake quantizers) and exports as a QuantizeLinear → DequantizeLinear pair (int8 zero point when
qmin < 0, uint8 otherwise). ONNX has no narrow range: an 8-bit narrow weight ([-127, 127])
exports with the int8 range, and `trtq.export.qdq_rewrite` stores the weight as its simulated
codes times the scale, which QuantizeLinear maps back onto exactly those codes.
"""

from __future__ import annotations

import torch


def _along(param: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """`param` shaped to broadcast against `x` (per-tensor: as is; per-channel: on `axis`)."""
    if axis is None or param.dim() == 0:
        return param
    shape = [1] * x.dim()
    shape[axis] = -1
    return param.reshape(shape)


def quantize_codes(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int,
                   qmax: int, axis: int | None = None) -> torch.Tensor:
    """The integer codes (as floats of `x`'s dtype) that QuantizeLinear writes for `x`."""
    s = _along(scale.to(x.dtype), x, axis)
    z = _along(zero_point.to(x.dtype), x, axis)
    return torch.clamp(torch.round(x / s) + z, qmin, qmax)


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin: int, qmax: int, axis):
        s = _along(scale.to(x.dtype), x, axis)
        z = _along(zero_point.to(x.dtype), x, axis)
        unclamped = torch.round(x / s) + z
        ctx.save_for_backward((unclamped >= qmin) & (unclamped <= qmax))
        return (torch.clamp(unclamped, qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None

    @staticmethod
    def symbolic(g, x, scale, zero_point, qmin: int, qmax: int, axis):
        extra = {} if axis is None else {"axis_i": axis}
        q = g.op("QuantizeLinear", x, scale, zero_point, **extra)
        return g.op("DequantizeLinear", q, scale, zero_point, **extra)


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int,
               qmax: int, axis: int | None = None) -> torch.Tensor:
    """Quantize-dequantize `x` (per tensor, or per channel along `axis`)."""
    zero_type = torch.int8 if qmin < 0 else torch.uint8
    scale = torch.as_tensor(scale, dtype=torch.float32)
    zero_point = torch.as_tensor(zero_point).to(zero_type)
    if axis is not None and axis < 0:
        axis += x.dim()
    return _FakeQuant.apply(x, scale, zero_point, int(qmin), int(qmax), axis)
