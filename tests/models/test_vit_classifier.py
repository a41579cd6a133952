"""ViT/DeiT classifiers: timm's keys, numerics against an independent computation, checkpoints
from a user path, calibration with PTQ4ViT, and `trtq classify`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from trtq.cli import main
from trtq.errors import CheckpointError
from trtq.models import load_model


def _reference_forward(sd: dict, x: torch.Tensor, heads: int, patch: int, distilled: bool):
    """The ViT forward written out with torch functionals and scaled_dot_product_attention."""
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    t = t.flatten(2).transpose(1, 2)
    lead = [sd["cls_token"]] + ([sd["dist_token"]] if distilled else [])
    t = torch.cat([v.expand(x.shape[0], -1, -1) for v in lead] + [t], 1) + sd["pos_embed"]
    d = t.shape[-1]
    for i in range(2):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).chunk(3, -1)
        q, k, v = (z.reshape(*z.shape[:2], heads, -1).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(t.shape)
        t = t + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(t, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        t = t + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    t = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    out = F.linear(t[:, 0], sd["head.weight"], sd["head.bias"])
    if distilled:
        out = (out + F.linear(t[:, 1], sd["head_dist.weight"], sd["head_dist.bias"])) / 2
    return out


@pytest.mark.parametrize("name, distilled", [("vit_test", False), ("deit_distilled_test", True)])
def test_forward_matches_an_independent_implementation(name, distilled):
    model = load_model(name)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
        ref = _reference_forward(model.state_dict(), x, 3, 8, distilled)
    assert ours.shape == (3, 10)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_timm_checkpoint_loads_from_a_user_path(tmp_path):
    source = load_model("deit_distilled_test")
    torch.manual_seed(3)
    state = {k: torch.randn_like(v) for k, v in source.state_dict().items()}
    torch.save({"model": state, "epoch": 300}, tmp_path / "deit.pth")  # DeiT's release layout
    # the tiny configs take a checkpoint too; the real ones require one
    loaded = load_model("deit_distilled_test", tmp_path / "deit.pth")
    assert torch.equal(loaded.state_dict()["blocks.1.mlp.fc2.weight"],
                       state["blocks.1.mlp.fc2.weight"])
    bad = dict(state)
    bad.pop("dist_token")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="1 missing.*dist_token"):
        load_model("deit_distilled_test", tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="needs --checkpoint"):
        load_model("deit_small_patch16_224")


@pytest.fixture(scope="module")
def labelled_folder(tiny_coco, tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    images = sorted((tiny_coco / "val2017").iterdir())[:8]
    for i, path in enumerate(images):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / path.name)
    return root


def test_classify_cli_accuracy_agreement_and_calibration(labelled_folder, tmp_path, capsys):
    fp = tmp_path / "fp.json"
    assert main(["classify", "--model", "vit_test", "--images", str(labelled_folder),
                 "--out", str(fp)]) == 0
    record = json.loads(fp.read_text())
    preds = record["predictions"]
    assert record["images"] == 8 and record["labelled"] is True
    expected = sum(p["top5"][0] == p["label"] for p in preds) / 8
    assert record["top1"] == pytest.approx(expected)
    assert {p["label"] for p in preds} == {0, 1}
    # the same model against itself agrees everywhere; a refusal to overwrite loses nothing
    again = tmp_path / "again.json"
    assert main(["classify", "--model", "vit_test", "--images", str(labelled_folder),
                 "--reference", str(fp), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["agreement"] == 1.0
    assert main(["classify", "--model", "vit_test", "--images", str(labelled_folder),
                 "--out", str(fp)]) == 2
    assert json.loads(fp.read_text()) == record
    # W4A4 PTQ4ViT calibration of the classifier, then agreement with the float run
    cal = tmp_path / "cal"
    assert main(["calibrate", "--model", "vit_test", "--recipe", "w4a4-ptq4vit", "--calib-data",
                 str(labelled_folder), "--num-images", "8", "--out", str(cal)]) == 0
    assert "search (hessian" in capsys.readouterr().out
    q = tmp_path / "q.json"
    assert main(["classify", "--model", "vit_test", "--images", str(labelled_folder),
                 "--calibrated", str(cal), "--reference", str(fp), "--out", str(q)]) == 0
    quantized = json.loads(q.read_text())
    assert quantized["recipe"] == "w4a4-ptq4vit" and 0.0 <= quantized["agreement"] <= 1.0
    changed = sum(a["top5"] != b["top5"] for a, b in zip(preds, quantized["predictions"],
                                                          strict=True))
    assert changed >= 1  # 4-bit quantization moves at least one top-5 list


def test_classifier_task_gradients_are_real():
    from trtq.calib.calibrate import quantize
    from trtq.calib.capture import Recorder
    from trtq.calib.tasks import ClassifierTask
    from trtq.models.classifiers import VIT_CLASSIFIER
    from trtq.recipes import get_recipe

    model = load_model("vit_test")
    quantize(model, get_recipe("w8a8-hessian", VIT_CLASSIFIER.rules))
    layers = ["blocks.0.attn.qkv", "blocks.1.mlp.fc2", "blocks.1.attn.av_matmul", "head"]
    recorder = Recorder(model, layers, 64)
    task = ClassifierTask([torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))])
    assert recorder.run(task) == 1
    for name in layers:
        _, _, g = recorder.records[name].tensors()
        assert float(g.abs().mean()) > 1e-6, name
