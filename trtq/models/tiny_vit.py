"""TinyViT image encoder as used by MobileSAM and LiteMedSAM.

State-dict keys match the official MobileSAM / LiteMedSAM checkpoints (`image_encoder.*`).
Stage 0 is convolutional (MBConv blocks); stages 1-3 are windowed attention blocks with a
learned relative attention bias, a depthwise "local" convolution and an MLP.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from trtq.models.layers import ConvBN, LayerNorm2d, MatMul, PrescaledQueryExport


@dataclass(frozen=True)
class TinyViTConfig:
    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    merge_strides: tuple[int, ...] = (2, 2, 1)  # PatchMerging stride after stages 0..n-2
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    stem: str = "conv3x3s2"  # MobileSAM: two 3x3 stride-2 convs; LiteMedSAM: "conv1x1"
    num_classes: int = 1000  # MobileSAM keeps an unused classifier head in its checkpoint
    out_chans: int = 256

    def __post_init__(self) -> None:
        n = len(self.depths)
        if not (len(self.embed_dims) == len(self.num_heads) == len(self.window_sizes) == n):
            raise ValueError("embed_dims, depths, num_heads, window_sizes: one entry a stage")
        if len(self.merge_strides) != n - 1:
            raise ValueError("merge_strides needs one entry per stage boundary (stages - 1)")
        if self.stem not in ("conv3x3s2", "conv1x1"):
            raise ValueError(f"stem must be 'conv3x3s2' or 'conv1x1', got {self.stem!r}")

    def stage_resolutions(self) -> list[int]:
        res = self.img_size // 4 if self.stem == "conv3x3s2" else self.img_size
        out = [res]
        for stride in self.merge_strides:
            res = (res + stride - 1) // stride
            out.append(res)
        return out


class PatchEmbed(nn.Module):
    def __init__(self, cin: int, dim: int, stem: str) -> None:
        super().__init__()
        k, s, p = (3, 2, 1) if stem == "conv3x3s2" else (1, 1, 0)
        self.seq = nn.Sequential(
            ConvBN(cin, dim // 2, k, s, p), nn.GELU(), ConvBN(dim // 2, dim, k, s, p)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


class PatchMerging(nn.Module):
    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # tokens (B, L, C) -> (B, C, H, W)
            x = x.view(x.shape[0], self.resolution, self.resolution, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


def _bias_index(window: int) -> tuple[torch.Tensor, int]:
    """Index of the learned bias for each (query, key) pair: one entry per |Δrow|, |Δcol|."""
    points = list(itertools.product(range(window), range(window)))
    offsets: dict[tuple[int, int], int] = {}
    index = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            index.append(offsets.setdefault(offset, len(offsets)))
    return torch.tensor(index, dtype=torch.long).view(len(points), len(points)), len(offsets)


class TinyViTAttention(PrescaledQueryExport, nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        index, n_offsets = _bias_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        self.register_buffer("attention_bias_idxs", index, persistent=False)
        self.qk_matmul = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.av_matmul = MatMul()

    @property
    def query_factor(self) -> float:
        return self.scale

    def scale_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        qkv = self.qkv(x).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = self.attention_scores(q, k.transpose(-2, -1)) + bias
        attn = self.softmax(attn)
        x = self.av_matmul(attn, v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x)


class TinyViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, cfg: TinyViTConfig):
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = TinyViTAttention(dim, heads, window)
        self.mlp = TinyViTMlp(dim, int(dim * cfg.mlp_ratio))
        k = cfg.local_conv_size
        self.local_conv = ConvBN(dim, dim, k, 1, k // 2, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        r, w = self.resolution, self.window
        if r == w:
            return self.attn(x)
        pad = (w - r % w) % w
        x = x.view(b, r, r, c)
        if pad:
            x = nn.functional.pad(x, (0, 0, 0, pad, 0, pad))
        rp = r + pad
        nw = rp // w
        x = x.view(b, nw, w, nw, w, c).transpose(2, 3).reshape(b * nw * nw, w * w, c)
        x = self.attn(x)
        x = x.view(b, nw, nw, w, w, c).transpose(2, 3).reshape(b, rp, rp, c)
        if pad:
            x = x[:, :r, :r].contiguous()
        return x.view(b, length, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        x = x + self._windowed_attention(x)
        x = x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)
        x = self.local_conv(x)
        x = x.view(b, c, length).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """One resolution stage: blocks, then an optional PatchMerging downsample."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT image encoder: image (B, 3, S, S) → embeddings (B, out_chans, R, R)."""

    def __init__(self, cfg: TinyViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = cfg.embed_dims
        res = cfg.stage_resolutions()
        self.patch_embed = PatchEmbed(3, dims[0], cfg.stem)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(cfg.depths):
            if i == 0:
                blocks = [MBConv(dims[0], cfg.mbconv_expand_ratio) for _ in range(depth)]
            else:
                blocks = [
                    TinyViTBlock(dims[i], res[i], cfg.num_heads[i], cfg.window_sizes[i], cfg)
                    for _ in range(depth)
                ]
            last = i == len(cfg.depths) - 1
            down = None
            if not last:
                down = PatchMerging(res[i], dims[i], dims[i + 1], cfg.merge_strides[i])
            self.layers.append(Stage(blocks, down))
        if cfg.num_classes > 0:
            self.norm_head = nn.LayerNorm(dims[-1])
            self.head = nn.Linear(dims[-1], cfg.num_classes)
        self.out_resolution = res[-1]
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        r = self.out_resolution
        x = x.view(x.shape[0], r, r, -1).permute(0, 3, 1, 2)
        return self.neck(x)
