"""`TensorQuantizer`: fake quantization of one tensor, with a calibration mode.

States: off (identity, the default), calibrating (identity while an observer records the
tensor), and on (fake-quantize with the calibrated scale and zero point). Uniform quantizers
use `trtq.calib.qdq.fake_quant`, ONNX QuantizeLinear/DequantizeLinear semantics exactly
(x / scale, round half to even, saturate), which exports as that pair, so the simulated and the
exported model round alike.

Other formats: log2 (AGQ, `trtq.calib.logquant`), twin-uniform (PTQ4ViT, `trtq.calib.twin`,
simulation only), and shifted asymmetric: an asymmetric range computed as a symmetric one on
x − c (c = Δ·(2^(b−1) − z)), the form `QuantLinear` exports with W·c folded into its bias.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from trtq.calib.logquant import AgqObserver
from trtq.calib.logquant_onnx import LogQuantFunction
from trtq.calib.observers import (
    ActivationObserver,
    NonFiniteError,
    range_to_qparams,
    weight_range,
)
from trtq.calib.qdq import fake_quant
from trtq.calib.twin import twin_fake_quant
from trtq.errors import CalibrationError
from trtq.recipes import TWIN_KINDS, QuantizerSpec

__all__ = ["CalibrationError", "NonFiniteError", "TensorQuantizer"]


class TensorQuantizer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # the qualified quantizer name, set by `trtq.calib.calibrate.quantize`
        self.spec: QuantizerSpec | None = None
        self.enabled = False
        self.calibrating = False
        self.export_mode = False
        self.logquant_form = "onnx"  # how a log2 quantizer exports: "onnx" ops or "plugin"
        self.observer: ActivationObserver | AgqObserver | None = None
        self.scale: torch.Tensor | None = None
        self.zero_point: torch.Tensor | None = None
        self.tau: int | None = None  # log2 quantizers only
        self.scale2: torch.Tensor | None = None  # twin quantizers: the second range's scale
        # qparams for the same data with the other symmetry (activations only), so one
        # calibration serves both the TensorRT (symmetric) and onnxruntime (uint8) targets
        self.alt: dict[str, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        if self.spec is None:
            return "float"
        state = "on" if self.enabled else "off"
        return f"{self.spec.describe()}, {state}, calibrated={self.scale is not None}"

    # -- configuration -------------------------------------------------------------------
    def configure(self, spec: QuantizerSpec | None) -> None:
        self.spec, self.enabled = spec, False
        self.scale = self.zero_point = self.observer = self.alt = self.tau = None
        self.scale2 = None

    @property
    def is_log2(self) -> bool:
        return self.spec is not None and self.spec.kind == "log2"

    @property
    def is_twin(self) -> bool:
        return self.spec is not None and self.spec.kind in TWIN_KINDS

    @property
    def is_shifted(self) -> bool:
        return self.spec is not None and self.spec.shifted

    def shift(self) -> float:
        """c of a shifted quantizer: x̂ = Δ·q' + c with q' the symmetric code of x − c."""
        half = 2 ** (self.spec.bits - 1)
        return float(self.scale) * (half - int(self.zero_point))

    def start_calibration(self) -> None:
        if self.spec is None:
            return
        self.calibrating = True
        if self.is_log2:
            self.observer = AgqObserver(self.spec.bits, self.spec.taus, self.spec.mse_p)
        else:
            self.observer = ActivationObserver(self.spec)

    def finish_calibration(self) -> bool:
        """Turn the observed statistics into qparams; False if this tensor was never seen."""
        self.calibrating = False
        observer, self.observer = self.observer, None
        if self.spec is None or observer is None or observer.batches == 0:
            return False
        if self.is_log2:
            tau, scale = observer.compute()
            self.tau, self.scale = tau, torch.tensor(scale, dtype=torch.float32)
            return True
        lo, hi = observer.compute()
        self.set_range(torch.tensor(lo), torch.tensor(hi))
        if self.spec.shifted:
            return True  # runs on both targets as it is: no alternative symmetry
        other = replace(self.spec, symmetric=not self.spec.symmetric)
        observer.spec = other
        scale, zero_point = range_to_qparams(*map(torch.tensor, observer.compute()), other)
        self.alt = {"scale": scale, "zero_point": zero_point}
        return True

    def flip_symmetry(self) -> None:
        """Switch an activation quantizer to the other symmetry using its stored alt qparams."""
        if self.spec is None or self.is_log2 or self.is_twin or self.is_shifted:
            return
        if self.alt is None:
            raise CalibrationError("this quant state has no alternative-symmetry ranges; "
                                   "re-run `trtq calibrate` with this trtq version")
        current = {"scale": self.scale, "zero_point": self.zero_point}
        self.spec = replace(self.spec, symmetric=not self.spec.symmetric)
        self.scale, self.zero_point = self.alt["scale"], self.alt["zero_point"]
        self.alt = current

    def observe(self, x: torch.Tensor, other: torch.Tensor | None = None) -> None:
        """Feed the observer (a log2 quantizer also sees the matmul's other operand); NaN or
        Inf is refused, naming this quantizer."""
        try:
            if other is None:
                self.observer.update(x)
            else:
                self.observer.update_pair(x, other)
        except NonFiniteError as exc:
            exc.layer = exc.layer or self.name
            raise

    def calibrate_weight(self, weight: torch.Tensor) -> None:
        try:
            lo, hi = weight_range(weight, self.spec)
        except NonFiniteError as exc:
            exc.layer = exc.layer or self.name
            raise
        self.set_range(lo, hi)

    def set_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        self.scale, self.zero_point = range_to_qparams(lo, hi, self.spec)

    def set_twin(self, scale: float, scale2: float) -> None:
        self.scale = torch.tensor(scale, dtype=torch.float32)
        self.scale2 = torch.tensor(scale2, dtype=torch.float32)

    # -- state (plain tensors, no pickled modules) ---------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        if self.scale is None:
            return {}
        if self.is_log2:
            return {"scale": self.scale.clone(), "tau": torch.tensor(self.tau)}
        if self.is_twin:
            return {"scale": self.scale.clone(), "scale2": self.scale2.clone()}
        out = {"scale": self.scale.clone(), "zero_point": self.zero_point.clone()}
        if self.alt is not None:
            out |= {"alt_scale": self.alt["scale"], "alt_zero_point": self.alt["zero_point"]}
        return out

    def load_state(self, state: dict[str, torch.Tensor], name: str) -> None:
        if self.spec is None:
            raise CalibrationError(f"{name}: the saved state quantizes it but the recipe keeps "
                                   "it float; the state and recipe do not match")
        scale = state["scale"].to(torch.float32)
        if self.is_log2:
            if "tau" not in state or scale.dim() != 0 or not float(scale) > 0:
                raise CalibrationError(f"{name}: saved log2 quantizer state is not a positive "
                                       "scale and a tau; re-run `trtq calibrate`")
            self.scale, self.tau = scale, int(state["tau"])
            return
        if self.is_twin:
            if "scale2" not in state or scale.dim() != 0 or not float(scale) > 0 \
                    or not float(state["scale2"]) > 0:
                raise CalibrationError(f"{name}: saved twin quantizer state is not two "
                                       "positive scales; re-run `trtq calibrate`")
            self.set_twin(float(scale), float(state["scale2"]))
            return
        expected = () if self.spec.axis is None else (scale.numel(),)
        if tuple(scale.shape) != expected or not bool(torch.all(scale > 0)):
            raise CalibrationError(f"{name}: saved scale has shape {tuple(scale.shape)} or a "
                                   "non-positive value; re-run `trtq calibrate`")
        self.scale, self.zero_point = scale, state["zero_point"].to(torch.int32)
        if "alt_scale" in state:
            self.alt = {"scale": state["alt_scale"].to(torch.float32),
                        "zero_point": state["alt_zero_point"].to(torch.int32)}

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.observe(x)
            return x
        if not self.enabled:
            return x
        if self.scale is None:
            raise CalibrationError("a quantizer is on but has no range: calibrate the model "
                                   "(trtq.calib.calibrate) or load a quant state first")
        spec = self.spec
        if self.is_log2:
            return LogQuantFunction.apply(x, spec.bits, self.tau, float(self.scale),
                                          self.logquant_form)
        if self.is_twin:
            if self.export_mode:
                raise CalibrationError("twin-uniform quantizers are simulation-only (TensorRT "
                                       "has no twin-range INT8); export a -ptq4vit-deploy "
                                       "recipe instead")
            return twin_fake_quant(x, spec.kind, spec.bits, float(self.scale),
                                   float(self.scale2))
        if spec.shifted:  # exported as Sub(x, c) → Q/DQ, with W·c folded by the Linear
            codes = self.shifted_codes(x)
            return codes if self.export_mode else codes + self.shift()
        return fake_quant(x, self.scale, self.zero_point, spec.qmin, spec.qmax, spec.axis)

    def shifted_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Δ·q' with q' the symmetric (b-bit, zero point 0) code of x − c: what the exported
        Sub → QuantizeLinear → DequantizeLinear computes."""
        half = 2 ** (self.spec.bits - 1)
        zero = torch.zeros((), dtype=torch.int32)
        return fake_quant(x - self.shift(), self.scale, zero, -half, half - 1)
