"""End-to-end evaluation mechanics on a tiny model and a synthetic COCO split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from trtq.data import CocoBoxDataset
from trtq.errors import DataError
from trtq.eval.backends import OnnxRuntimeBackend, TorchBackend
from trtq.eval.sam_eval import evaluate
from trtq.models import load_model


@pytest.fixture(scope="module")
def synthetic_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    (root / "val").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(3):
        h, w = 48 + 8 * i, 64
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": h, "width": w})
        for j in range(2):
            x, y = 4 + 20 * j, 6 + 3 * i
            anns.append({"id": 10 * i + j, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x, y, 15, 20], "area": 300,
                         "segmentation": [[x, y, x + 15, y, x + 15, y + 20, x, y + 20]]})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "o"}]}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root


def test_torch_and_onnxruntime_agree(synthetic_split, tiny_onnx):
    ds = CocoBoxDataset(synthetic_split, "val")
    torch_run = evaluate(TorchBackend(load_model("tiny_litemedsam")), ds)
    assert len(torch_run.per_instance) == 6
    record = {"per_instance": torch_run.per_instance}
    ort_run = evaluate(OnnxRuntimeBackend(tiny_onnx, model="tiny_litemedsam"), ds, record)
    assert abs(ort_run.miou - torch_run.miou) < 1e-3
    assert ort_run.agreement_instances == 6 and ort_run.agreement_miou > 0.99
    row = ort_run.per_instance[0]
    assert set(row) >= {"image_id", "ann_id", "iou", "rle", "agreement", "predicted_iou"}


def test_reference_from_another_dataset_is_refused(synthetic_split):
    ds = CocoBoxDataset(synthetic_split, "val", limit=1)
    other = {"per_instance": [{"ann_id": 999, "rle": {"size": [1, 1], "counts": "01"}}]}
    with pytest.raises(DataError, match="shares no annotation ids"):
        evaluate(TorchBackend(load_model("tiny_litemedsam")), ds, other)


def test_onnx_dir_for_another_model_is_refused(tiny_onnx):
    from trtq.errors import ArtifactError

    expected = "holds an export of 'tiny_litemedsam', not 'litemedsam'"
    with pytest.raises(ArtifactError, match=expected):
        OnnxRuntimeBackend(tiny_onnx, model="litemedsam")
