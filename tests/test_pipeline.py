"""`trtq run` end to end on a tiny model (fast) and on the real LiteMedSAM (slow)."""

from __future__ import annotations

import json

import pytest

from trtq.cli import main


def test_run_on_tiny_model_writes_report(tmp_path, capsys, tiny_calibrated):
    out = tmp_path / "run"
    argv = ["run", "--model", "tiny_litemedsam", "--iterations", "3", "--warmup", "1",
            "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in (out / "onnx").iterdir()) == [
        "decoder.onnx", "decoder.onnx.json", "encoder.onnx", "encoder.onnx.json"]
    agreement = report["sample_agreement"]
    assert agreement["images"] == 8 and agreement["agreement_miou"] > 0.98
    for part in ("encoder", "decoder"):
        bench = report["bench"][part]
        assert bench["iterations"] == 3 and bench["latency_ms"]["median"] > 0
    assert "eval" not in report  # no --data given
    int8 = report["int8"]
    assert int8["recipe"] == "w8a8-ptq4sam" and len(int8["calibration_images"]) == 4
    held_out = {r["image"] for r in int8["agreement_with_fp32"]["per_image"]}
    assert len(held_out) == 4 and not held_out & set(int8["calibration_images"])
    assert 0.0 <= int8["agreement_with_fp32"]["agreement_miou"] <= 1.0
    for part in ("encoder", "decoder"):
        fp32, q = report["bench"][part]["latency_ms"], int8["bench"][part]["latency_ms"]
        assert int8["speedup_vs_fp32"][part] == pytest.approx(fp32["median"] / q["median"])
        assert int8["exports"]["tensorrt"][part]["lint_errors"] == []
    assert report["tensorrt"] is None  # no TensorRT + GPU here
    assert (out / "onnx-int8-tensorrt" / "encoder.onnx").is_file()
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert md.startswith("# trtq run: tiny_litemedsam") and "| encoder |" in md
    assert "| INT8 | encoder |" in md and "No TensorRT figure" in md
    assert "8 images from the bundled sample images" in md
    assert md in capsys.readouterr().out
    assert main(argv) == 2  # a non-empty output folder is never overwritten silently
    assert "is not empty; choose another --out or pass --force" in capsys.readouterr().err
    # one calibrate-and-save path: the run's calibration folder has the CLI/library schema, and
    # its id is in both INT8 exports; the report names final paths, not the staging folder
    calibration = json.loads((out / "calibrated" / "quant_state.pt.json").read_text())
    library = json.loads((tiny_calibrated / "quant_state.pt.json").read_text())
    assert set(calibration) == set(library)
    assert calibration["image_files"] == int8["calibration_images"]
    chosen = json.loads((out / "calibrated-autoquant" / "quant_state.pt.json").read_text())
    ids = {"tensorrt": calibration, "onnxruntime-all": calibration, "onnxruntime": chosen}
    for folder, source in ids.items():
        for part in ("encoder", "decoder"):
            sidecar = json.loads((out / f"onnx-int8-{folder}" / f"{part}.onnx.json").read_text())
            assert sidecar["calibration_id"] == source["calibration_id"]
    # autoquant chose the onnxruntime graph's INT8 groups: only those faster here, within the
    # agreement floor on the calibration images (never the held-out ones)
    aq = int8["autoquant"]
    assert aq["summary"]["min_agreement"] == 0.95
    assert aq["summary"]["held_out_images"] == 4
    assert aq["summary"]["held_out_agreement"] >= 0.95 or aq["chosen"] == []
    rows = {r["group"]: r for r in aq["groups"]}
    assert all(rows[g]["gain_ms"] > 0 for g in aq["chosen"])
    assert chosen["recipe"]["name"] == "w8a8-ptq4sam-autoquant"
    on = {r["group"] for r in aq["groups"] if r["decision"] == "int8"}
    assert on == set(aq["chosen"])
    assert "autoquant (onnxruntime)" in md
    assert int8["exports"]["tensorrt"]["encoder"]["path"] == str(
        out / "onnx-int8-tensorrt" / "encoder.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_run_on_a_user_image_folder(tmp_path):
    import numpy as np
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        pixels = np.random.default_rng(i).integers(0, 255, (40, 70, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.jpg")
    out = tmp_path / "run"
    assert main(["run", "--model", "tiny_litemedsam", "--images", str(images), "--iterations",
                 "2", "--warmup", "0", "--no-int8", "--out", str(out)]) == 0
    agreement = json.loads((out / "report.json").read_text())["sample_agreement"]
    assert [r["image"] for r in agreement["per_image"]] == ["0.jpg", "1.jpg"]
    (out / "notes.txt").write_text("left in the old run folder")
    assert main(["run", "--model", "tiny_litemedsam", "--images", str(images), "--iterations",
                 "2", "--warmup", "0", "--no-int8", "--force", "--out", str(out)]) == 0
    assert not (out / "notes.txt").exists()  # --force replaces an earlier run's folder whole
    assert (out / "report.json").is_file() and (out / "onnx" / "decoder.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "run"]


@pytest.mark.slow
def test_run_litemedsam_with_busi_subset(busi, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--data", str(busi), "--split", "val", "--limit", "8",
                 "--iterations", "5", "--warmup", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint_sha256"].startswith("79d8c9dc")
    ev = report["eval"]
    assert ev["torch"]["instances"] == ev["onnxruntime"]["instances"] == 8
    assert abs(ev["torch"]["miou"] - ev["onnxruntime"]["miou"]) < 1e-3
    assert ev["onnxruntime"]["agreement_miou"] > 0.99
    assert report["sample_agreement"]["agreement_miou"] > 0.99
    assert (out / "eval_torch.json").is_file() and (out / "eval_onnxruntime.json").is_file()
    int8 = report["int8"]["eval"]  # w8a8-ptq4sam in onnxruntime vs the FP32 ONNX
    assert int8["instances"] == 8 and int8["agreement_miou"] > 0.9
    assert abs(int8["miou"] - ev["onnxruntime"]["miou"]) < 0.03
    assert (out / "eval_int8.json").is_file() and (out / "report.png").is_file()
