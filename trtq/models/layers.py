"""Small building blocks shared by the SAM-family modules.

`MatMul` exists so that the two attention products (q·kᵀ and attn·v) are modules: calibration
finds them by name (`*.qk_matmul`, `*.av_matmul`) and attaches quantizers to both operands
without touching `forward` code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MatMul(nn.Module):
    """`a @ b` as a module (an attention matmul that calibration can quantize)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class PrescaledQueryExport:
    """For attentions that scale q·Kᵀ by a constant after the product (`scale_scores`): the
    Q/DQ export writes (q·f)·Kᵀ instead, f = `query_factor`, the query pre-scaled as TensorRT's
    fused attention wants it (TENSORRT.md §1.6), and one multiply over the query instead of one
    over the whole attention matrix. The query's quantizer (`qk_matmul.input_quantizer`, when
    calibration put one there) then sees q·f, so its scales are multiplied by f while exporting
    and restored afterwards: the same codes, up to float rounding. Log2 and twin query
    quantizers are not scale-linear and keep the plain form. `trtq.export.onnx_qdq.export_mode`
    calls `prepare_export` and `finish_export`."""

    prescale_query = False
    _saved_query_qparams = None

    @property
    def query_factor(self) -> float:
        raise NotImplementedError

    def scale_scores(self, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attention_scores(self, q: torch.Tensor, k_t: torch.Tensor) -> torch.Tensor:
        if self.prescale_query:
            return self.qk_matmul(q * self.query_factor, k_t)
        return self.scale_scores(self.qk_matmul(q, k_t))

    def prepare_export(self) -> None:
        quantizer = getattr(self.qk_matmul, "input_quantizer", None)
        if quantizer is not None and quantizer.spec is not None \
                and (quantizer.is_log2 or quantizer.is_twin):
            return
        if quantizer is not None and quantizer.scale is not None:
            f = self.query_factor
            self._saved_query_qparams = (quantizer.scale, quantizer.alt)
            quantizer.scale = quantizer.scale * f
            if quantizer.alt is not None:
                quantizer.alt = {**quantizer.alt, "scale": quantizer.alt["scale"] * f}
        self.prescale_query = True

    def finish_export(self) -> None:
        if self._saved_query_qparams is not None:
            quantizer = self.qk_matmul.input_quantizer
            quantizer.scale, quantizer.alt = self._saved_query_qparams
        self._saved_query_qparams, self.prescale_query = None, False


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor.

    Computed with `F.layer_norm` on the channels-last view so that ONNX export emits a single
    `LayerNormalization` op (TensorRT runs it as one normalization layer, FP16-safe), instead of
    the mean/pow/sqrt chain that overflows in FP16.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class MLPBlock(nn.Module):
    """Linear → activation → Linear (SAM's transformer MLP; `lin1`/`lin2` keys)."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """`num_layers` Linears with ReLU between them (SAM's hypernetwork and IoU heads)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1)
        outs = [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = F.relu(x)
        return x


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (TinyViT's `Conv2d_BN`; `c`/`bn` keys)."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))
