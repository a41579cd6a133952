"""Helpers shared by the subcommands."""

from __future__ import annotations

import json
from pathlib import Path

from trtq.errors import DataError


def progress(iterable, enabled: bool, total: int | None = None, desc: str = ""):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img")


def read_json(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not valid JSON ({exc})") from None


def checkpoint_record(model_name: str, checkpoint: str | None) -> dict:
    """Which weights a torch-side result used: model name, file and SHA-256."""
    from trtq.artifacts import sha256_file
    from trtq.models import get_spec
    from trtq.models.checkpoints import resolve_asset

    spec = get_spec(model_name)
    if spec.weights is not None:
        path = resolve_asset(spec.weights, checkpoint)
    elif checkpoint is not None:
        path = Path(checkpoint)
    else:
        return {"model": model_name, "checkpoint": None, "checkpoint_sha256": None}
    return {"model": model_name, "checkpoint": str(path), "checkpoint_sha256": sha256_file(path)}
