"""Calibration: fake quantizers, observers, quantized modules and `calibrate()`.

PTQ4SAM (BIG, AGQ) and PTQ4ViT (twin uniform, Hessian-guided search) build on these.
"""

from trtq.calib import (
    conv_transpose,  # noqa: F401  (registers nn.ConvTranspose2d's twin)
    mha,  # noqa: F401  (registers nn.MultiheadAttention's quantized twin)
)
from trtq.calib.calibrate import (
    CalibSample,
    calibrate,
    load_quant_state,
    quantize,
    read_quant_state,
    save_quant_state,
    set_enabled,
)
from trtq.calib.modules import install_quant_modules, quantizers, register_quant_module
from trtq.calib.quantizer import CalibrationError, TensorQuantizer

__all__ = [
    "CalibSample", "CalibrationError", "TensorQuantizer", "calibrate", "install_quant_modules",
    "load_quant_state", "quantize", "quantizers", "read_quant_state", "register_quant_module",
    "save_quant_state", "set_enabled",
]
