"""SAM's prompt encoder: boxes and points to sparse tokens, masks to a dense embedding.

Written without in-place indexed assignment so that it traces into a clean ONNX graph; the
arithmetic (and so the numbers) is the same as Segment Anything's reference implementation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trtq.models.layers import LayerNorm2d

# Point labels as SAM defines them: -1 padding, 0 negative, 1 positive, 2/3 box corners.
PAD_LABEL = -1


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of (x, y) with a fixed random Gaussian projection."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        matrix = self.positional_encoding_gaussian_matrix
        coords = (2 * coords - 1).to(matrix.dtype) @ matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense(self, h: int, w: int) -> torch.Tensor:
        """Encoding of every cell centre of an h×w grid: (C, h, w)."""
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Encoding of pixel coordinates (B, N, 2) given as (x, y) in an image of size image_hw."""
        size = torch.tensor([image_hw[1], image_hw[0]], dtype=coords.dtype, device=coords.device)
        return self._encode((coords / size).to(torch.float))


class PromptEncoder(nn.Module):
    def __init__(
        self, embed_dim: int, embedding_hw: tuple[int, int], image_hw: tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_hw = embedding_hw
        self.image_hw = image_hw
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: (1, C, h, w)."""
        return self.pe_layer.dense(*self.embedding_hw).unsqueeze(0)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (B, 4) as x0, y0, x1, y1 in input-image pixels → tokens (B, 2, C)."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        pe = self.pe_layer.points(corners, self.image_hw)
        corner_embed = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return pe + corner_embed.unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Points (B, N, 2) with labels (B, N) → tokens (B, N[+1], C).

        `pad` appends one padding point, as SAM does when no box accompanies the points.
        """
        coords = coords + 0.5
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), PAD_LABEL)], dim=1)
        pe = self.pe_layer.points(coords, self.image_hw)
        lab = labels.unsqueeze(-1)
        pe = torch.where(lab == PAD_LABEL, self.not_a_point_embed.weight, pe)
        for value, table in enumerate(self.point_embeddings):
            pe = pe + (lab == value).to(pe.dtype) * table.weight
        return pe

    def embed_dense(self, batch: int, masks: torch.Tensor | None) -> torch.Tensor:
        if masks is not None:
            return self.mask_downscaling(masks)
        h, w = self.embedding_hw
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)

    def forward(
        self,
        boxes: torch.Tensor | None = None,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (sparse tokens (B, N, C), dense embedding (B, C, h, w))."""
        parts = []
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        if not parts and masks is None:
            raise ValueError("give at least one prompt: boxes, points or masks")
        if parts:
            sparse = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        else:
            sparse = masks.new_zeros(masks.shape[0], 0, self.embed_dim)
        return sparse, self.embed_dense(sparse.shape[0], masks)
