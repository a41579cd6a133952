"""Reading images as validated 8-bit RGB arrays, and folders of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trtq.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _flatten(image: Image.Image) -> np.ndarray:
    """uint8 RGB of a decoded image; transparency composited onto black."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        return (rgba[..., :3] * (rgba[..., 3:] / 255.0)).round().astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to a uint8 (H, W, 3) RGB array.

    Grayscale and palette images are expanded to three channels, CMYK is converted; 16-bit and
    float images are min–max scaled to 8 bits first; images with transparency (RGBA, LA, a
    palette with a transparent colour) are composited onto black, so a hidden colour under a
    transparent pixel never reaches the model.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                data = np.asarray(image, dtype=np.float64)
                span = max(float(data.max() - data.min()), 1e-12)
                image = Image.fromarray(((data - data.min()) / span * 255).round().astype(np.uint8))
            rgb = _flatten(image)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable image ({exc.__class__.__name__}); "
                        "remove it or replace it with a valid image file") from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"{path} is an empty image")
    return rgb


def check_image(path: Path) -> None:
    """Cheap header check (no full decode) that `path` is an image file PIL understands."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} is not an image ({exc.__class__.__name__}); "
                        "an image folder must hold only image files") from None


class ImageFolder:
    """The image files of a folder (not recursive), sorted by name, validated up front.

    Hidden files are ignored; any other file that is not a readable image is an error, so a
    stray file never silently changes what a calibration or benchmark used.
    """

    def __init__(self, root: str | os.PathLike, limit: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder")
        files = sorted(p for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))
        for path in files:
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{path} is not an image file (suffix {path.suffix or 'none'!r}); "
                                "an image folder must hold only images")
            check_image(path)
        if not files:
            raise DataError(f"image folder {self.root} holds no images")
        self.paths = files[:limit] if limit else files

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self):
        for path in self.paths:
            yield path, load_rgb(path)
