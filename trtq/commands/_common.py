"""Helpers shared by the subcommands."""

from __future__ import annotations

import json
from pathlib import Path

from trtq.errors import DataError


def read_json(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not valid JSON ({exc})") from None


def require_sam_model(name: str, command: str) -> None:
    """Refuse an unknown model name, a user's own model and a classifier where only SAM-family
    models work."""
    from trtq.models import get_spec
    from trtq.models.classifiers import is_classifier
    from trtq.models.user_model import is_user_reference

    if is_user_reference(name):
        raise DataError(f"--model {name} is your own model; `trtq {command}` works on "
                        "SAM-family models only (box prompts, masks). Your model works with "
                        "`trtq calibrate`, `trtq export` and `trtq inspect --recipe` (and "
                        "`trtq classify` for a classifier with a preprocess)")
    get_spec(name)
    if is_classifier(name):
        raise DataError(f"{name} is an image classifier; `trtq {command}` works on SAM-family "
                        "models only (measure a classifier with `trtq classify`)")
