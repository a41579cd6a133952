"""Classifier evaluation on real images (tiny_coco): top-1/top-5 against labels, agreement with a
reference, image-folder layouts and their errors, and `trtq classify`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from trtq.cli import main
from trtq.data.images import load_rgb
from trtq.data.labelled_images import LabelledImages
from trtq.errors import DataError
from trtq.eval.classify import evaluate_classifier, predict
from trtq.models import load_model

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture(scope="module")
def flat(tiny_coco, tmp_path_factory):
    """12 real COCO images in one flat folder."""
    root = tmp_path_factory.mktemp("flat")
    for path in sorted((tiny_coco / "val2017").iterdir())[:12]:
        shutil.copy(path, root / path.name)
    return root


@pytest.fixture(scope="module")
def top1(flat) -> dict[str, int]:
    """vit_test's top-1 per image, computed without evaluate_classifier."""
    model = load_model("vit_test")
    paths = sorted(flat.iterdir())
    x = torch.from_numpy(np.concatenate([model.preprocess.image(load_rgb(p)) for p in paths]))
    with torch.no_grad():
        return dict(zip((p.name for p in paths), model(x).argmax(-1).tolist(), strict=True))


def labelled_copy(flat, top1, root, wrong=()):
    """ROOT/c<k>/<image> with k = vit_test's top-1, or top-1 + 1 for the images in `wrong`."""
    for name, k in top1.items():
        folder = root / f"c{(k + 1) % 10 if name in wrong else k}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(flat / name, folder / name)
    (root.parent / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root, root.parent / "classes.txt"


def test_top1_top5_against_labels(flat, top1, tmp_path):
    assert len(set(top1.values())) >= 3  # the random model does not predict one class only
    wrong = sorted(top1)[:3]
    root, classes = labelled_copy(flat, top1, tmp_path / "imgs", wrong)
    model = load_model("vit_test")
    result = evaluate_classifier(model, LabelledImages(root, classes), batch_size=5)
    rows = result["predictions"]
    assert result["images"] == result["labelled_images"] == 12
    assert result["top1"] == pytest.approx(9 / 12)
    in_top5 = sum(r["label"] in r["top5"] for r in rows)
    assert result["top5"] == pytest.approx(in_top5 / 12) and in_top5 >= 9
    assert all(len(r["top5"]) == 5 for r in rows)
    assert {r["image"].split("/")[1]: r["top5"][0] for r in rows} == top1
    assert [r["image"] for r in rows] == sorted(r["image"] for r in rows)  # class, then file
    # without a classes file the label is the index among the sorted folder names
    present = sorted({r["image"].split("/")[0] for r in rows})
    plain = evaluate_classifier(model, LabelledImages(root))
    assert [r["label"] for r in plain["predictions"]] == [
        present.index(r["image"].split("/")[0]) for r in rows]


def test_agreement_with_itself_and_a_perturbed_model(flat, top1):
    model = load_model("vit_test")
    base = evaluate_classifier(model, LabelledImages(flat))
    assert base["top1"] is None and base["labelled_images"] == 0
    same = evaluate_classifier(model, LabelledImages(flat), reference=base)
    assert same["agreement"] == 1.0 and same["agreement_images"] == 12
    ints = [top1[r["image"]] for r in base["predictions"]]
    assert evaluate_classifier(model, LabelledImages(flat), ints)["agreement"] == 1.0
    perturbed = load_model("vit_test")
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        perturbed.head.weight.add_(torch.randn(perturbed.head.weight.shape, generator=g)
                                   * perturbed.head.weight.std())
    paths = sorted(flat.iterdir())
    x = torch.from_numpy(np.concatenate([model.preprocess.image(load_rgb(p)) for p in paths]))
    with torch.no_grad():
        expected = (perturbed(x).argmax(-1) == model(x).argmax(-1)).float().mean().item()
    result = evaluate_classifier(perturbed, LabelledImages(flat), base["predictions"])
    assert result["agreement"] == pytest.approx(expected) and result["agreement"] < 1.0
    # any module returning logits, with the preprocessing passed explicitly
    wrapped = evaluate_classifier(nn.Sequential(model), LabelledImages(flat, limit=4), base,
                                  preprocess=model.preprocess)
    assert wrapped["agreement"] == 1.0 and wrapped["images"] == 4


def test_folder_and_reference_errors(flat, top1, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        LabelledImages(tmp_path / "empty")
    broken = tmp_path / "broken" / "c0"
    broken.mkdir(parents=True)
    (broken / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg is not an image"):
        LabelledImages(tmp_path / "broken")
    root, classes = labelled_copy(flat, top1, tmp_path / "imgs")
    shutil.copy(flat / sorted(top1)[0], root / "loose.jpg")
    with pytest.raises(DataError, match="loose files \\(e.g. loose.jpg\\)"):
        LabelledImages(root)
    (root / "loose.jpg").unlink()
    (tmp_path / "few.txt").write_text("c0\n")
    with pytest.raises(DataError, match="are not in .*few.txt"):
        LabelledImages(root, tmp_path / "few.txt")
    with pytest.raises(DataError, match="cannot be read"):
        LabelledImages(root, tmp_path / "absent.txt")
    with pytest.raises(DataError, match="classes file does not apply"):
        LabelledImages(flat, classes)
    model = load_model("vit_test")
    with pytest.raises(DataError, match="shares no image"):
        evaluate_classifier(model, LabelledImages(flat, limit=2),
                            [{"image": "other.jpg", "top5": [1]}])
    with pytest.raises(DataError, match="3 predictions for 2 images"):
        evaluate_classifier(model, LabelledImages(flat, limit=2), [1, 2, 3])
    with pytest.raises(DataError, match="not a classify result"):
        evaluate_classifier(model, LabelledImages(flat, limit=2), {"miou": 0.5})
    assert [r["image"] for r in predict(model, LabelledImages(flat, limit=3))] == sorted(top1)[:3]


def test_classify_cli(flat, top1, tiny_coco, tmp_path, capsys):
    root, classes = labelled_copy(flat, top1, tmp_path / "imgs")
    fp = tmp_path / "fp.json"
    args = ["classify", "--model", "vit_test", "--images", str(root), "--classes", str(classes)]
    assert main([*args, "--out", str(fp)]) == 0
    record = json.loads(fp.read_text())
    assert (record["images"], record["top1"], record["top5"]) == (12, 1.0, 1.0)
    assert record["labelled"] is True and record["model"] == "vit_test"
    assert "| vit_test | 12 | 100.00 % | 100.00 % | — |" in capsys.readouterr().out
    # never overwritten without --force; --force with --limit replaces it
    assert main([*args, "--out", str(fp), "--limit", "5"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert json.loads(fp.read_text()) == record
    assert main([*args, "--out", str(fp), "--limit", "5", "--force"]) == 0
    assert json.loads(fp.read_text())["images"] == 5
    # a calibrated (fake-quantized) model against the float run
    ref = tmp_path / "ref.json"
    assert main([*args, "--out", str(ref)]) == 0
    cal = tmp_path / "cal"
    assert main(["calibrate", "--model", "vit_test", "--recipe", "w4a4", "--calib-data",
                 str(tiny_coco / "train2017"), "--num-images", "8", "--out", str(cal)]) == 0
    q = tmp_path / "q.json"
    assert main([*args, "--calibrated", str(cal), "--reference", str(ref), "--out", str(q)]) == 0
    quant = json.loads(q.read_text())
    same = sum(a["top5"][0] == b["top5"][0] for a, b in zip(
        quant["predictions"], json.loads(ref.read_text())["predictions"], strict=True))
    assert quant["agreement"] == pytest.approx(same / 12) and quant["top1"] == quant["agreement"]
    assert quant["recipe"] == "w4a4" and len(quant["quant_state_sha256"]) == 64
    assert main(["classify", "--model", "tiny_litemedsam", "--images", str(flat),
                 "--out", str(tmp_path / "sam.json")]) == 2
    assert "not an image classifier" in capsys.readouterr().err
