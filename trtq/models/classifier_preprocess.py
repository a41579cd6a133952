"""Image-classifier preprocessing, as timm evaluates ViT and DeiT.

The shorter side is resized to floor(img_size / crop_pct) with PIL (the longer side keeps the
aspect ratio, truncated), the centre img_size × img_size is cropped, pixels are scaled to
[0, 1] and normalized per channel. ViT (augreg) checkpoints use mean = std = 0.5 and
crop_pct 0.9; DeiT uses the ImageNet mean/std and crop_pct 0.875; both resize bicubic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


@dataclass(frozen=True)
class ClassifierPreprocess:
    img_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.img_size < 1:
            raise ValueError(f"img_size must be a positive number of pixels, got {self.img_size}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1] (0.875 for DeiT, 0.9 for ViT augreg), "
                             f"got {self.crop_pct}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need three values with std > 0 (RGB), got "
                             f"mean={self.mean}, std={self.std}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {tuple(_INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")

    @property
    def resize_size(self) -> int:
        """The shorter side after resizing (256 for 224 at crop_pct 0.875)."""
        return math.floor(self.img_size / self.crop_pct)

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        short = self.resize_size
        if height <= width:
            return short, max(short, int(short * width / height))
        return max(short, int(short * height / width)), short

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB → (1, 3, img_size, img_size) float32."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} "
                             f"{tuple(rgb.shape)}")
        nh, nw = self.resized_shape(*rgb.shape[:2])
        image = Image.fromarray(rgb).resize((nw, nh), _INTERPOLATIONS[self.interpolation])
        top = int(round((nh - self.img_size) / 2.0))
        left = int(round((nw - self.img_size) / 2.0))
        crop = np.asarray(image)[top:top + self.img_size, left:left + self.img_size]
        x = crop.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
        mean = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(3, 1, 1)
        return ((x - mean) / std)[None].astype(np.float32, copy=False)
