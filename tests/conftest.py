"""Shared fixtures: the real LiteMedSAM checkpoint, the shared datasets, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI checks the project out with `shared/` beside it; tests read the datasets from there.
SHARED_DATASETS = Path(os.environ.get("TRTQ_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


# .ci/run sets TRTQ_CI=1: there a missing shared dataset is a broken checkout, not a reason
# to skip the tests that measure the real model on real images.
REQUIRE_SHARED = os.environ.get("TRTQ_CI") == "1"


def dataset_root(name: str) -> Path:
    root = SHARED_DATASETS / name
    if not (root / "annotations").is_dir():
        message = f"shared dataset {root} is absent (expected beside the repository)"
        if REQUIRE_SHARED:
            pytest.fail(message + "; CI needs it (TRTQ_CI=1)")
        pytest.skip(message)
    return root


def write_synthetic_coco(root: Path, splits: dict[str, int], side: int = 96) -> Path:
    """A small COCO-format dataset built from the sample photographs bundled with scikit-image
    (no ../shared needed): each image downscaled to `side` pixels on its long side, with one
    or two elliptical instances written as polygons. `splits` maps split name → image count."""
    import json

    import numpy as np
    from PIL import Image

    from trtq.data.samples import sample_image_paths

    photos = sample_image_paths()
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id, used = 1, 0
    for split, count in splits.items():
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            with Image.open(photos[used % len(photos)]) as photo:
                photo = photo.convert("RGB")
                scale = side / max(photo.size)
                w, h = max(8, round(photo.width * scale)), max(8, round(photo.height * scale))
                name = f"{split}_{image_id}.png"
                photo.resize((w, h)).save(root / split / name)
            used += 1
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
            for k in range(1 + image_id % 2):
                cx, cy = w * (0.35 + 0.3 * k), h * (0.4 + 0.2 * k)
                t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
                xs, ys = cx + w * 0.18 * np.cos(t), cy + h * 0.14 * np.sin(t)
                polygon = np.stack([xs, ys], 1).round(2).ravel().tolist()
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": 1,
                                    "segmentation": [polygon], "iscrowd": 0, "area": 1.0,
                                    "bbox": [min(xs), min(ys), max(xs) - min(xs),
                                             max(ys) - min(ys)]})
                ann_id += 1
        record = {"images": images, "annotations": annotations,
                  "categories": [{"id": 1, "name": "object"}]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(record))
    return root


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory) -> Path:
    """COCO splits `calib` (4 images) and `val` (3 images) from the bundled sample photos: the
    calibration and evaluation data of every tiny-model test (none of them reads ../shared)."""
    return write_synthetic_coco(tmp_path_factory.mktemp("synthetic_coco"), {"calib": 4, "val": 3})


@pytest.fixture(scope="session")
def synthetic_calib6(tmp_path_factory) -> Path:
    """One COCO split `calib` of 6 sample photos: calibration and held-out images of one split
    (`trtq autoquant`)."""
    return write_synthetic_coco(tmp_path_factory.mktemp("synthetic_calib6"), {"calib": 6})


@pytest.fixture(scope="session")
def busi() -> Path:
    return dataset_root("busi")


@pytest.fixture(scope="session")
def tiny_coco() -> Path:
    return dataset_root("tiny_coco")


@pytest.fixture(scope="session")
def litemedsam():
    """The real LiteMedSAM model (checkpoint fetched once into the trtq cache and verified)."""
    from trtq.models import load_model

    return load_model("litemedsam")


@pytest.fixture(scope="session")
def litemedsam_onnx(litemedsam, tmp_path_factory) -> Path:
    """FP32 ONNX export of the real LiteMedSAM, shared by the tests that need it."""
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.models import checkpoint_provenance

    out = tmp_path_factory.mktemp("litemedsam_onnx")
    sha = checkpoint_provenance("litemedsam", None)["checkpoint_sha256"]
    export_fp32(litemedsam, ExportSpec("litemedsam", sha), out)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.models import load_model

    out = tmp_path_factory.mktemp("tiny_onnx")
    export_fp32(load_model("tiny_litemedsam"), ExportSpec("tiny_litemedsam"), out)
    return out


def calibrate_into(model_name: str, out: Path, data: Path, split: str, images: int,
                   observer: str = "percentile", recipe_name: str = "w8a8") -> Path:
    """Calibrate a fresh `model_name` with `recipe_name` into `out`, as `trtq calibrate` does
    (the same library call: `trtq.calib.state_dir.calibrate_to_dir`)."""
    from trtq.calib.state_dir import CalibSource, calibrate_to_dir
    from trtq.data.calibration import calibration_samples
    from trtq.models import adapter_for, load_model
    from trtq.recipes import get_recipe

    recipe = get_recipe(recipe_name, adapter_for(model_name).rules)
    recipe = recipe.with_activation_observer(observer)
    calibrate_to_dir(load_model(model_name), model_name, recipe,
                     calibration_samples(data, split, images), out,
                     source=CalibSource(str(data), split))
    return out


def export_calibrated(model_name: str, calibrated: Path, out: Path, target: str = "tensorrt",
                      logquant: str = "onnx") -> Path:
    """Export a calibration folder as `trtq export --calibrated` does (same calibration id)."""
    from dataclasses import replace

    from trtq.calib.state_dir import load_calibrated
    from trtq.export.onnx_fp32 import ExportSpec
    from trtq.export.onnx_qdq import export_quantized
    from trtq.models import load_model

    model = load_model(model_name)
    recipe, record = load_calibrated(model, model_name, calibrated, target)
    spec = replace(ExportSpec(model_name), calibration_id=record["calibration_id"])
    export_quantized(model, recipe, spec, out, target, logquant=logquant)
    return out


@pytest.fixture(scope="session")
def tiny_calibrated(synthetic_coco, tmp_path_factory) -> Path:
    """A calibration folder for tiny_litemedsam (2 synthetic calib images, percentile)."""
    return calibrate_into("tiny_litemedsam", tmp_path_factory.mktemp("tiny_cal"), synthetic_coco,
                          "calib", 2)


@pytest.fixture(scope="session")
def tiny_qdq(tiny_calibrated, tmp_path_factory) -> dict[str, Path]:
    """INT8 Q/DQ exports of tiny_litemedsam for both targets: {target: folder}."""
    return {target: export_calibrated("tiny_litemedsam", tiny_calibrated,
                                      tmp_path_factory.mktemp(f"tiny_qdq_{target}"), target)
            for target in ("tensorrt", "onnxruntime")}


@pytest.fixture(scope="session")
def litemedsam_calibrated(busi, tmp_path_factory) -> Path:
    """The real LiteMedSAM calibrated with w8a8 on 4 busi/calib images (percentile)."""
    return calibrate_into("litemedsam", tmp_path_factory.mktemp("lm_cal"), busi, "calib", 4)


@pytest.fixture(scope="session")
def litemedsam_qdq(litemedsam_calibrated, tmp_path_factory) -> Path:
    """TensorRT-target INT8 Q/DQ export of the real LiteMedSAM."""
    return export_calibrated("litemedsam", litemedsam_calibrated,
                             tmp_path_factory.mktemp("lm_qdq"))


@pytest.fixture(scope="session")
def tiny_ptq4sam(synthetic_coco, tmp_path_factory) -> Path:
    """tiny_litemedsam-bimodal calibrated with w8a8-ptq4sam (BIG + AGQ) on 2 synthetic images."""
    return calibrate_into("tiny_litemedsam-bimodal", tmp_path_factory.mktemp("tiny_p4s"),
                          synthetic_coco,
                          "calib", 2, recipe_name="w8a8-ptq4sam")


@pytest.fixture(scope="session")
def tiny_ptq4sam_qdq(tiny_ptq4sam, tmp_path_factory) -> dict[str, Path]:
    """Its TensorRT-target exports, with LogQuant as standard ops and as plugin nodes."""
    return {form: export_calibrated("tiny_litemedsam-bimodal", tiny_ptq4sam,
                              tmp_path_factory.mktemp(f"tiny_p4s_{form}"), logquant=form)
            for form in ("onnx", "plugin")}


@pytest.fixture(scope="session")
def litemedsam_ptq4sam(busi, tmp_path_factory) -> Path:
    """The real LiteMedSAM calibrated with w8a8-ptq4sam on 2 busi/calib images."""
    return calibrate_into("litemedsam", tmp_path_factory.mktemp("lm_p4s"), busi, "calib", 2,
                          recipe_name="w8a8-ptq4sam")


@pytest.fixture(scope="session")
def litemedsam_ptq4sam_qdq(litemedsam_ptq4sam, tmp_path_factory) -> Path:
    """Its TensorRT-target export with LogQuant as standard ops."""
    return export_calibrated("litemedsam", litemedsam_ptq4sam,
                             tmp_path_factory.mktemp("lm_p4s_qdq"))


@pytest.fixture(scope="session")
def tiny_ptq4vit_deploy(synthetic_coco, tmp_path_factory) -> Path:
    """tiny_litemedsam calibrated with w8a8-ptq4vit-deploy (Hessian search, shifted
    asymmetric post-GELU/ReLU Linear inputs) on 2 synthetic images."""
    return calibrate_into("tiny_litemedsam", tmp_path_factory.mktemp("tiny_p4v"), synthetic_coco,
                          "calib", 2, recipe_name="w8a8-ptq4vit-deploy")


@pytest.fixture(scope="session")
def tiny_ptq4vit_deploy_qdq(tiny_ptq4vit_deploy, tmp_path_factory) -> Path:
    """Its TensorRT-target Q/DQ export."""
    return export_calibrated("tiny_litemedsam", tiny_ptq4vit_deploy,
                       tmp_path_factory.mktemp("tiny_p4v_qdq"))


@pytest.fixture(scope="session")  # session: skip before the session-scoped exports run
def trt():
    """Real TensorRT where it can create a Builder (GPU), else TensorRT-RTX (builds ahead of
    time on the CPU); the test is skipped with the reason when neither can."""
    from trtq.engines.tensorrt_api import import_tensorrt, shared_logger
    from trtq.errors import BackendError

    try:
        module = import_tensorrt()
    except BackendError as exc:
        pytest.skip(str(exc))
    try:
        module.Builder(shared_logger(module))
    except (TypeError, RuntimeError) as exc:  # real TensorRT on a machine without a GPU
        pytest.skip(f"{module.__name__} cannot create a Builder here: {exc}")
    return module


@pytest.fixture(scope="session")
def calibrate_export():
    """calibrate_export(model_name, recipe_name, data, out, images=1) -> TensorRT Q/DQ folder."""

    def run(model_name: str, recipe_name: str, data: Path, out: Path, images: int = 1) -> Path:
        (out / "cal").mkdir(parents=True)
        calibrated = calibrate_into(model_name, out / "cal", data, "calib", images,
                                    recipe_name=recipe_name)
        return export_calibrated(model_name, calibrated, out / "onnx")

    return run
