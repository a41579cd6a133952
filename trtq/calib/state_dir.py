"""A calibration folder: DIR/quant_state.pt and its sidecar, written and loaded.

`calibrate_to_dir` is the one way trtq calibrates and saves (`trtq calibrate`, `trtq run` and
the tests all use it), so every folder has the same sidecar:

    schema_version, kind "quant_state", file, sha256, created_utc, versions,
    inputs {"checkpoint": SHA-256} (when the model has a weights file),
    model, calibration_id, recipe (the recipe's dict), recipe_sha256, deployable, target,
    calib_data, split, images, boxes, image_files,
    quantizers_on, seconds, peak_rss_mib, big, logquant, search

`calibration_id` (the first 16 hex digits of the quant state's SHA-256) is copied into every
ONNX sidecar exported from the folder and from there into engine sidecars, so an encoder and a
decoder from different calibrations are recognised as a mismatched pair.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from trtq.artifacts import calibration_id, read_sidecar, sha256_file, sidecar_path, write_sidecar
from trtq.errors import ArtifactError

STATE_FILE = "quant_state.pt"
STATE_KIND = "quant_state"
STATE_NAMES = (STATE_FILE, f"{STATE_FILE}.json")


@dataclass(frozen=True)
class CalibSource:
    """Where the calibration data came from, for the sidecar."""

    data: str  # an image folder, a COCO root, or a description ("bundled sample images")
    split: str | None = None
    image_files: tuple[str, ...] = ()  # names of the images used, when known


def state_path(calibrated_dir: str | os.PathLike) -> Path:
    path = Path(calibrated_dir) / STATE_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; run `trtq calibrate --out "
                            f"{calibrated_dir}` first")
    return path


def _summary(model, samples, source: CalibSource) -> dict:
    from trtq.calib.modules import logquant_params, quantizers

    listed = isinstance(samples, list)
    boxes = (int(sum(len(s.boxes) for s in samples if s.boxes is not None)) if listed else None)
    return {"calib_data": source.data, "split": source.split,
            "images": len(samples) if hasattr(samples, "__len__") else None, "boxes": boxes,
            "image_files": list(source.image_files) or None,
            "quantizers_on": sum(1 for _, q in quantizers(model) if q.enabled),
            "big": getattr(model, "trtq_big_report", None), "logquant": logquant_params(model),
            "search": getattr(model, "trtq_search_report", None)}


def calibrate_to_dir(model, model_name: str, recipe, samples, out: str | os.PathLike, *,
                     source: CalibSource, checkpoint_sha256: str | None = None,
                     force: bool = False, progress=None) -> dict:
    """Calibrate `model` (built as `model_name`) with `recipe` on `samples` (CalibSamples, a
    calibration task, or a forward loop) and write `out/quant_state.pt` + sidecar as one
    transaction: a failure or a kill leaves no partial folder. Refuses an existing state
    without `force` before calibrating. Returns the sidecar record."""
    from trtq.calib.calibrate import calibrate
    from trtq.staging import check_folder_outputs, staged_folder
    from trtq.system import peak_rss_mib

    check_folder_outputs(out, STATE_NAMES, force)
    with staged_folder(out, STATE_NAMES, force) as stage:
        start = time.perf_counter()
        calibrate(model, recipe, samples, progress=progress)
        extra = {**_summary(model, samples, source), "seconds": time.perf_counter() - start,
                 "peak_rss_mib": peak_rss_mib()}
        _write_state(stage, model, model_name, recipe, extra, checkpoint_sha256)
    return read_sidecar(Path(out) / STATE_FILE)


def _write_state(folder: Path, model, model_name: str, recipe, extra: dict,
                 checkpoint_sha256: str | None) -> None:
    from trtq.calib.calibrate import save_quant_state

    inputs = {"checkpoint": checkpoint_sha256} if checkpoint_sha256 else {}
    record = {"model": model_name, "calibration_id": None, "recipe": recipe.to_dict(),
              "recipe_sha256": recipe.sha256(), "deployable": recipe.deployable,
              "target": recipe.target, **extra}
    state = folder / STATE_FILE
    save_quant_state(model, recipe, state)
    record["calibration_id"] = sha256_file(state)[:16]
    write_sidecar(state, STATE_KIND, inputs, record)


def save_calibrated(model, model_name: str, recipe, folder: str | os.PathLike, extra: dict,
                    checkpoint_sha256: str | None = None) -> dict:
    """Write an already calibrated `model` (its quantizers as `recipe` now describes them) as a
    calibration folder's state + sidecar into the existing `folder` (a staging folder: the
    caller makes the whole output transactional). `extra` joins the sidecar, with the count of
    quantizers on."""
    from trtq.calib.modules import quantizers

    on = sum(1 for _, q in quantizers(model) if q.enabled)
    _write_state(Path(folder), model, model_name, recipe, {**extra, "quantizers_on": on},
                 checkpoint_sha256)
    return read_sidecar(Path(folder) / STATE_FILE)


def calibration_record(calibrated_dir: str | os.PathLike, model_name: str) -> dict:
    """The checked sidecar of the calibration folder `calibrated_dir`, made for the model
    `model_name`, with its `calibration_id`."""
    path = state_path(calibrated_dir)
    if not sidecar_path(path).is_file():
        raise ArtifactError(f"{sidecar_path(path)} is missing, so {calibrated_dir} is not a "
                            "`trtq calibrate` folder; calibrate again into a new --out")
    record = read_sidecar(path)
    if record.get("kind") != STATE_KIND:
        raise ArtifactError(f"{sidecar_path(path)} describes a {record.get('kind')!r}, not a "
                            "quant state; calibrate again into a new --out")
    if record.get("model") != model_name:
        raise ArtifactError(f"{calibrated_dir} was calibrated for {record.get('model')!r}, not "
                            f"{model_name!r}; pass --model {record.get('model')}")
    return {**record, "calibration_id": calibration_id(record)}


def load_calibrated(model, model_name: str, calibrated_dir: str | os.PathLike,
                    target: str | None = None, float_attention: bool = False, *,
                    model_rules=None):
    """Apply a calibration folder to `model` (built as `model_name`), optionally retargeted
    with `model_rules` (default: the rules of the adapter `model_name` names,
    `trtq.models.adapters.adapter_for`). Returns (recipe, sidecar record); the record always
    has its `calibration_id`."""
    from trtq.calib.calibrate import load_quant_state, retarget

    record = calibration_record(calibrated_dir, model_name)
    recipe = load_quant_state(model, state_path(calibrated_dir))
    if target is not None and (target != recipe.target or float_attention):
        if model_rules is None:
            from trtq.models.adapters import adapter_for

            model_rules = adapter_for(model_name).rules
        recipe = retarget(model, recipe, target, float_attention, model_rules=model_rules)
    return recipe, record
