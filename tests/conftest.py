"""Shared fixtures: the real LiteMedSAM checkpoint, the shared datasets, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI checks the project out with `shared/` beside it; tests read the datasets from there.
SHARED_DATASETS = Path(os.environ.get("TRTQ_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def dataset_root(name: str) -> Path:
    root = SHARED_DATASETS / name
    if not (root / "annotations").is_dir():
        pytest.skip(f"shared dataset {root} is absent (expected beside the repository)")
    return root


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
