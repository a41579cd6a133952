"""SAM's two-way transformer: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from trtq.models.layers import MatMul, MLPBlock, PrescaledQueryExport


class DecoderAttention(PrescaledQueryExport, nn.Module):
    """Multi-head attention with separate q/k/v projections and an optional inner downscale.

    In the token-to-image attentions, K has shape (prompts, image tokens, internal_dim): this is
    the tensor PTQ4SAM's bimodal integration looks at (`k_proj` output).
    """

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        internal = dim // downsample_rate
        if internal % num_heads:
            raise ValueError("num_heads must divide the attention's internal dimension")
        self.head_scale = math.sqrt(internal // num_heads)
        self.q_proj = nn.Linear(dim, internal)
        self.k_proj = nn.Linear(dim, internal)
        self.v_proj = nn.Linear(dim, internal)
        self.out_proj = nn.Linear(internal, dim)
        self.qk_matmul = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.av_matmul = MatMul()

    @property
    def query_factor(self) -> float:
        return 1.0 / self.head_scale

    def scale_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.head_scale

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        attn = self.attention_scores(q, k.permute(0, 1, 3, 2))
        attn = self.softmax(attn)
        out = self.av_matmul(attn, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayBlock(nn.Module):
    """Self-attention of tokens, token→image attention, MLP, image→token attention."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, heads, downsample_rate=2)
        self.skip_first_pe = skip_first_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = 256, heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, heads, mlp_dim, skip_first_pe=(i == 0)) for i in range(depth)
        )
        self.final_attn_token_to_image = DecoderAttention(dim, heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image, image_pe: (B, C, h, w); tokens: (B, N, C) → (tokens, image tokens)."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys


def decoder_attentions(model: nn.Module) -> dict[str, DecoderAttention]:
    """Every `DecoderAttention` of `model`, by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, DecoderAttention)}


@torch.no_grad()
def capture_keys(model: nn.Module, probe: Callable[[nn.Module], object]) -> tuple[dict, object]:
    """K (k_proj's first output) of every decoder attention while `probe(model)` runs, and the
    probe's return value."""
    keys: dict[str, torch.Tensor] = {}
    hooks = []
    for name, attn in decoder_attentions(model).items():
        def hook(_mod, _inp, out, name=name):
            keys.setdefault(name, out.detach().clone())
        hooks.append(attn.k_proj.register_forward_hook(hook))
    try:
        result = probe(model)
    finally:
        for h in hooks:
            h.remove()
    return keys, result
