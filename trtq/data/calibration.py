"""Calibration inputs for SAM-family models: images with box prompts.

From a COCO split the boxes are the annotations' (so the decoder is calibrated on real
prompts); from a plain image folder each image gets one centred box covering half of each side.
Evaluation splits are refused unless explicitly allowed: calibrating on the images a result is
measured on inflates that result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtq.data.coco import CocoBoxDataset
from trtq.data.images import ImageFolder
from trtq.data.samples import center_box
from trtq.errors import DataError

EVAL_SPLIT_PREFIXES = ("val", "test")


@dataclass(frozen=True)
class CalibSample:
    """One calibration image (RGB uint8, H×W×3) and its box prompts (N×4 in original pixels;
    None: run only the encoder on it); `name` says which image it is in messages."""

    rgb: np.ndarray
    boxes: np.ndarray | None = None
    name: str = ""


def is_eval_split(split: str) -> bool:
    return split.lower().startswith(EVAL_SPLIT_PREFIXES)


def calibration_samples(root: str | os.PathLike, split: str | None = None,
                        num_images: int | None = 32, allow_eval_split: bool = False,
                        box_source: str = "mask") -> list[CalibSample]:
    """Up to `num_images` samples from a COCO split (`split` given) or an image folder."""
    root = Path(root)
    if split is None:
        if (root / "annotations").is_dir():
            raise DataError(f"{root} is a COCO dataset; pass --split (e.g. calib or train2017)")
        return [CalibSample(rgb, center_box(rgb.shape[:2]), str(path))
                for path, rgb in ImageFolder(root, limit=num_images)]
    if is_eval_split(split) and not allow_eval_split:
        raise DataError(f"split {split!r} looks like an evaluation split; calibrate on a "
                        "disjoint split (busi: calib, tiny_coco: train2017) or pass "
                        "--allow-eval-split if you really mean it")
    dataset = CocoBoxDataset(root, split, box_source=box_source, limit=num_images)
    samples = [CalibSample(s.rgb, np.stack([i.box for i in s.instances]) if s.instances else None,
                           str(dataset.image_dir / s.file_name))
               for s in dataset]
    if not any(s.boxes is not None for s in samples):
        raise DataError(f"no usable box prompt in {root}/{split} (every annotation of the "
                        f"{len(samples)} images is degenerate: an empty mask or a box outside "
                        "the image), so the decoder cannot be calibrated; fix the annotations")
    return samples
