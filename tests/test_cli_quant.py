"""CLI: calibrate → export --calibrated → inspect → eval --calibrated on a tiny model."""

from __future__ import annotations

import json

import pytest

from trtq.cli import main


def test_calibrate_export_inspect_eval(synthetic_coco, tmp_path, capsys):
    cal = tmp_path / "cal"
    args = ["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(synthetic_coco),
            "--split", "calib", "--num-images", "2", "--observer", "minmax", "--out", str(cal)]
    assert main(args) == 0
    meta = json.loads((cal / "quant_state.pt.json").read_text())
    assert meta["images"] == 2 and meta["boxes"] >= 2 and meta["quantizers_on"] > 150
    assert meta["recipe"]["name"] == "w8a8" and meta["peak_rss_mib"] > 0
    assert main(args) == 2  # no overwrite without --force
    assert "--force" in capsys.readouterr().err
    onnx_dir = tmp_path / "int8"
    assert main(["export", "--model", "tiny_litemedsam", "--calibrated", str(cal),
                 "--out", str(onnx_dir)]) == 0
    report = tmp_path / "inspect.json"
    assert main(["inspect", "--onnx", str(onnx_dir / "encoder.onnx"), "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["lint_errors"] == [] and result["int8_mac_coverage"] > 0.9
    assert result["int8_mac_coverage_of_recipe"] == 1.0
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "tiny_litemedsam", "--data", str(synthetic_coco),
                 "--split", "val", "--limit", "2", "--calibrated", str(cal),
                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["recipe"] == "w8a8" and record["target"] == "tensorrt"
    assert record["instances"] >= 2 and 0.0 <= record["miou"] <= 1.0
    assert main(["export", "--model", "tiny_mobile_sam", "--calibrated", str(cal),
                 "--out", str(tmp_path / "x")]) == 2
    assert "calibrated for 'tiny_litemedsam'" in capsys.readouterr().err


def test_calibrate_refuses_an_eval_split(synthetic_coco, tmp_path, capsys):
    assert main(["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(synthetic_coco),
                 "--split", "val", "--out", str(tmp_path / "c")]) == 2
    assert "evaluation split" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("recipe, on, deployable", [("w8a8", True, "yes"), ("w4a4", True, "no"),
                                                      ("fp16", False, "yes")])
def test_inspect_recipe_table(recipe, on, deployable, capsys):
    assert main(["inspect", "--recipe", recipe, "--model", "tiny_litemedsam"]) == 0
    out = capsys.readouterr().out
    assert f"deployable to TensorRT: {deployable}" in out
    line = next(x for x in out.splitlines()
                if x.startswith("image_encoder.layers.1.blocks.0.attn.qkv.input_quantizer"))
    assert ("float" not in line) == on
    assert "prompt_encoder.mask_downscaling.0.input_quantizer" in out


def test_bad_recipe_and_missing_state(tmp_path, capsys):
    assert main(["inspect", "--recipe", "int7"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    assert main(["export", "--model", "tiny_litemedsam", "--calibrated", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "trtq calibrate" in capsys.readouterr().err
    assert main(["export", "--model", "tiny_litemedsam", "--target", "onnxruntime",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--calibrated" in capsys.readouterr().err


def test_calibrate_ptq4sam_prints_big_and_exports_both_logquant_forms(synthetic_coco, tmp_path,
                                                                     capsys, monkeypatch):
    cal = tmp_path / "cal"
    assert main(["calibrate", "--model", "tiny_litemedsam-bimodal", "--recipe", "w8a8-ptq4sam",
                 "--calib-data", str(synthetic_coco), "--split", "calib", "--num-images", "1",
                 "--out", str(cal)]) == 0
    out = capsys.readouterr().out
    assert "BIG (bimodal K detection" in out
    meta = json.loads((cal / "quant_state.pt.json").read_text())
    assert len(meta["big"]["layers"]) == 7 and len(meta["logquant"]) == 11
    bimodal = [r for r in meta["big"]["layers"] if r["bimodal"]]
    assert 1 <= len(bimodal) <= 3 and all("token_to_image" in r["layer"] for r in bimodal)
    assert out.count(": bimodal (2 peak(s)") == len(bimodal)
    assert out.count(": unimodal") == 7 - len(bimodal)
    assert all(v["tau"] in (1, 2, 4) for v in meta["logquant"].values())
    for form in ("onnx", "plugin"):
        assert main(["export", "--model", "tiny_litemedsam-bimodal", "--calibrated", str(cal),
                     "--logquant", form, "--out", str(tmp_path / form)]) == 0
        assert "7 LogQuant nodes" in capsys.readouterr().out
    # --logquant auto (the default): the plugin node only where the plugin library is built
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRTQ_LOGQUANT_PLUGIN", raising=False)
    library = tmp_path / "liblogquant_trt.so"
    library.write_bytes(b"\x7fELF")
    for env, form in ((None, "onnx"), (str(library), "plugin")):
        if env:
            monkeypatch.setenv("TRTQ_LOGQUANT_PLUGIN", env)
        out = tmp_path / f"auto-{form}"
        assert main(["export", "--model", "tiny_litemedsam-bimodal", "--calibrated", str(cal),
                     "--out", str(out)]) == 0
        capsys.readouterr()
        assert json.loads((out / "decoder.onnx.json").read_text())["logquant_form"] == form
    assert main(["export", "--model", "tiny_litemedsam", "--logquant", "plugin",
                 "--out", str(tmp_path / "fp32")]) == 2
    assert "pass --calibrated" in capsys.readouterr().err
