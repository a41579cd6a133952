"""ONNX graphs over protobuf's 2 GB limit: weights in one external data file beside the graph.

The quick tests lower the size threshold so that the tiny model takes the large-model path
(export, parity, Q/DQ rewrite, lint, inspect, build, sidecar checks); the slow one exports SAM
ViT-H's real-size FP32 image encoder (random weights, 2.5 GB) and builds it with TensorRT-RTX."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from trtq.artifacts import read_sidecar
from trtq.cli import main
from trtq.errors import ArtifactError
from trtq.export import onnx_files
from trtq.export.onnx_fp32 import ExportSpec, export_fp32
from trtq.models import load_model

SMALL = 1024  # bytes: every tiny part counts as "large"


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_BYTES", SMALL)


def _external_files(path) -> set[str]:
    return onnx_files.external_data_files(onnx_files.load_graph(path))


def test_fp32_export_keeps_weights_beside_the_graph(small_limit, tmp_path, capsys):
    out = tmp_path / "fp32"
    export_fp32(load_model("tiny_litemedsam"), ExportSpec("tiny_litemedsam"), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.onnx", "decoder.onnx.data", "decoder.onnx.json",
        "encoder.onnx", "encoder.onnx.data", "encoder.onnx.json"]
    for part in ("encoder", "decoder"):
        graph = out / f"{part}.onnx"
        assert _external_files(graph) == {f"{part}.onnx.data"}
        assert (out / f"{part}.onnx.data").stat().st_mode & 0o777 == 0o644  # shareable
        record = read_sidecar(graph)
        assert record["external_data"] == f"{part}.onnx.data"
        assert set(record["companions"]) == {f"{part}.onnx.data"}
        assert record["parity_max_rel_diff"] < 1e-4
    assert main(["inspect", "--onnx", str(out / "encoder.onnx")]) == 0
    assert "lint: passed" in capsys.readouterr().out


def test_a_changed_or_missing_data_file_is_refused(small_limit, tmp_path):
    out = tmp_path / "fp32"
    export_fp32(load_model("tiny_litemedsam"), ExportSpec("tiny_litemedsam"), out)
    data = out / "encoder.onnx.data"
    blob = bytearray(data.read_bytes())
    blob[-1] ^= 0xFF
    data.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="encoder.onnx.data, which belongs to .* is changed"):
        read_sidecar(out / "encoder.onnx")
    data.unlink()
    with pytest.raises(ArtifactError, match="is missing since its sidecar was written"):
        read_sidecar(out / "encoder.onnx")


def test_qdq_export_lint_inspect_and_eval_with_external_data(small_limit, tiny_calibrated,
                                                            synthetic_coco, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["export", "--model", "tiny_litemedsam", "--calibrated", str(tiny_calibrated),
                 "--out", str(out)]) == 0
    for part in ("encoder", "decoder"):
        assert _external_files(out / f"{part}.onnx") == {f"{part}.onnx.data"}
        record = json.loads((out / f"{part}.onnx.json").read_text())
        assert record["lint_errors"] == [] and record["forced_parity"]["cuts"] > 10
    report = tmp_path / "inspect.json"
    assert main(["inspect", "--onnx", str(out / "encoder.onnx"), "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["lint_errors"] == [] and result["int8_mac_coverage"] > 0.9
    assert main(["eval", "--model", "tiny_litemedsam", "--data", str(synthetic_coco), "--split",
                 "val", "--backend", "onnxruntime", "--onnx-dir", str(out), "--out",
                 str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["instances"] >= 3


def test_trtq_build_parses_and_builds_external_data(small_limit, trt, tiny_calibrated,
                                                    tmp_path):
    from trtq.engines.build import BuildOptions, build_engine

    out = tmp_path / "int8"
    assert main(["export", "--model", "tiny_litemedsam", "--calibrated", str(tiny_calibrated),
                 "--out", str(out)]) == 0
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)  # the pair travels as a folder: graph + data + sidecar
    result = build_engine(moved / "encoder.onnx", tmp_path / "encoder.int8.engine",
                          BuildOptions(precision="int8"), trt=trt)
    assert result.size_bytes > 0 and result.network_dtypes.get("INT8", 0) > 0


def test_deploy_refuses_external_data_with_the_way_out(small_limit, tiny_onnx, tmp_path):
    from trtq.deploy.plan import gather_jobs

    out = tmp_path / "fp32"
    export_fp32(load_model("tiny_litemedsam"), ExportSpec("tiny_litemedsam"), out)
    with pytest.raises(ArtifactError, match="single-file ONNX only.*run `trtq build` there"):
        gather_jobs([out])
    assert len(gather_jobs([tiny_onnx])) == 2  # ordinary exports are unaffected


def test_small_models_stay_one_file(tiny_onnx):
    assert not any(p.suffix == ".data" for p in tiny_onnx.iterdir())
    assert _external_files(tiny_onnx / "encoder.onnx") == set()


@pytest.mark.slow
def test_sam_vit_h_fp32_encoder_over_2gb(trt, tmp_path, capsys):
    """The real-size ViT-H encoder (random weights): export with external data, parity with
    PyTorch in onnxruntime, lint and inspect, and a TensorRT-RTX build from the file."""
    import torch

    from trtq.engines.build import BuildOptions, build_engine
    from trtq.models.registry import get_spec
    from trtq.tensorrt_flavour import flavour_of

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_spec("sam_vit_h").build().eval()
    out = tmp_path / "vit_h"
    export_fp32(model, ExportSpec("sam_vit_h"), out)
    del model
    graph, data = out / "encoder.onnx", out / "encoder.onnx.data"
    assert data.stat().st_size > 2 << 30 and graph.stat().st_size < 64 << 20
    record = read_sidecar(graph)
    assert record["external_data"] == "encoder.onnx.data" and record["parity_max_rel_diff"] < 1e-4
    assert _external_files(out / "decoder.onnx") == set()  # the decoder fits in one file
    assert main(["inspect", "--onnx", str(graph)]) == 0
    assert "lint: passed" in capsys.readouterr().out
    result = build_engine(graph, tmp_path / "encoder.fp32.engine", BuildOptions(precision="fp32"),
                          trt=trt)
    print(f"sam_vit_h FP32 encoder: ONNX {graph.stat().st_size / 1e6:.1f} MB + data "
          f"{data.stat().st_size / 1e9:.2f} GB; {flavour_of(trt)} plan "
          f"{result.size_bytes / 1e9:.2f} GB in {result.seconds:.0f} s")
    assert result.size_bytes > 1 << 30
    onnx.checker.check_model(str(graph))
