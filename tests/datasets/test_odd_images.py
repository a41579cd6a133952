"""Valid but unusual image files decode to sensible 8-bit RGB, and calibrate + eval run on them:
CMYK JPEG, 16-bit grayscale PNG, 8-bit grayscale, palette PNG, RGBA PNG (with transparency)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trtq.cli import main
from trtq.data import load_rgb

H, W = 48, 64


def _photo() -> np.ndarray:
    """A smooth colour picture with a bright square (something for a box prompt to find)."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), np.full_like(xx, 90)], -1)
    rgb[12:36, 16:48] = (230, 40, 200)
    return rgb.astype(np.uint8)


def _gray() -> np.ndarray:
    return np.repeat(np.linspace(0, 255, W)[None], H, 0).round().astype(np.uint8)


def _write(kind: str, path: Path) -> np.ndarray:
    """Write `kind` to `path`; returns the RGB the decoder should give (approximately for JPEG)."""
    rgb = _photo()
    if kind == "cmyk.jpg":
        Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
        return rgb
    if kind == "gray16.png":
        Image.fromarray(_gray().astype(np.uint16) * 257).save(path)
        return np.repeat(_gray()[..., None], 3, -1)
    if kind == "gray8.png":
        Image.fromarray(_gray()).save(path)
        return np.repeat(_gray()[..., None], 3, -1)
    if kind == "palette.png":
        image = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        image.save(path)
        return np.asarray(image.convert("RGB"))
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, :8] = 0  # a transparent band: composited onto black
    alpha[:, 8:16] = 128  # half transparent: half the colour
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    return (rgb * (alpha[..., None] / 255.0)).round().astype(np.uint8)


KINDS = ["cmyk.jpg", "gray16.png", "gray8.png", "palette.png", "rgba.png"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_decodes_to_uint8_rgb(kind, tmp_path):
    path = tmp_path / kind
    expected = _write(kind, path)
    assert Image.open(path).mode == {"cmyk.jpg": "CMYK", "gray16.png": "I;16", "gray8.png": "L",
                                     "palette.png": "P", "rgba.png": "RGBA"}[kind]
    rgb = load_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    error = np.abs(rgb.astype(int) - expected.astype(int))
    if kind == "cmyk.jpg":
        assert error.mean() < 4 and rgb[24, 32].tolist() == pytest.approx([230, 40, 200], abs=12)
    else:
        assert error.max() == 0, kind
    if kind == "gray16.png":
        assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, -1].tolist() == [255, 255, 255]
    if kind == "rgba.png":
        assert rgb[:, :8].max() == 0  # no hidden colour from under transparent pixels


def _odd_coco(root: Path, split: str) -> Path:
    """A COCO split of the five kinds, one rectangle instance (the bright square) each."""
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i, kind in enumerate(KINDS, 1):
        _write(kind, root / split / kind)
        images.append({"id": i, "file_name": kind, "width": W, "height": H})
        square = [16, 12, 47, 12, 47, 35, 16, 35]
        anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": [square],
                     "iscrowd": 0, "area": 768.0, "bbox": [16, 12, 32, 24]})
    record = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "sq"}]}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(record))
    return root


def test_calibrate_and_eval_on_odd_images(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for kind in KINDS:
        _write(kind, folder / kind)
    assert main(["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(folder),
                 "--num-images", "5", "--out", str(tmp_path / "cal")]) == 0
    assert json.loads((tmp_path / "cal" / "quant_state.pt.json").read_text())["images"] == 5
    coco = _odd_coco(tmp_path / "coco", "calib")
    _odd_coco(coco, "val")
    assert main(["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(coco),
                 "--split", "calib", "--out", str(tmp_path / "cal2")]) == 0
    meta = json.loads((tmp_path / "cal2" / "quant_state.pt.json").read_text())
    assert meta["images"] == 5 and meta["boxes"] == 5
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "tiny_litemedsam", "--data", str(coco), "--split", "val",
                 "--calibrated", str(tmp_path / "cal2"), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["instances"] == 5 and record["images"] == 5
    assert 0.0 <= record["miou"] <= 1.0
    assert [r["file"] for r in record["per_instance"]] == KINDS
