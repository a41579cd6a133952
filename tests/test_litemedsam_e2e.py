"""The real LiteMedSAM checkpoint on the real shared datasets: PyTorch vs onnxruntime.

The quick tests use the first images of each split; the `slow` ones evaluate the full splits
and compare with the independently measured full-precision mIoU in the datasets' READMEs
(BUSI val 0.851 over 164 lesions; tiny_coco val2017 0.505 over 377 instances).
"""

from __future__ import annotations

import json

import pytest

from trtq.cli import main
from trtq.data import CocoBoxDataset
from trtq.eval.backends import OnnxRuntimeBackend, TorchBackend
from trtq.eval.sam_eval import evaluate


def _both(model, onnx_dir, root, split, limit=None):
    ds = CocoBoxDataset(root, split, limit=limit)
    torch_run = evaluate(TorchBackend(model), ds)
    ort_run = evaluate(OnnxRuntimeBackend(onnx_dir, model="litemedsam"), ds,
                       {"per_instance": torch_run.per_instance})
    return torch_run, ort_run


def test_busi_subset_torch_matches_onnxruntime(litemedsam, litemedsam_onnx, busi):
    torch_run, ort_run = _both(litemedsam, litemedsam_onnx, busi, "val", limit=12)
    assert len(torch_run.per_instance) == 12
    assert abs(torch_run.miou - ort_run.miou) < 1e-3
    assert ort_run.agreement_miou > 0.99
    assert torch_run.miou > 0.75  # a working model on in-domain lesions


def test_export_sidecar_records_the_checkpoint(litemedsam_onnx):
    from trtq.artifacts import read_sidecar
    from trtq.models.checkpoints import LITEMEDSAM_WEIGHTS

    for part in ("encoder", "decoder"):
        record = read_sidecar(litemedsam_onnx / f"{part}.onnx")
        assert record["inputs"] == {"checkpoint": LITEMEDSAM_WEIGHTS.sha256}
        assert record["model"] == "litemedsam" and record["parity_max_rel_diff"] < 1e-4
        assert record["preprocess"]["box_rounding"] == "floor"


def test_eval_cli_writes_results_and_agreement(litemedsam_onnx, busi, tmp_path, capsys):
    ref = tmp_path / "torch.json"
    assert main(["eval", "--data", str(busi), "--split", "val", "--limit", "3",
                 "--out", str(ref)]) == 0
    out = tmp_path / "ort.json"
    assert main(["eval", "--data", str(busi), "--split", "val", "--limit", "3", "--backend",
                 "onnxruntime", "--onnx-dir", str(litemedsam_onnx), "--reference", str(ref),
                 "--out", str(out)]) == 0
    torch_res, ort_res = json.loads(ref.read_text()), json.loads(out.read_text())
    assert torch_res["instances"] == ort_res["instances"] == 3
    assert torch_res["checkpoint_sha256"].startswith("79d8c9dc")
    assert abs(torch_res["miou"] - ort_res["miou"]) < 1e-3
    assert ort_res["agreement_miou"] > 0.99 and ort_res["agreement_instances"] == 3
    assert "| litemedsam (onnxruntime) | 3 |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name,split,instances,independent", [
    ("busi", "val", 164, 0.851),
    ("tiny_coco", "val2017", 377, 0.505),
])
def test_full_split_miou_matches_independent_measurement(
        litemedsam, litemedsam_onnx, name, split, instances, independent, request):
    root = request.getfixturevalue(name)
    torch_run, ort_run = _both(litemedsam, litemedsam_onnx, root, split)
    print(f"{name}/{split}: torch {torch_run.miou:.4f}, onnxruntime {ort_run.miou:.4f}, "
          f"agreement {ort_run.agreement_miou:.4f}")
    assert len(torch_run.per_instance) == instances
    assert abs(torch_run.miou - ort_run.miou) < 1e-3
    assert abs(torch_run.miou - independent) < 0.006
