"""Attention written with functions, quantized: `torch.matmul`, `@`, `torch.bmm` and
`F.scaled_dot_product_attention` called inside a user's `forward`.

Only module calls can carry quantizers, so `FunctionalQuantizer.install(model, recipe)` routes
such calls to quantized modules it attaches to the module whose `forward` made them: the i-th
product of two activations (no parameter operand; a product with a weight is a layer, written
as `nn.Linear`) becomes the child `func_matmul_<i>` (a quantized `MatMul`: quantizers
`<module>.func_matmul_<i>.input_quantizer` / `.other_quantizer`), the i-th SDPA call the child
`func_sdpa_<i>`, which computes softmax((q·s)·Kᵀ + mask)·V with its products as
`qk_matmul` / `av_matmul` (the query pre-scaled, the form TensorRT fuses). Children appear on
the first forward pass (the first calibration batch), configured from the recipe. The router
is a `TorchFunctionMode` active while the model's forward runs (forward hooks on the root) and
a stack of the running modules (forward hooks on every module); a product made outside any
module's forward is left alone. Dropout in SDPA and `enable_gqa` are not supported (such a call
runs unquantized, logged once).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

log = logging.getLogger("trtq.calib")

MATMULS = frozenset({torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm,
                     torch.Tensor.bmm})
SDPA = F.scaled_dot_product_attention


class FunctionalSDPA(nn.Module):
    """`F.scaled_dot_product_attention` as modules: two quantizable products."""

    def __init__(self) -> None:
        super().__init__()
        from trtq.models.layers import MatMul

        self.qk_matmul, self.av_matmul = MatMul(), MatMul()

    def forward(self, q, k, v, attn_mask=None, is_causal: bool = False, scale=None):
        factor = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        scores = self.qk_matmul(q * factor, k.transpose(-2, -1))
        length, source = scores.shape[-2], scores.shape[-1]
        if is_causal:
            causal = torch.ones(length, source, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask
        return self.av_matmul(torch.softmax(scores, dim=-1), v)


def _activation(x) -> bool:
    return isinstance(x, torch.Tensor) and not isinstance(x, nn.Parameter)


class _Router(TorchFunctionMode):
    def __init__(self, owner: FunctionalQuantizer) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        child = self.owner.route(func, args, kwargs)
        if child is None:
            return func(*args, **kwargs)
        if func is SDPA:
            return child(*_sdpa_args(args, kwargs))
        return child(args[0], args[1])


def _sdpa_args(args, kwargs) -> tuple:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    values = dict(zip(names, args, strict=False)) | kwargs
    return (values["query"], values["key"], values["value"], values.get("attn_mask"),
            bool(values.get("is_causal", False)), values.get("scale"))


class FunctionalQuantizer:
    """Routes function-call attention products of `model` to quantized child modules."""

    def __init__(self, model: nn.Module, configure) -> None:
        self.model, self.configure = model, configure
        self.stack: list[nn.Module] = []
        self.counts: dict[int, dict[str, int]] = {}
        self.mode: _Router | None = None
        self.warned = False
        self.not_owners = _not_owners()
        self.handles = []
        for module in model.modules():
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave, always_call=True))

    @classmethod
    def install(cls, model: nn.Module, configure) -> FunctionalQuantizer:
        """`configure(name, quantizer)` sets up each new child's quantizers (recipe, state)."""
        existing = getattr(model, "trtq_functional", None)
        if existing is not None:
            existing.configure = configure
            return existing
        router = cls(model, configure)
        object.__setattr__(model, "trtq_functional", router)
        return router

    def _enter(self, module, _args) -> None:
        if not self.stack:
            self.mode = _Router(self)
            self.mode.__enter__()
        self.stack.append(module)
        self.counts[id(module)] = {"matmul": 0, "sdpa": 0}

    def _leave(self, module, _args, _output) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        if not self.stack and self.mode is not None:
            mode, self.mode = self.mode, None
            mode.__exit__(None, None, None)

    def route(self, func, args, kwargs) -> nn.Module | None:
        if not self.stack:
            return None
        if func in MATMULS:
            kind = "matmul"
            if len(args) < 2 or not (_activation(args[0]) and _activation(args[1])):
                return None
        elif func is SDPA:
            kind = "sdpa"
            dropout = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if dropout or kwargs.get("enable_gqa"):
                if not self.warned:
                    log.warning("scaled_dot_product_attention with dropout or enable_gqa "
                                "runs unquantized")
                    self.warned = True
                return None
        else:
            return None
        owner = self.stack[-1]
        if isinstance(owner, self.not_owners):  # trtq's own quantized modules
            return None
        index = self.counts[id(owner)][kind]
        self.counts[id(owner)][kind] = index + 1
        name = f"func_{kind}_{index}"
        child = owner._modules.get(name)
        if child is None:
            child = self._create(owner, name, kind)
        return child

    def _create(self, owner: nn.Module, name: str, kind: str) -> nn.Module:
        from trtq.calib.modules import install_quant_modules
        from trtq.calib.modules import quantizers as quantizers_of

        holder = nn.Module()
        holder.add_module(name, FunctionalSDPA() if kind == "sdpa" else _matmul())
        install_quant_modules(holder)
        child = holder._modules[name]
        device = next((t.device for t in owner.parameters()), None)
        if device is not None:
            child.to(device)
        owner.add_module(name, child)
        prefix = next(n for n, m in self.model.named_modules() if m is child)
        for sub, quantizer in quantizers_of(child):
            self.configure(f"{prefix}.{sub}", quantizer)
        return child

    def create_for(self, names) -> None:
        """Create the children that saved quantizer names mention (`trtq.load`)."""
        modules = dict(self.model.named_modules())
        for name in names:
            parts = name.split(".")
            for i, part in enumerate(parts):
                kind = part.split("_")[1] if part.startswith(("func_matmul_", "func_sdpa_")) \
                    else None
                if kind is None:
                    continue
                owner = modules.get(".".join(parts[:i]))
                if owner is not None and part not in owner._modules:
                    self._create(owner, part, kind)
                    modules = dict(self.model.named_modules())
                break

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _matmul() -> nn.Module:
    from trtq.models.layers import MatMul

    return MatMul()


def _not_owners() -> tuple[type, ...]:
    from trtq.calib.modules import registered
    from trtq.calib.quantizer import TensorQuantizer

    return (*registered().values(), TensorQuantizer, FunctionalSDPA)
