"""One calibration id from the quant state through both ONNX sidecars into engine sidecars, and
encoder/decoder pairs from different calibrations (or FP32 + INT8) refused where pairs are used.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trtq.cli import main


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def second(synthetic_coco, tmp_path_factory) -> dict[str, Path]:
    """A second calibration (1 image, minmax) by the CLI, and its INT8 export."""
    root = tmp_path_factory.mktemp("second")
    cal, onnx = root / "cal", root / "onnx"
    assert main(["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(synthetic_coco),
                 "--split", "calib", "--num-images", "1", "--observer", "minmax",
                 "--out", str(cal)]) == 0
    assert main(["export", "--model", "tiny_litemedsam", "--calibrated", str(cal),
                 "--out", str(onnx)]) == 0
    return {"cal": cal, "onnx": onnx}


def _mix(tmp_path: Path, encoder_from: Path, decoder_from: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for part, source in (("encoder", encoder_from), ("decoder", decoder_from)):
        for suffix in (".onnx", ".onnx.json"):
            shutil.copy(source / f"{part}{suffix}", folder / f"{part}{suffix}")
    return folder


def test_the_id_is_copied_into_both_onnx_sidecars(second, tiny_calibrated, tiny_qdq):
    for cal, onnx in ((second["cal"], second["onnx"]), (tiny_calibrated, tiny_qdq["tensorrt"]),
                      (tiny_calibrated, tiny_qdq["onnxruntime"])):
        state = _read(cal / "quant_state.pt.json")
        ident = state["calibration_id"]
        assert len(ident) == 16 and ident == state["sha256"][:16]
        for part in ("encoder", "decoder"):
            assert _read(onnx / f"{part}.onnx.json")["calibration_id"] == ident
    a = _read(second["cal"] / "quant_state.pt.json")["calibration_id"]
    b = _read(tiny_calibrated / "quant_state.pt.json")["calibration_id"]
    assert a != b


def test_cli_and_library_write_one_sidecar_schema(second, tiny_calibrated):
    cli = _read(second["cal"] / "quant_state.pt.json")
    library = _read(tiny_calibrated / "quant_state.pt.json")
    assert set(cli) == set(library)
    assert cli["kind"] == library["kind"] == "quant_state"
    assert cli["images"] == 1 and library["images"] == 2 and cli["split"] == "calib"


def _mixed_calibrations(second, tiny_qdq, tmp_path) -> tuple[Path, str, str]:
    mixed = _mix(tmp_path, tiny_qdq["tensorrt"], second["onnx"])
    enc = _read(mixed / "encoder.onnx.json")["calibration_id"]
    dec = _read(mixed / "decoder.onnx.json")["calibration_id"]
    return mixed, enc, dec


def _refused(capsys, argv, *phrases) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("trtq: error: "), err
    for phrase in phrases:
        assert phrase in err, err


def test_build_refuses_a_pair_from_two_calibrations(second, tiny_qdq, tmp_path, capsys):
    mixed, enc, dec = _mixed_calibrations(second, tiny_qdq, tmp_path)
    _refused(capsys, ["build", "--onnx", str(mixed), "--out", str(tmp_path / "engines")],
             f"encoder is INT8 from calibration {enc}", f"decoder is INT8 from calibration {dec}",
             "re-export both")
    assert not (tmp_path / "engines").exists()


def test_eval_refuses_a_pair_from_two_calibrations(second, tiny_qdq, synthetic_coco, tmp_path,
                                                   capsys):
    mixed, enc, dec = _mixed_calibrations(second, tiny_qdq, tmp_path)
    _refused(capsys, ["eval", "--model", "tiny_litemedsam", "--data", str(synthetic_coco),
                      "--split", "val", "--backend", "onnxruntime", "--onnx-dir", str(mixed),
                      "--out", str(tmp_path / "r.json")], enc, dec)
    assert not (tmp_path / "r.json").exists()


def test_deploy_refuses_fp32_with_int8(tiny_onnx, tiny_qdq, tmp_path, capsys):
    mixed = _mix(tmp_path, tiny_onnx, tiny_qdq["tensorrt"])
    dec = _read(mixed / "decoder.onnx.json")["calibration_id"]
    _refused(capsys, ["deploy", "--host", "a@b", "--onnx", str(mixed), "--out",
                      str(tmp_path / "dep"), "--dry-run", "--jetpack", "6.2"],
             "encoder is FP32 (no calibration id)", f"decoder is INT8 from calibration {dec}")


def test_a_matching_pair_is_accepted_and_engines_carry_the_id(trt, second, tmp_path, capsys):
    ident = _read(second["cal"] / "quant_state.pt.json")["calibration_id"]
    out = tmp_path / "engines"
    assert main(["build", "--onnx", str(second["onnx"]), "--out", str(out)]) == 0
    for part in ("encoder", "decoder"):
        assert _read(out / f"{part}.int8.engine.json")["calibration_id"] == ident
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines"]  # no staging left


def test_pipeline_int8_no_longer_imports_pipeline():
    import ast

    import trtq.pipeline_int8 as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert "trtq.pipeline" not in imported and "trtq.eval.sam_eval" in imported
