"""COCO-format datasets on the real shared data, and the errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from trtq.data import CocoBoxDataset, ImageFolder, load_rgb
from trtq.data.coco import mask_box
from trtq.errors import DataError


def test_busi_val_counts_and_masks(busi):
    ds = CocoBoxDataset(busi, "val")
    assert len(ds) == 162 and ds.num_instances == 164
    sample = next(iter(ds))
    assert sample.rgb.dtype == np.uint8 and sample.rgb.shape[2] == 3  # grayscale PNG → RGB
    inst = sample.instances[0]
    assert inst.mask.dtype == bool and inst.mask.shape == sample.rgb.shape[:2]
    x0, y0, x1, y1 = inst.box.astype(int)
    assert inst.mask[y0, :].any() and inst.mask[:, x0].any() and inst.mask[y1, :].any()
    assert not inst.mask[:y0].any() and not inst.mask[:, x1 + 1 :].any()


def test_tiny_coco_val_skips_crowd(tiny_coco):
    ds = CocoBoxDataset(tiny_coco, "val2017")
    assert ds.num_instances == 377
    assert sum(len(s.instances) for s in ds) == 377


def test_bbox_source_uses_the_annotation_box(tiny_coco):
    ds = CocoBoxDataset(tiny_coco, "val2017", box_source="bbox", limit=1)
    sample = next(iter(ds))
    ann = ds.coco.anns[sample.instances[0].ann_id]
    x, y, w, h = ann["bbox"]
    assert np.allclose(sample.instances[0].box, [x, y, x + w, y + h])


def test_mask_box_is_inclusive():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert mask_box(mask).tolist() == [3, 2, 8, 4]


def _tiny_dataset(tmp_path, image_size=(20, 30), ann_size=None):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    Image.fromarray(np.zeros(image_size, np.uint8)).save(tmp_path / "val" / "a.png")
    h, w = ann_size or image_size
    data = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [2, 3, 5, 6], "area": 30,
                             "segmentation": [[2, 3, 7, 3, 7, 9, 2, 9]]}]}
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return tmp_path


def test_polygon_annotations_decode(tmp_path):
    ds = CocoBoxDataset(_tiny_dataset(tmp_path), "val")
    sample = next(iter(ds))
    assert sample.rgb.shape == (20, 30, 3)
    assert sample.instances[0].ann_id == 7 and sample.instances[0].mask.sum() > 20


def test_image_size_disagreeing_with_annotations(tmp_path):
    ds = CocoBoxDataset(_tiny_dataset(tmp_path, ann_size=(21, 30)), "val")
    with pytest.raises(DataError, match="is 20×30 but the annotations say 21×30"):
        next(iter(ds))


@pytest.mark.parametrize("content,reason", [
    ("[1, 2, 3]", "missing images, annotations, categories"),
    ("{not json", "not JSON"),
    ('{"images": [], "categories": [], "annotations": [{"id": 1}]}', "an annotation lacks"),
])
def test_non_coco_annotation_files(tmp_path, content, reason):
    root = _tiny_dataset(tmp_path)
    (root / "annotations" / "instances_val.json").write_text(content)
    with pytest.raises(DataError, match="is not a COCO instances file") as exc:
        CocoBoxDataset(root, "val")
    assert reason in str(exc.value)


def test_missing_split_folder(tmp_path):
    root = _tiny_dataset(tmp_path)
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match="image folder .* for split 'val' does not exist"):
        CocoBoxDataset(root, "val")


def test_image_folder_rejects_a_non_image(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png is not an image"):
        ImageFolder(tmp_path)
    (tmp_path / "broken.png").unlink()
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="notes.txt is not an image file"):
        ImageFolder(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / ".hidden").write_text("ignored")
    assert [p.name for p, _ in ImageFolder(tmp_path)] == ["ok.png"]


def test_empty_or_missing_image_folder(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        ImageFolder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "nope")


def test_load_rgb_converts_modes(tmp_path):
    Image.fromarray(np.full((3, 5), 200, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.arange(15, dtype=np.uint16).reshape(3, 5) * 1000).save(tmp_path / "d.png")
    gray = load_rgb(tmp_path / "g.png")
    assert gray.shape == (3, 5, 3) and (gray == 200).all()
    deep = load_rgb(tmp_path / "d.png")
    assert deep.dtype == np.uint8 and deep.min() == 0 and deep.max() == 255
