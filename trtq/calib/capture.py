"""Record what PTQ4ViT's search needs of a layer: its inputs and the task loss's gradient at its
output, on a fixed subsample of output rows, with the whole model in full precision.

A Linear or Conv is recorded as a grouped GEMM: each sampled output position keeps the input
patch it reads (`x`: rows × groups × inputs per group; a Linear has one group and its patch is
the token, a Conv's comes from `unfold`) and the gradient over all output channels (`grad`:
rows × output channels). Quantization is elementwise, so quantizing the patches equals
quantizing the tensor, and O = patches·Wᵀ recomputes the layer's output exactly (less bias).
An attention matmul A·B keeps some (batch·head) slices: rows of A, the whole B and the
gradient at those rows.

The gradient comes from `task.losses(model)` (one scalar loss per calibration sample, with a
real gradient: see `trtq.calib.tasks`), back-propagated sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trtq.calib.modules import QuantConv2d, QuantConvBN, QuantLinear, QuantMatMul


@dataclass
class LayerRecord:
    kind: str  # "gemm" (Linear / Conv) or "matmul"
    groups: int = 1
    x: list[torch.Tensor] = field(default_factory=list)
    other: list[torch.Tensor] = field(default_factory=list)  # matmul: B slices
    grad: dict[int, torch.Tensor] = field(default_factory=dict)  # by call index

    out_features: int = 0

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(inputs, B or None, gradient), the calls concatenated. A call whose output did not
        reach the loss (constant inputs, unused heads) has a zero gradient."""
        if not self.x:
            raise ValueError("the layer never ran on the calibration data")
        x = torch.cat(self.x)
        other = torch.cat(self.other) if self.kind == "matmul" else None
        grads = []
        for i, xi in enumerate(self.x):
            shape = (*xi.shape[:-1], self.out_features) if self.kind == "matmul" else \
                (xi.shape[0], self.out_features)
            grads.append(self.grad.get(i, torch.zeros(shape, dtype=xi.dtype,
                                                       device=xi.device)))
        return x, other, torch.cat(grads)


def rows_index(total: int, rows: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`rows` evenly spaced indices of `total` (all when there are fewer), on `device`;
    computed on the host, so every device samples the same rows."""
    if total <= rows:
        return torch.arange(total, device=device)
    return torch.linspace(0, total - 1, rows).round().long().to(device)


def _conv(module: nn.Module) -> nn.Conv2d:
    return module.c if isinstance(module, QuantConvBN) else module


def _gemm_rows(module: nn.Module, x: torch.Tensor, rows: int):
    if isinstance(module, QuantLinear):
        flat = x.detach().reshape(-1, x.shape[-1])
        index = rows_index(flat.shape[0], rows, x.device)
        return flat[index].unsqueeze(1), index, 1
    conv = _conv(module)
    patches = F.unfold(x.detach(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (B·L, C·kh·kw)
    index = rows_index(patches.shape[0], rows, x.device)
    g = conv.groups
    return patches[index].reshape(len(index), g, -1), index, g


def _gemm_grad(module: nn.Module, grad: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    if isinstance(module, QuantLinear):
        return grad.reshape(-1, grad.shape[-1])[index]
    return grad.flatten(2).transpose(1, 2).reshape(-1, grad.shape[1])[index]


def _matmul_slices(a: torch.Tensor, b: torch.Tensor, rows: int):
    a = a.detach().reshape(-1, *a.shape[-2:])
    b = b.detach().expand(*a.shape[:-2], *b.shape[-2:]) if b.dim() < 3 else b.detach()
    b = b.reshape(-1, *b.shape[-2:])
    m = a.shape[1]
    slices = rows_index(a.shape[0], max(1, rows // m), a.device)
    row_index = rows_index(m, rows, a.device)
    return a[slices][:, row_index], b[slices], (slices, row_index)


class Recorder:
    """Forward hooks on the named layers; use as a context manager around the loss loop."""

    def __init__(self, model: nn.Module, names: list[str], rows: int) -> None:
        modules = dict(model.named_modules())
        self.records: dict[str, LayerRecord] = {}
        self.model, self.rows, self._hooks = model, rows, []
        for name in names:
            module = modules[name]
            if isinstance(module, QuantMatMul):
                self.records[name] = LayerRecord("matmul")
            elif isinstance(module, QuantLinear | QuantConv2d | QuantConvBN):
                self.records[name] = LayerRecord("gemm")
            else:
                raise TypeError(f"{name}: the search handles Linear, Conv and MatMul layers, "
                                f"not {type(module).__name__}")
            self._hooks.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        record = self.records[name]

        def hook(module, args, out):
            record.out_features = out.shape[-1] if record.kind == "matmul" or isinstance(
                module, QuantLinear) else out.shape[1]
            if record.kind == "matmul":
                a, b, (slices, row_index) = _matmul_slices(args[0], args[1], self.rows)
                call = len(record.x)
                record.x.append(a)
                record.other.append(b)

                def grad_hook(g):
                    g = g.reshape(-1, *g.shape[-2:])
                    record.grad[call] = g[slices][:, row_index].detach().clone()
            else:
                x, index, record.groups = _gemm_rows(module, args[0], self.rows)
                call = len(record.x)
                record.x.append(x)

                def grad_hook(g):
                    record.grad[call] = _gemm_grad(module, g, index).detach().clone()
            if out.requires_grad:  # constant inputs (SAM's dense positional encoding): none
                out.register_hook(grad_hook)

        return hook

    def run(self, task, progress=None) -> int:
        """Back-propagate every sample's loss; returns how many samples gave a loss."""
        params = list(self.model.parameters())
        saved = [p.requires_grad for p in params]
        count = 0
        try:
            for p in params:
                p.requires_grad_(True)
            with torch.enable_grad():
                for loss in task.losses(self.model, progress):
                    loss.backward()
                    count += 1
                    self.model.zero_grad(set_to_none=True)
        finally:
            for p, flag in zip(params, saved, strict=True):
                p.requires_grad_(flag)
            for handle in self._hooks:
                handle.remove()
        return count
