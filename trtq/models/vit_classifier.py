"""ViT and DeiT image classifiers in trtq's own code, with timm's state-dict keys.

Checkpoints saved by timm for `vit_*_patch16_224` and `deit_*_patch16_224` (and the distilled
DeiTs) load strictly from a user path: `cls_token`, `dist_token`, `pos_embed`,
`patch_embed.proj.*`, `blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
`norm.*`, `head.*`, `head_dist.*`. The two attention products are `MatMul` modules
(`attn.qk_matmul`, `attn.av_matmul`) so calibration can quantize their operands. The model's
input pipeline is `model.preprocess` (a `ClassifierPreprocess` built from the config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trtq.models.classifier_preprocess import ClassifierPreprocess
from trtq.models.layers import MatMul, PrescaledQueryExport


@dataclass(frozen=True)
class ViTConfig:
    """Architecture and preprocessing of one ViT/DeiT (defaults: ViT-B/16 augreg at 224)."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    qkv_bias: bool = True
    distilled: bool = False
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.9
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if min(self.patch_size, self.depth, self.num_heads, self.num_classes) < 1:
            raise ValueError("patch_size, depth, num_heads and num_classes must be >= 1")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads "
                             f"{self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        self.preprocess()  # validates the preprocessing fields

    def preprocess(self) -> ClassifierPreprocess:
        return ClassifierPreprocess(self.img_size, self.mean, self.std, self.crop_pct,
                                    self.interpolation)


class Attention(PrescaledQueryExport, nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.qk_matmul = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.av_matmul = MatMul()
        self.proj = nn.Linear(dim, dim)

    @property
    def query_factor(self) -> float:
        return self.scale

    def scale_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.softmax(self.attention_scores(q, k.transpose(-2, -1)))
        return self.proj(self.av_matmul(attn, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT (class token) or distilled DeiT (class + distillation tokens, heads averaged)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        tokens = 2 if cfg.distilled else 1
        patches = (cfg.img_size // cfg.patch_size) ** 2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, patches + tokens, d) * 0.02)
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.depth)))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, cfg.num_classes)
        if cfg.distilled:
            self.head_dist = nn.Linear(d, cfg.num_classes)
        self.preprocess = cfg.preprocess()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        first = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.cfg.distilled:
            first.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = self.norm(self.blocks(torch.cat([*first, x], dim=1) + self.pos_embed))
        if self.cfg.distilled:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0])
