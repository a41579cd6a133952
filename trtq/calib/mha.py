"""`nn.MultiheadAttention`, quantized.

PyTorch's module computes attention inside `F.multi_head_attention_forward` from its packed
`in_proj_weight` (or separate q/k/v weights) and reads `out_proj.weight` directly, so no
Linear or matmul inside it is a module call that a quantizer could wrap. Its twin computes the
same attention explicitly (inference only): the three input projections with quantizers named
like a Linear's (`<mha>.q_proj.input_quantizer`, `.q_proj.weight_quantizer`, and `k_proj`,
`v_proj`), the two attention products as `qk_matmul`/`av_matmul` (the query pre-scaled by
1/√d, the form TensorRT fuses), and `out_proj` as a quantized Linear. Parameters and
state-dict keys are the original module's (plus the quantizers' calibrated buffers). Masks
(`attn_mask`, `key_padding_mask`, boolean or additive, `is_causal`), `batch_first`, unbatched
inputs and both kinds of returned weights are supported; `add_bias_kv`, `add_zero_attn` and
training-mode dropout are not (such a module stays float, logged, or runs PyTorch's own code
while training).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from trtq.calib.modules import QuantLinear, QuantMatMul, register_quant_module
from trtq.calib.quantizer import TensorQuantizer

log = logging.getLogger("trtq.calib")


class _Projection(nn.Module):
    """The quantizers of one input projection (its weight stays in the attention module)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_quantizer, self.weight_quantizer = TensorQuantizer(), TensorQuantizer()

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        # a module call, so the exported nodes carry this projection's scope (`mha/q_proj/...`)
        return F.linear(self.input_quantizer(x), self.weight_quantizer(weight), bias)


class _WeightView:
    """A projection's quantizer and weight, as `trtq.calib.modules.weight_owners` yields them."""

    def __init__(self, quantizer: TensorQuantizer, weight: torch.Tensor) -> None:
        self.weight_quantizer, self._weight = quantizer, weight

    def quant_weight(self) -> torch.Tensor:
        return self._weight


class QuantMultiheadAttention(nn.MultiheadAttention):
    @classmethod
    def convert(cls, module: nn.MultiheadAttention) -> nn.Module:
        if module.bias_k is not None or module.add_zero_attn:
            log.warning("nn.MultiheadAttention with add_bias_kv/add_zero_attn stays float")
            return module
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)
        new._parameters = dict(module._parameters)
        new._buffers = dict(module._buffers)
        new._modules = dict(module._modules)
        new.q_proj, new.k_proj, new.v_proj = _Projection(), _Projection(), _Projection()
        new.out_proj = QuantLinear.convert(module.out_proj)
        new.qk_matmul, new.av_matmul = QuantMatMul.convert(None), QuantMatMul.convert(None)
        return new

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._qkv_same_embed_dim:
            return tuple(self.in_proj_weight.chunk(3, dim=0))
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def _biases(self) -> tuple:
        if self.in_proj_bias is None:
            return None, None, None
        return tuple(self.in_proj_bias.chunk(3, dim=0))

    def weight_views(self) -> list[tuple[str, _WeightView]]:
        projections = (self.q_proj, self.k_proj, self.v_proj)
        return [(name, _WeightView(p.weight_quantizer, w)) for name, p, w in
                zip(("q_proj", "k_proj", "v_proj"), projections, self._weights(), strict=True)]

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        if self.training and self.dropout > 0:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        unbatched = query.dim() == 2
        if unbatched:  # (L, E) → (1, L, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) → (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        (wq, wk, wv), (bq, bk, bv) = self._weights(), self._biases()
        q, k, v = self.q_proj(query, wq, bq), self.k_proj(key, wk, bk), self.v_proj(value, wv, bv)
        n, length, _ = q.shape
        source = k.shape[1]
        heads, head_dim = self.num_heads, self.head_dim

        def split(t, tokens):
            return t.reshape(n, tokens, heads, head_dim).transpose(1, 2)

        q, k, v = split(q, length), split(k, source), split(v, source)
        scores = self.qk_matmul(q * (1.0 / math.sqrt(head_dim)), k.transpose(-2, -1))
        scores = scores + _additive_mask(attn_mask, key_padding_mask, is_causal, n, heads,
                                         length, source, scores.dtype, scores.device)
        attn = torch.softmax(scores, dim=-1)
        out = self.av_matmul(attn, v).transpose(1, 2).reshape(n, length, heads * head_dim)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = attn.mean(dim=1) if average_attn_weights else attn
        return out, (weights.squeeze(0) if unbatched else weights)


def _additive_mask(attn_mask, key_padding_mask, is_causal: bool, n: int, heads: int,
                   length: int, source: int, dtype, device) -> torch.Tensor | float:
    """attn_mask / key_padding_mask / is_causal as one additive mask (0 or −inf), broadcastable
    to the scores (N, heads, L, S)."""
    mask: torch.Tensor | float = 0.0
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=device).triu(1)
    for m, shape in ((attn_mask, None), (key_padding_mask, (n, 1, 1, source))):
        if m is None:
            continue
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(m, float("-inf"))
        else:
            m = m.to(dtype)
        if shape is not None:
            m = m.reshape(shape)
        elif m.dim() == 3:  # (N·heads, L, S)
            m = m.reshape(n, heads, length, source)
        mask = mask + m
    return mask


register_quant_module(nn.MultiheadAttention, QuantMultiheadAttention)
