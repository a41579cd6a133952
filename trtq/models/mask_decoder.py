"""SAM's mask decoder: two-way transformer plus upscaling and hypernetwork mask heads."""

from __future__ import annotations

import torch
from torch import nn

from trtq.models.layers import MLP, LayerNorm2d
from trtq.models.two_way_transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self, transformer: TwoWayTransformer, dim: int = 256, num_multimask_outputs: int = 3,
        iou_head_depth: int = 3, iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor, multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks (B, M, 4h, 4w) and IoU predictions (B, M); M = 3 if multimask else 1.

        image_embeddings and image_pe have batch 1 (one image, shared by every prompt) or B.
        """
        masks, iou = self.predict(image_embeddings, image_pe, sparse, dense)
        picked = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, picked], iou[:, picked]

    def predict(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((out_tokens.unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
        src = image_embeddings
        if src.shape[0] == 1:
            src = src.expand(n, -1, -1, -1)
        src = src + dense
        pos = image_pe.expand(n, -1, -1, -1) if image_pe.shape[0] == 1 else image_pe
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack(
            [mlp(mask_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_out)
