"""Artifacts on disk: atomic writes, no silent overwrites, and JSON sidecars.

Every artifact trtq writes (ONNX files, engines, reports) goes through `atomic_output`, which
writes to a temporary file beside the target and renames it into place only when the writer
succeeded, so a crash never leaves a half-written file under the final name. A target that
already exists is refused unless `force=True`; nothing is created before the write (a refused
or failed command leaves no empty folder). Multi-file outputs go through `trtq.staging`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import hashlib
import json
import math
import os
import shutil
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


def check_parent(target: Path) -> None:
    """Refuse a path that cannot be created: its nearest existing ancestor must be a writable
    folder. Nothing is created here."""
    for ancestor in target.absolute().parents:
        if not os.path.lexists(ancestor):
            continue
        if not ancestor.is_dir():
            raise ArtifactError(f"cannot write {target}: {ancestor} is a file, not a folder; "
                                "choose another --out")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ArtifactError(f"cannot write {target}: {ancestor} is not writable; choose "
                                "another --out or change its permissions")
        return


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing file unless `force` is set, and a path whose folder cannot
    be created. Creates nothing (`atomic_output` makes the folders when it writes)."""
    target = Path(path)
    if target.is_dir():
        raise ArtifactError(f"{target} is a folder; give a file path")
    if os.path.lexists(target) and not force:
        raise ArtifactError(f"{target} already exists; pass --force to overwrite it")
    check_parent(target)
    return target


def make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path`; returns them, outermost first."""
    missing = [p for p in reversed(path.absolute().parents) if not p.exists()]
    for folder in missing:
        folder.mkdir(exist_ok=True)
    return missing


def remove_folders(created: list[Path]) -> None:
    """Undo `make_parents`: remove the folders it created, innermost first, if still empty."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale(folder: Path, prefix: str) -> None:
    """Remove `folder/<prefix><pid>...` entries left by processes that no longer run (a temp
    file or staging folder of a killed trtq)."""
    with contextlib.suppress(OSError):
        for entry in folder.glob(f"{glob.escape(prefix)}*"):
            pid = entry.name[len(prefix):].split(".", 1)[0].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.
    The temporary name carries the process id, so a later write of the same file removes
    the temp file of a killed process."""
    target = check_writable(path, force)
    created = make_parents(target)
    prefix = f".{target.name}.tmp-"
    remove_stale(target.parent, prefix)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".tmp",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are shared (scp to a Jetson, CI)
    done = False
    try:
        yield tmp
        os.replace(tmp, target)
        done = True
    finally:
        tmp.unlink(missing_ok=True)
        if not done:
            remove_folders(created)


def write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    with atomic_output(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def non_finite(data: Any, where: str = "") -> str | None:
    """The location (e.g. `per_instance[3].iou`) of the first NaN or infinity in `data`."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "the value"
    items = (data.items() if isinstance(data, Mapping) else
             enumerate(data) if isinstance(data, (list, tuple)) else ())
    for key, value in items:
        found = non_finite(value, f"{where}[{key}]" if isinstance(key, int) else
                           f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def write_json(path: str | os.PathLike, data: Any, force: bool = False) -> Path:
    """Write `data` as JSON; NaN and infinities are refused (they are not JSON, and a result
    holding one is wrong)."""
    bad = non_finite(data)
    if bad:
        raise ArtifactError(f"refusing to write {path}: {bad} is not a finite number (NaN or "
                            "infinity: an empty input, or a model that outputs NaN); check the "
                            "data, the counts and the model")
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n", force)


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
    companions: tuple[str, ...] = (),
) -> Path:
    """Write `<path>.json` describing the artifact at `path`.

    `inputs` maps each input artifact's role to its SHA-256; `extra` holds stage-specific fields
    (model name, recipe and its hash, device, ...). `companions` name files beside `path` that
    belong to it (an ONNX graph's external weights): their hashes are recorded and checked too.
    """
    folder = Path(path).parent
    record = {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "kind": kind,
        "file": Path(path).name,
        "sha256": sha256_file(path),
        **({"companions": {name: sha256_file(folder / name) for name in companions}}
           if companions else {}),
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
    for name, digest in (record.get("companions") or {}).items():
        companion = Path(path).parent / name
        if not companion.is_file() or sha256_file(companion) != digest:
            state = "changed" if companion.is_file() else "missing"
            raise ArtifactError(f"{companion}, which belongs to {path}, is {state} since its "
                                "sidecar was written; copy the files together or re-create them")
    return record


def calibration_id(record: Mapping[str, Any]) -> str | None:
    """The calibration an artifact comes from: a quant state sidecar's `calibration_id` (older
    sidecars: the first 16 hex digits of the quant state's SHA-256), an export's or engine's
    copy of it, or None for float artifacts."""
    if record.get("kind") == "quant_state":
        return record.get("calibration_id") or str(record.get("sha256", ""))[:16] or None
    return record.get("calibration_id")


def _origin(record: Mapping[str, Any]) -> str:
    precision = str(record.get("precision") or record.get("onnx_precision") or "?").upper()
    ident = record.get("calibration_id")
    return f"{precision} from calibration {ident}" if ident else f"{precision} (no calibration id)"


def check_pair(folder: str | os.PathLike, encoder: Mapping[str, Any],
               decoder: Mapping[str, Any]) -> None:
    """Refuse an encoder and decoder (ONNX or engine sidecars) that do not come from one export:
    different calibrations, or one FP32 and one INT8."""
    def identity(record: Mapping[str, Any]) -> tuple:
        return (record.get("precision") or record.get("onnx_precision"),
                record.get("calibration_id"))

    if identity(encoder) != identity(decoder):
        raise ArtifactError(
            f"{folder}: the encoder is {_origin(encoder)} but the decoder is {_origin(decoder)}; "
            "a pair must come from one `trtq export` - re-export both into one folder "
            "(trtq export --calibrated DIR --out NEW_DIR)")


def export_pair(folder: str | os.PathLike) -> dict[str, dict] | None:
    """The sidecars of `folder/encoder.onnx` and `folder/decoder.onnx`, checked to be one pair;
    None unless both files have sidecars (a hand-made ONNX pair is taken as it is)."""
    root = Path(folder)
    paths = {part: root / f"{part}.onnx" for part in ("encoder", "decoder")}
    if not all(sidecar_path(p).is_file() and p.is_file() for p in paths.values()):
        return None
    records = {part: read_sidecar(path) for part, path in paths.items()}
    check_pair(root, records["encoder"], records["decoder"])
    return records
