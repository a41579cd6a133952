"""Bundled sample images: the photographs that ship inside scikit-image's wheel.

They are trtq's embedded default images (PyTorch-vs-ONNX agreement and benchmarks in
`trtq run`; calibration images later). They are read as files; scikit-image is not imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from trtq.errors import DataError

SAMPLE_NAMES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                "motorcycle_left.png", "retina.jpg", "rocket.jpg")


def sample_image_paths() -> list[Path]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-image is not installed, so the bundled sample images are "
                        "missing; pip install scikit-image or pass your own images")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    paths = [root / name for name in SAMPLE_NAMES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"scikit-image's data folder {root} lacks {', '.join(missing)}; "
                        "reinstall scikit-image")
    return paths


def center_box(hw: tuple[int, int], fraction: float = 0.5):
    """A box covering the central `fraction` of each side (x0, y0, x1, y1)."""
    import numpy as np

    h, w = hw
    mx, my = w * (1 - fraction) / 2, h * (1 - fraction) / 2
    return np.array([[mx, my, w - 1 - mx, h - 1 - my]], dtype=np.float64)


def synthetic_rgb(height: int, width: int, rng):
    """A deterministic smooth picture with noise, (height, width, 3) uint8 RGB: an example input
    for tracing and parity checks. `rng` is a numpy Generator."""
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    base = (np.sin(xx / 9.0) + np.cos(yy / 13.0)) * 60 + 128
    return np.clip(base[..., None] + rng.normal(0, 20, (height, width, 3)), 0, 255) \
        .astype(np.uint8)
