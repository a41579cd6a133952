"""`TensorQuantizer`: fake quantization of one tensor, with a calibration mode.

States: off (identity, the default), calibrating (identity while an observer records the
tensor), and on (fake-quantize with the calibrated scale and zero point). Uniform quantizers
use `trtq.calib.qdq.fake_quant`, ONNX QuantizeLinear/DequantizeLinear semantics exactly
(x / scale, round half to even, saturate), which exports as that pair, so the simulated and the
exported model round alike.

Other formats: log2 (AGQ, `trtq.calib.logquant`), twin-uniform (PTQ4ViT, `trtq.calib.twin`,
simulation only), and shifted asymmetric: an asymmetric range computed as a symmetric one on
x − c (c = Δ·(2^(b−1) − z)), the form `QuantLinear` exports with W·c folded into its bias.

The calibrated quantities (`QPARAMS`: scale, zero_point, tau, scale2, alt_scale,
alt_zero_point) are registered buffers, so they are in `model.state_dict()` as
`<quantizer>.scale` etc. and move with `model.to(device)`; a buffer is None (absent from the
state dict) until calibration or a load sets it. `load_state_dict` gives a quantizer the saved
tensors as a whole (an uncalibrated quantizer takes their shapes), and turns nothing on:
`trtq.calib.calibrate.set_enabled` does. Scales stay float32 whatever dtype the model is cast to
(`.half()`, `.double()`): TensorRT's Q/DQ scales are FP32, and a float16 scale would change
which code a value rounds to; the forward casts them to the input's dtype.
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

__all__ = ["QPARAMS", "CalibrationError", "NonFiniteError", "TensorQuantizer"]

# the calibrated buffers and their dtypes (the names are also the quant-state file's keys);
# alt_*: the same data's qparams with the other symmetry (activations only), so one calibration
# serves both the TensorRT (symmetric) and onnxruntime (uint8) targets
QPARAMS = {"scale": torch.float32, "zero_point": torch.int32, "tau": torch.int64,
           "scale2": torch.float32, "alt_scale": torch.float32, "alt_zero_point": torch.int32}


class TensorQuantizer(nn.Module):
    scale: torch.Tensor | None
    zero_point: torch.Tensor | None
    tau: torch.Tensor | None  # log2 quantizers only: the base τ (an int64 scalar)
    scale2: torch.Tensor | None  # twin quantizers: the second range's scale
    alt_scale: torch.Tensor | None
    alt_zero_point: torch.Tensor | None

    def __init__(self, device: torch.device | str | None = None) -> None:
        super().__init__()
        # where the buffers live, also while there are none (`load_state_dict` creates them
        # there); `install_quant_modules` puts it on the quantized module's device
        self._device = torch.device("cpu" if device is None else device)
        for name in QPARAMS:
            self.register_buffer(name, None)
        self.name = ""  # the qualified quantizer name, set by `trtq.calib.calibrate.quantize`
        self.spec: QuantizerSpec | None = None
        self.enabled = False
        self.calibrating = False
        self.export_mode = False
        self.logquant_form = "onnx"  # how a log2 quantizer exports: "onnx" ops or "plugin"
        self.observer: ActivationObserver | AgqObserver | None = None

    def extra_repr(self) -> str:
        if self.spec is None:
            return "float"
        state = "on" if self.enabled else "off"
        return f"{self.spec.describe()}, {state}, calibrated={self.scale is not None}"

    # -- configuration -------------------------------------------------------------------
    def configure(self, spec: QuantizerSpec | None) -> None:
        self.spec, self.enabled, self.observer = spec, False, None
        self._store(**dict.fromkeys(QPARAMS))

    def _store(self, **values) -> None:
        """Set calibrated buffers (None: not calibrated) in their dtype, on this quantizer's
        device."""
        for name, value in values.items():
            if value is not None:
                value = torch.as_tensor(value).to(device=self._device, dtype=QPARAMS[name])
            setattr(self, name, value)

    @property
    def alt(self) -> dict[str, torch.Tensor] | None:
        """{"scale", "zero_point"} of the other symmetry, or None."""
        if self.alt_scale is None:
            return None
        return {"scale": self.alt_scale, "zero_point": self.alt_zero_point}

    @alt.setter
    def alt(self, value: dict[str, torch.Tensor] | None) -> None:
        value = value or {}
        self._store(alt_scale=value.get("scale"), alt_zero_point=value.get("zero_point"))

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
            self._store(tau=torch.tensor(tau), scale=torch.tensor(scale, dtype=torch.float32))
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
        current = (self.scale, self.zero_point)
        self.spec = replace(self.spec, symmetric=not self.spec.symmetric)
        self._store(scale=self.alt_scale, zero_point=self.alt_zero_point,
                    alt_scale=current[0], alt_zero_point=current[1])

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
        scale, zero_point = range_to_qparams(lo, hi, self.spec)
        self._store(scale=scale, zero_point=zero_point)

    def set_twin(self, scale: float, scale2: float) -> None:
        self._store(scale=torch.tensor(scale, dtype=torch.float32),
                    scale2=torch.tensor(scale2, dtype=torch.float32))

    # -- state (plain tensors, no pickled modules) ---------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """The quant-state file's entry: CPU copies of the buffers this format uses."""
        if self.scale is None:
            return {}
        if self.is_log2:
            names = ("scale", "tau")
        elif self.is_twin:
            names = ("scale", "scale2")
        else:
            names = ("scale", "zero_point", "alt_scale", "alt_zero_point")
        return {name: getattr(self, name).detach().cpu().clone() for name in names
                if getattr(self, name) is not None}

    def load_state(self, state: dict[str, torch.Tensor], name: str) -> None:
        if self.spec is None:
            raise CalibrationError(f"{name}: the saved state quantizes it but the recipe keeps "
                                   "it float; the state and recipe do not match")
        scale = state["scale"].to(torch.float32)
        if self.is_log2:
            if "tau" not in state or scale.dim() != 0 or not float(scale) > 0:
                raise CalibrationError(f"{name}: saved log2 quantizer state is not a positive "
                                       "scale and a tau; re-run `trtq calibrate`")
            self._store(scale=scale, tau=torch.tensor(int(state["tau"])))
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
        self._store(scale=scale, zero_point=state["zero_point"], alt_scale=state.get("alt_scale"),
                    alt_zero_point=state.get("alt_zero_point"))

    # -- buffers: device moves and state dicts ---------------------------------------------
    def _apply(self, fn, recurse: bool = True):
        """`.to(device)`, `.half()`, `.double()` …: buffers follow the device, never the dtype."""
        kept = {name: self._buffers[name] for name in QPARAMS
                if self._buffers[name] is not None}
        self._buffers.update(dict.fromkeys(kept))
        try:
            super()._apply(fn, recurse)
            self._device = fn(torch.empty(0, device=self._device)).device
        finally:
            for name, value in kept.items():
                self._buffers[name] = (torch.empty_like(value, device=self._device)
                                       if value.is_meta else value.to(self._device))
        return self

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        # While exporting, the scales are no module state: the ONNX tracer then writes them as
        # constants (shared by equal values, as TensorRT's Q/DQ needs), exactly as before they
        # were buffers, instead of graph initializers named after the quantizer.
        if not self.export_mode:
            super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        given = {name: state_dict[prefix + name] for name in QPARAMS
                 if isinstance(state_dict.get(prefix + name), torch.Tensor)}
        if given:  # the saved calibration as a whole, in the saved shapes
            for name, dtype in QPARAMS.items():
                value = given.get(name)
                self._buffers[name] = None if value is None else torch.empty(
                    value.shape, dtype=dtype, device=self._device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._store(**{name: self._buffers[name] for name in given})  # after assign=True

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
            # the log2 tables and the ONNX attributes need host values (one sync on a GPU)
            return LogQuantFunction.apply(x, spec.bits, int(self.tau), float(self.scale),
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
        zero = torch.zeros((), dtype=torch.int32, device=self.scale.device)
        return fake_quant(x - self.shift(), self.scale, zero, -half, half - 1)
