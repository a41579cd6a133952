"""Quantized modules and the registry that installs them.

`register_quant_module(Original, Quantized)` maps a float module type onto its quantized twin;
`install_quant_modules(model)` swaps every registered module for its twin (the same parameters
and state-dict keys, plus `*_quantizer` children, whose calibrated scales are buffers:
`<module>.input_quantizer.scale`, ...). No `forward` is monkey-patched: the twins are
ordinary subclasses. With every quantizer off a twin computes exactly what the original did.

Quantizer names (what recipes match): `<module>.input_quantizer` and `<module>.weight_quantizer`
for Linear/Conv; `<matmul>.input_quantizer` and `<matmul>.other_quantizer` for the two operands
of an attention matmul (`torch.matmul(input, other)`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trtq.calib.quantizer import TensorQuantizer
from trtq.models.layers import ConvBN, MatMul

log = logging.getLogger("trtq.calib")

_REGISTRY: dict[type[nn.Module], type[nn.Module]] = {}


def register_quant_module(original: type[nn.Module], quantized: type[nn.Module]) -> None:
    """Quantize every `original`, and every subclass of it that keeps its `forward`, by
    converting it with `quantized.convert`."""
    _REGISTRY[original] = quantized


def registered() -> dict[type[nn.Module], type[nn.Module]]:
    return dict(_REGISTRY)


def twin_for(module: nn.Module) -> type[nn.Module] | None:
    """The quantized twin that replaces `module`, or None: the twin of its nearest registered
    base class, provided the module computes what that base computes (a subclass that overrides
    `forward` is left alone and logged). Twins themselves are never converted again."""
    if isinstance(module, tuple(_REGISTRY.values())):
        return None
    for base in type(module).__mro__:
        twin = _REGISTRY.get(base)
        if twin is None:
            continue
        if getattr(type(module), "forward", None) is not getattr(base, "forward", None):
            log.warning("%s subclasses %s but overrides forward(): not quantized (register a "
                        "twin with trtq.calib.register_quant_module)", type(module).__name__,
                        base.__name__)
            return None
        return twin
    return None


class QuantLinear(nn.Linear):
    @classmethod
    def convert(cls, module: nn.Linear) -> QuantLinear:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = module.in_features, module.out_features
        new.weight, new.bias = module.weight, module.bias
        new.input_quantizer, new.weight_quantizer = TensorQuantizer(), TensorQuantizer()
        return new

    def quant_weight(self) -> torch.Tensor:
        return self.weight

    def shifted_bias(self) -> torch.Tensor:
        """b + Ŵ·c for a shifted input quantizer (Ŵ the fake-quantized weight): the bias of the
        lowered form W·(x̂' + c) + b = W·x̂' + (W·c + b)."""
        c = torch.full((self.in_features,), self.input_quantizer.shift(),
                       dtype=self.weight.dtype, device=self.weight.device)
        folded = F.linear(c, self.weight_quantizer(self.weight))
        return folded if self.bias is None else folded + self.bias

    def prepare_export(self) -> None:
        """Freeze the folded bias as a plain tensor so the ONNX trace writes it as a constant."""
        q = self.input_quantizer
        self.export_bias = None
        if q.enabled and q.is_shifted:
            with torch.no_grad():
                self.export_bias = self.shifted_bias().detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.input_quantizer
        if q.enabled and q.is_shifted and q.export_mode:
            # Sub(x, c) → symmetric Q/DQ → MatMul, with W·c in the bias (TensorRT-deployable)
            bias = getattr(self, "export_bias", None)
            bias = self.shifted_bias() if bias is None else bias
            return F.linear(q(x), self.weight_quantizer(self.weight), bias)
        return F.linear(q(x), self.weight_quantizer(self.weight), self.bias)


class QuantConv2d(nn.Conv2d):
    @classmethod
    def convert(cls, module: nn.Conv2d) -> QuantConv2d:
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)
        new._parameters = dict(module._parameters)
        new._buffers = dict(module._buffers)
        new._modules = dict(module._modules)
        new.input_quantizer, new.weight_quantizer = TensorQuantizer(), TensorQuantizer()
        return new

    def quant_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_quantizer(self.weight)
        return self._conv_forward(self.input_quantizer(x), w, self.bias)


class QuantConvBN(nn.Module):
    """Conv + BatchNorm. Quantized, it runs one conv with the BatchNorm folded into the weight
    and bias (what TensorRT would fuse), so the weight scales are those of the folded weight.
    Off, it runs conv then BatchNorm exactly like `ConvBN`. Keys stay `c.*` and `bn.*`."""

    @classmethod
    def convert(cls, module: ConvBN) -> QuantConvBN:
        new = cls()
        new.c, new.bn = module.c, module.bn
        new.input_quantizer, new.weight_quantizer = TensorQuantizer(), TensorQuantizer()
        return new

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.c.weight * factor.reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * factor
        if self.c.bias is not None:
            bias = bias + self.c.bias * factor
        return weight, bias

    def quant_weight(self) -> torch.Tensor:
        return self._folded()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quantizer(x)
        if not (self.weight_quantizer.enabled or self.weight_quantizer.calibrating):
            return self.bn(self.c(x))
        weight, bias = self._folded()
        return self.c._conv_forward(x, self.weight_quantizer(weight), bias)


class QuantMatMul(MatMul):
    @classmethod
    def convert(cls, module: MatMul) -> QuantMatMul:
        new = cls()
        new.input_quantizer, new.other_quantizer = TensorQuantizer(), TensorQuantizer()
        return new

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        first = self.input_quantizer
        if first.calibrating and first.is_log2:
            # AGQ scores a log2 scale by the error of this matmul's output (V in float)
            first.observe(a, b)
            return torch.matmul(a, self.other_quantizer(b))
        return torch.matmul(first(a), self.other_quantizer(b))


register_quant_module(nn.Linear, QuantLinear)
register_quant_module(nn.Conv2d, QuantConv2d)
register_quant_module(ConvBN, QuantConvBN)
register_quant_module(MatMul, QuantMatMul)


def module_type_names(module: nn.Module) -> frozenset[str]:
    """The class names a recipe rule's `module_type` matches for `module`: its class and base
    classes, and for a quantized twin those of the float class it replaced (`QuantLinear` is a
    `Linear`, `QuantConvBN` a `ConvBN`)."""
    classes = list(type(module).__mro__)
    classes += [c for original, twin in _REGISTRY.items() if isinstance(module, twin)
                for c in original.__mro__]
    return frozenset(c.__name__ for c in classes if c is not object)


def _device_of(module: nn.Module, default: torch.device | None) -> torch.device | None:
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return default if tensor is None else tensor.device


def install_quant_modules(model: nn.Module, device: torch.device | None = None) -> int:
    """Replace registered modules in place (outermost first); returns how many were replaced.
    The new quantizers live on the device of the module they quantize (for a module without
    parameters, such as a matmul, that of its nearest ancestor with some, else `device`)."""
    device = _device_of(model, device)
    count = 0
    for name, child in list(model.named_children()):
        twin = twin_for(child)
        if twin is not None:
            new = twin.convert(child)
            setattr(model, name, new)
            place = _device_of(child, device)
            if place is not None:
                for quantizer in new.modules():
                    if isinstance(quantizer, TensorQuantizer):
                        quantizer.to(place)
            count += 1
        else:
            count += install_quant_modules(child, device)
    return count


def quantizers(model: nn.Module) -> Iterator[tuple[str, TensorQuantizer]]:
    for name, module in model.named_modules():
        if isinstance(module, TensorQuantizer):
            yield name, module


def logquant_params(model: nn.Module) -> dict[str, dict]:
    """{quantizer name: bits, tau, scale} of every calibrated log2 quantizer that is on."""
    return {name: {"bits": q.spec.bits, "tau": int(q.tau), "scale": float(q.scale)}
            for name, q in quantizers(model) if q.enabled and q.is_log2}


def weight_owners(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Modules with a `weight_quantizer` and a `quant_weight()` (the tensor it quantizes), and
    the views a module lists in `weight_views()` (weights it keeps packed, e.g. the q/k/v
    projections of `nn.MultiheadAttention`)."""
    for name, module in model.named_modules():
        if hasattr(module, "weight_quantizer") and hasattr(module, "quant_weight"):
            yield name, module
        for sub, view in getattr(module, "weight_views", list)():
            yield f"{name}.{sub}" if name else sub, view
