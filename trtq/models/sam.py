"""A SAM-family model split at its two export boundaries.

* encoder: image (1, 3, S, S) → image_embeddings (1, 256, S/16·…, …)
* decoder: image_embeddings + prompts → low-resolution mask logits + IoU predictions

This is the split SAM's own ONNX export and NanoSAM use: the encoder runs once per image, the
decoder once per set of prompts.
"""

from __future__ import annotations

import torch
from torch import nn

from trtq.models.mask_decoder import MaskDecoder
from trtq.models.preprocess import Preprocess
from trtq.models.prompt_encoder import PromptEncoder


class SamModel(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with the model's preprocessing."""

    def __init__(
        self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
        preprocess: Preprocess,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.preprocess = preprocess

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    def box_decoder(self) -> SamBoxDecoder:
        return SamBoxDecoder(self.prompt_encoder, self.mask_decoder)

    def point_decoder(self) -> SamPointDecoder:
        return SamPointDecoder(self.prompt_encoder, self.mask_decoder)

    def forward(
        self, image: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One image (1, 3, S, S) and boxes (N, 4) in input pixels → (masks, iou)."""
        return self.box_decoder()(self.image_encoder(image), boxes)

    def predict_boxes(self, rgb, boxes=None):
        """An RGB image (H, W, 3 uint8) through the model's preprocessing and encoder, then
        its box prompts (N, 4, original pixels) through the box decoder: (low-res masks, iou),
        or None without boxes (only the encoder runs)."""
        import numpy as np

        emb = self.image_encoder(torch.from_numpy(self.preprocess.image(rgb)))
        if boxes is None or not len(boxes):
            return None
        frame = self.preprocess.boxes(np.asarray(boxes, dtype=np.float32), rgb.shape[:2])
        return self.box_decoder()(emb, torch.from_numpy(frame))


class SamBoxDecoder(nn.Module):
    """Export boundary for boxes: (image_embeddings (1, C, h, w), boxes (N, 4)) →
    masks (N, 1, 4h, 4w), iou (N, 1)."""

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(self, image_embeddings: torch.Tensor, boxes: torch.Tensor):
        sparse, dense = self.prompt_encoder(boxes=boxes)
        pe = self.prompt_encoder.dense_pe()
        return self.mask_decoder(image_embeddings, pe, sparse, dense, multimask_output=False)


class SamPointDecoder(nn.Module):
    """Export boundary for point prompts: (image_embeddings, point_coords (N, P, 2),
    point_labels (N, P)) → masks (N, 1, 4h, 4w), iou (N, 1). Labels 2/3 encode box corners."""

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(self, image_embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor):
        sparse, dense = self.prompt_encoder(points=(coords, labels))
        pe = self.prompt_encoder.dense_pe()
        return self.mask_decoder(image_embeddings, pe, sparse, dense, multimask_output=False)
