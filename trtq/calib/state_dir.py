"""A `trtq calibrate` output folder: DIR/quant_state.pt and its sidecar, loaded onto a model."""

from __future__ import annotations

import os
from pathlib import Path

from trtq.artifacts import read_sidecar
from trtq.calib.calibrate import load_quant_state, retarget
from trtq.errors import ArtifactError

STATE_FILE = "quant_state.pt"


def state_path(calibrated_dir: str | os.PathLike) -> Path:
    path = Path(calibrated_dir) / STATE_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; run `trtq calibrate --out "
                            f"{calibrated_dir}` first")
    return path


def load_calibrated(model, model_name: str, calibrated_dir: str | os.PathLike,
                    target: str | None = None, float_attention: bool = False):
    """Apply a calibration folder to `model` (built as `model_name`), optionally retargeted.
    Returns (recipe, sidecar record)."""
    path = state_path(calibrated_dir)
    record = read_sidecar(path)
    if record.get("model") != model_name:
        raise ArtifactError(f"{calibrated_dir} was calibrated for {record.get('model')!r}, not "
                            f"{model_name!r}; pass --model {record.get('model')}")
    recipe = load_quant_state(model, path)
    if target is not None and (target != recipe.target or float_attention):
        recipe = retarget(model, recipe, target, float_attention)
    return recipe, record
