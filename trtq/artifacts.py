"""Artifacts on disk: atomic writes, no silent overwrites, and JSON sidecars.

Every artifact trtq writes (ONNX files, engines, reports) goes through `atomic_output`, which
writes to a temporary file beside the target and renames it into place only when the writer
succeeded, so a crash never leaves a half-written file under the final name. A target that
already exists is refused unless `force=True`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from trtq.errors import ArtifactError

SIDECAR_SCHEMA_VERSION = 1
_VERSIONED_PACKAGES = ("trtq", "torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing file unless `force` is set; create the parent folder."""
    target = Path(path)
    if target.exists() and not force:
        raise ArtifactError(f"{target} already exists; pass --force to overwrite it")
    if target.exists() and target.is_dir():
        raise ArtifactError(f"{target} is a directory; give a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    target = check_writable(path, force)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are shared (scp to a Jetson, CI)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    with atomic_output(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, force: bool = False) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", force)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (absent ones are skipped)."""
    versions = {}
    for name in _VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.json")


def write_sidecar(
    path: str | os.PathLike,
    kind: str,
    inputs: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write `<path>.json` describing the artifact at `path`.

    `inputs` maps each input artifact's role to its SHA-256; `extra` holds stage-specific fields
    (model name, recipe and its hash, device, ...).
    """
    record = {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "kind": kind,
        "file": Path(path).name,
        "sha256": sha256_file(path),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "inputs": dict(inputs or {}),
        **dict(extra or {}),
    }
    return write_json(sidecar_path(path), record, force=force)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check the sidecar of an artifact: it must exist and match the file's hash."""
    side = sidecar_path(path)
    if not side.is_file():
        raise ArtifactError(f"{side} is missing; re-create {path} with trtq so it has a sidecar")
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{side} is not valid JSON ({exc}); re-create {path}") from exc
    if record.get("sha256") != sha256_file(path):
        raise ArtifactError(
            f"{path} does not match its sidecar {side} (file changed); re-create it"
        )
    return record
