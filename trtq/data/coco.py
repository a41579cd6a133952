"""COCO-format instance datasets as (image, box prompt, ground-truth mask) triples.

Layout: `ROOT/annotations/instances_SPLIT.json` with the images in `ROOT/SPLIT/`. Polygon and
RLE segmentations are both decoded by pycocotools. Crowd annotations are skipped. The box
prompt of an instance is the tight box of its mask (x0, y0, x1, y1, inclusive pixel indices,
MedSAM's convention) or, with `box_source="bbox"`, the annotation's `bbox` field.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtq.data.images import load_rgb
from trtq.errors import DataError

_REQUIRED_KEYS = ("images", "annotations", "categories")


@dataclass(frozen=True)
class Instance:
    ann_id: int
    category_id: int
    box: np.ndarray  # (4,) float64, x0 y0 x1 y1 in original pixels
    mask: np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class Sample:
    image_id: int
    file_name: str
    rgb: np.ndarray  # (H, W, 3) uint8
    instances: tuple[Instance, ...]
    skipped: int = 0  # degenerate annotations left out (empty mask, box outside the image)


def mask_box(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def bbox_box(ann: dict, hw: tuple[int, int]) -> np.ndarray | None:
    """An annotation's `bbox` (x, y, w, h) as (x0, y0, x1, y1) clipped to the image; None when
    it is degenerate (no area) or lies outside the image."""
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"annotation {ann.get('id')} has no usable bbox [x, y, w, h]; use "
                        "--box-source mask") from None
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(hw[1])), min(y + h, float(hw[0]))
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        return None
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def _read_coco_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist; expected "
                        "DIR/annotations/instances_SPLIT.json (COCO layout)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a COCO instances file (not JSON: {exc})") from None
    missing = [k for k in _REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise DataError(f"{path} is not a COCO instances file (missing {', '.join(missing)})")
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not {"image_id", "segmentation", "id"} <= ann.keys():
            raise DataError(f"{path} is not a COCO instances file (an annotation lacks "
                            "image_id, segmentation or id)")
    return data


class CocoBoxDataset:
    """Images of one split with their non-crowd instances, in image-id order."""

    def __init__(self, root: str | os.PathLike, split: str, box_source: str = "mask",
                 limit: int | None = None) -> None:
        from pycocotools.coco import COCO

        if box_source not in ("mask", "bbox"):
            raise ValueError("box_source must be 'mask' or 'bbox'")
        self.root = Path(root)
        self.split = split
        self.box_source = box_source
        self.image_dir = self.root / split
        ann_path = self.root / "annotations" / f"instances_{split}.json"
        data = _read_coco_json(ann_path)
        if not self.image_dir.is_dir():
            raise DataError(f"image folder {self.image_dir} for split {split!r} does not exist")
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        self.coco = coco
        ids = [i for i in sorted(coco.getImgIds()) if self._annotations(i)]
        if not ids:
            raise DataError(f"{ann_path} has no image with a (non-crowd) annotation: nothing "
                            "to evaluate or calibrate on; check the split")
        self.image_ids = ids[:limit] if limit else ids
        self._check_files(ann_path)

    def _check_files(self, ann_path: Path) -> None:
        """Every listed image must be a file in the split's folder (checked up front, not
        minutes into a run)."""
        names = [self.coco.imgs[i].get("file_name") for i in self.image_ids]
        if not all(isinstance(n, str) and n for n in names):
            raise DataError(f"{ann_path} is not a COCO instances file (an image lacks file_name)")
        missing = [n for n in names if not (self.image_dir / n).is_file()]
        if missing:
            raise DataError(f"{len(missing)} of {len(names)} images listed in {ann_path.name} "
                            f"are missing from {self.image_dir} (e.g. {missing[0]}); copy them "
                            "there or fix the annotation file")

    def _annotations(self, image_id: int) -> list[dict]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        return sorted(anns, key=lambda a: a["id"])

    @property
    def num_instances(self) -> int:
        return sum(len(self._annotations(i)) for i in self.image_ids)

    def __len__(self) -> int:
        return len(self.image_ids)

    def _instance(self, ann: dict, hw: tuple[int, int]) -> Instance | None:
        try:
            mask = self.coco.annToMask(ann).astype(bool)
        except Exception as exc:  # pycocotools raises assorted errors on malformed polygons
            raise DataError(
                f"annotation {ann['id']} has an unreadable segmentation ({exc})"
            ) from None
        if mask.shape != hw:
            raise DataError(f"annotation {ann['id']} mask is {mask.shape}, image is {hw}")
        if not mask.any():
            return None
        box = mask_box(mask) if self.box_source == "mask" else bbox_box(ann, hw)
        if box is None:
            return None
        return Instance(int(ann["id"]), int(ann.get("category_id", 0)), box, mask)

    def __iter__(self) -> Iterator[Sample]:
        for image_id in self.image_ids:
            info = self.coco.imgs[image_id]
            rgb = load_rgb(self.image_dir / info["file_name"])
            hw = rgb.shape[:2]
            if ("height" in info and "width" in info) and (info["height"], info["width"]) != hw:
                raise DataError(f"{info['file_name']} is {hw[0]}×{hw[1]} but the annotations say "
                                f"{info['height']}×{info['width']}")
            found = [self._instance(a, hw) for a in self._annotations(image_id)]
            instances = tuple(i for i in found if i is not None)
            yield Sample(image_id, info["file_name"], rgb, instances,
                         len(found) - len(instances))
