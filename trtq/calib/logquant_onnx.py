"""The log2 quantizer in ONNX: one `trtq::LogQuant` node, or a decomposition into standard ops.

Forms (`form` argument, `trtq export --logquant`):

* `onnx`: standard opset-13+ ops that onnxruntime and TensorRT's parser run as they are. A log2
  estimate of the code, clamp(round(−τ·log2(max(x, FLT_MIN)/s)), 0, L−1), is corrected by one
  comparison with the threshold on each side (Gather from a constant table), then the level is
  gathered from the level table. The estimate is never more than one code off, so the result
  equals the reference encoding exactly, whatever the library's Log rounding.
* `plugin`: `LogQuant` in domain `trtq` (version 1) with attributes `bits` (int), `tau` (int)
  and `scale` (float), plus `plugin_namespace` "trtq" and `plugin_version` "1" (what TensorRT's
  ONNX parser looks the plugin creator up by); TensorRT runs it through trtq's plugin,
  onnxruntime through the Python custom op in `trtq.export.logquant_ort`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from trtq.calib.logquant import FLT_MIN, levels, log_fake_quant, thresholds

DOMAIN = "trtq"
OP_TYPE = "LogQuant"
DOMAIN_VERSION = 1
FORMS = ("onnx", "plugin")


def _const(g, array: np.ndarray):
    return g.op("Constant", value_t=torch.from_numpy(np.array(array)))


def _decomposed(g, x, bits: int, tau: int, scale: float):
    codes = 2 ** bits
    big = float(np.finfo(np.float32).max)
    # bounds[q] > x ≥ bounds[q + 1] for the right code q (bounds[0] above everything,
    # bounds[L] below every non-negative x)
    bounds = np.concatenate([[big], thresholds(bits, tau, scale), [-1.0]]).astype(np.float32)
    f32 = lambda v: _const(g, np.array(v, dtype=np.float32))  # noqa: E731
    x_pos = g.op("Max", x, f32(0.0))
    x_log = g.op("Max", x, f32(FLT_MIN))
    estimate = g.op("Mul", g.op("Log", g.op("Div", x_log, f32(scale))),
                    f32(-tau / math.log(2.0)))
    estimate = g.op("Clip", g.op("Round", estimate), f32(0.0), f32(codes - 1))
    q0 = g.op("Cast", estimate, to_i=6)  # INT32
    table = _const(g, bounds)
    upper = g.op("Gather", table, q0, axis_i=0)
    lower = g.op("Gather", table, g.op("Add", q0, _const(g, np.array(1, dtype=np.int32))),
                 axis_i=0)
    # x at or above the upper bound: the estimate is one code too large; below the lower
    # bound: one code too small
    above = g.op("Cast", g.op("GreaterOrEqual", x_pos, upper), to_i=6)
    below = g.op("Cast", g.op("Less", x_pos, lower), to_i=6)
    code = g.op("Add", g.op("Sub", q0, above), below)
    return g.op("Gather", _const(g, levels(bits, tau, scale)), code, axis_i=0)


class LogQuantFunction(torch.autograd.Function):
    """Reference arithmetic in PyTorch; `symbolic` writes the chosen ONNX form."""

    @staticmethod
    def forward(ctx, x, bits: int, tau: int, scale: float, form: str):
        return log_fake_quant(x, bits, tau, scale)

    @staticmethod
    def backward(ctx, grad):  # straight-through, as for the uniform fake-quantizers
        return grad, None, None, None, None

    @staticmethod
    def symbolic(g, x, bits: int, tau: int, scale: float, form: str):
        if form == "plugin":
            # TensorRT's ONNX parser finds the creator by op type, plugin_version and
            # plugin_namespace (not by the node's domain): name both.
            out = g.op(f"{DOMAIN}::{OP_TYPE}", x, bits_i=bits, tau_i=tau, scale_f=scale,
                       plugin_namespace_s=DOMAIN, plugin_version_s=str(DOMAIN_VERSION))
            out.setType(x.type())
            return out
        return _decomposed(g, x, bits, tau, scale)


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"--logquant {form!r}: use one of {', '.join(FORMS)}")
    return form
