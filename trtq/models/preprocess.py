"""Per-model image preprocessing, box transforms and mask post-processing.

Two pipelines are used by the SAM family:

* LiteMedSAM (MedSAM's 256×256 pipeline): longest side resized to 256 with area interpolation
  (OpenCV's INTER_AREA, rounded back to 8 bits), min–max normalised to [0, 1] over the resized
  image, zero-padded bottom-right; box coordinates scaled by 256 / max(H, W) and truncated to
  integers.
* SAM / MobileSAM: longest side resized to 1024 with PIL bilinear, normalised with the ImageNet
  pixel mean/std (0–255 scale), zero-padded bottom-right; boxes scaled per axis without rounding.

Low-resolution mask logits go back to the original size the same way for both: upsample to the
padded input size, crop the unpadded region, upsample bilinearly to the original size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

_RESIZES = ("area", "bilinear")
_NORMALIZATIONS = ("minmax", "meanstd")
_BOX_ROUNDING = ("floor", "none")


@dataclass(frozen=True)
class Preprocess:
    input_size: int
    resize: str = "bilinear"
    normalize: str = "meanstd"
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    box_rounding: str = "none"

    def __post_init__(self) -> None:
        if self.resize not in _RESIZES:
            raise ValueError(f"resize must be one of {_RESIZES}, got {self.resize!r}")
        if self.normalize not in _NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {_NORMALIZATIONS}, got {self.normalize!r}")
        if self.box_rounding not in _BOX_ROUNDING:
            raise ValueError(f"box_rounding must be one of {_BOX_ROUNDING}")
        if self.input_size <= 0:
            raise ValueError("input_size must be positive")

    def resized_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Size after resizing the longest side to input_size (rounded half up, like SAM)."""
        h, w = hw
        scale = self.input_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB image (H, W, 3) → float32 network input (1, 3, S, S)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("expected a uint8 RGB image of shape (H, W, 3)")
        nh, nw = self.resized_hw(rgb.shape[:2])
        if self.resize == "area" and nh <= rgb.shape[0] and nw <= rgb.shape[1]:
            resized = area_resize_uint8(rgb, nh, nw).astype(np.float32)
        else:
            resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR), np.float32)
        if self.normalize == "minmax":
            lo, hi = resized.min(), resized.max()
            resized = (resized - lo) / max(hi - lo, 1e-8)
        else:
            resized = (resized - np.float32(self.pixel_mean)) / np.float32(self.pixel_std)
        out = np.zeros((self.input_size, self.input_size, 3), np.float32)
        out[:nh, :nw] = resized
        return np.ascontiguousarray(out.transpose(2, 0, 1)[None])

    def boxes(self, boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Boxes (N, 4) x0, y0, x1, y1 in original pixels → input-frame coordinates (float32)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.box_rounding == "floor":
            out = np.floor(boxes * (self.input_size / max(hw)))
        else:
            nh, nw = self.resized_hw(hw)
            out = boxes * np.array([nw / hw[1], nh / hw[0], nw / hw[1], nh / hw[0]])
        return out.astype(np.float32)


@lru_cache(maxsize=64)
def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix: each output pixel is the area-weighted mean of the sources it covers."""
    scale = src / dst
    weights = np.zeros((dst, src), np.float64)
    for i in range(dst):
        lo, hi = i * scale, min((i + 1) * scale, src)
        first, last = int(np.floor(lo)), int(np.ceil(hi))
        for j in range(first, last):
            weights[i, j] = min(hi, j + 1) - max(lo, j)
    return weights / scale


def area_resize_uint8(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Downscale with exact pixel-area weights (OpenCV INTER_AREA), rounded to uint8."""
    wh = _area_weights(image.shape[0], h)
    ww = _area_weights(image.shape[1], w)
    out = np.einsum("ij,jkc,lk->ilc", wh, image.astype(np.float64), ww, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def upscale_logits(
    low_res, input_size: int, resized_hw: tuple[int, int], original_hw: tuple[int, int]
):
    """Low-resolution mask logits (N, M, h, w) torch tensor → logits at the original size."""
    import torch.nn.functional as F

    x = low_res
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, (input_size, input_size), mode="bilinear", align_corners=False)
    x = x[..., : resized_hw[0], : resized_hw[1]]
    return F.interpolate(x, original_hw, mode="bilinear", align_corners=False)
