"""`trtq build` on the command line: folder builds, trtexec lines per release, one-line errors."""

from __future__ import annotations

import pytest

from trtq.cli import main


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trtq: error: ") and "\n" not in err, err
    return err


def test_folder_build_writes_each_part(trt, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "engines"
    assert main(["build", "--onnx", str(tiny_onnx), "--out", str(out), "--precision", "fp32",
                 "--shapes", "boxes:1x4:2x4:4x4", "--engine-info"]) == 0
    text = capsys.readouterr().out
    for part in ("encoder", "decoder"):
        assert (out / f"{part}.fp32.engine").stat().st_size > 1_000_000
        assert (out / f"{part}.fp32.engine.json").is_file()
        assert f"built {out / f'{part}.fp32.engine'}: " in text
    assert text.count("layers by output") == 2
    (out / "encoder.fp32.engine").unlink()  # only the decoder's engine is left in the way
    assert _error(capsys, ["build", "--onnx", str(tiny_onnx), "--out", str(out),
                           "--precision", "fp32"]).endswith("pass --force to overwrite it")
    assert not (out / "encoder.fp32.engine").exists()  # refused before building anything


@pytest.mark.parametrize("release, expected, absent", [
    ("8.6", ["--int8 --fp16", "--staticPlugins=", "--skipInference",
             "--memPoolSize=workspace:512"], ["--stronglyTyped"]),
    ("10.3", ["--int8 --fp16", "--staticPlugins=", "--skipInference"], ["--stronglyTyped"]),
    ("11.4", ["--staticPlugins=", "--skipInference"], ["--int8", "--fp16", "--stronglyTyped"]),
])
def test_print_trtexec_per_release(tiny_qdq, tmp_path, capsys, release, expected, absent):
    lib = tmp_path / "liblogquant.so"
    lib.write_bytes(b"\x7fELF")
    assert main(["build", "--onnx", str(tiny_qdq["tensorrt"]), "--out", str(tmp_path / "e"),
                 "--print-trtexec", "--trt-version", release, "--workspace", "512",
                 "--plugins", str(lib)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trtexec")]
    assert len(lines) == 2  # encoder and decoder
    for flag in expected:
        assert all(flag in line for line in lines), (flag, lines)
    for flag in absent:
        assert not any(flag in line for line in lines), (flag, lines)
    assert "--minShapes=boxes:1x4 --optShapes=boxes:1x4 --maxShapes=boxes:16x4" in lines[1]
    assert not (tmp_path / "e").exists()  # printing builds nothing


def test_fp16_on_11_prints_the_converted_onnx(tiny_onnx, tmp_path, capsys):
    assert main(["build", "--onnx", str(tiny_onnx / "encoder.onnx"), "--out",
                 str(tmp_path / "encoder.fp16.engine"), "--print-trtexec",
                 "--trt-version", "11.4"]) == 0
    out = capsys.readouterr().out
    assert f"--onnx={tmp_path / 'encoder.fp16.onnx'}" in out and "--fp16" not in out


def test_user_errors_are_one_line(tiny_onnx, tmp_path, capsys):
    assert "no Q/DQ nodes" in _error(capsys, ["build", "--onnx", str(tiny_onnx), "--out",
                                              str(tmp_path / "e"), "--precision", "int8"])
    assert "--out must be a folder" in _error(capsys, ["build", "--onnx", str(tiny_onnx),
                                                       "--out", str(tmp_path / "x.engine")])
    assert "only names the release for --print-trtexec" in _error(
        capsys, ["build", "--onnx", str(tiny_onnx), "--out", str(tmp_path / "e"),
                 "--trt-version", "10.3"])
    assert "does not exist; run `trtq export` first" in _error(
        capsys, ["build", "--onnx", str(tmp_path / "nope.onnx"), "--out", str(tmp_path / "e")])
    assert "NAME:MIN:OPT:MAX" in _error(capsys, ["build", "--onnx", str(tiny_onnx), "--out",
                                                 str(tmp_path / "e"), "--shapes", "boxes:1x4"])
    assert "DLA" in _error(capsys, ["build", "--onnx", str(tiny_onnx), "--out",
                                    str(tmp_path / "e"), "--print-trtexec", "--trt-version",
                                    "11.2", "--dla", "0"])
