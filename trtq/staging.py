"""Multi-file outputs written as one transaction.

    with staged_folder(out, names=("quant_state.pt", "quant_state.pt.json"), force) as stage:
        ...write every file under stage...
    # now out/ holds all of them, or (error, Ctrl-C, SIGTERM) none of them

While the block runs, files go to a hidden sibling `<parent>/.<name>.partial-<pid>-<random>/`,
so nothing appears under the final name until every file is written. At the end:
- `out` absent or an empty folder: one rename of the staging folder onto it (atomic);
- `out` an existing folder (`trtq calibrate --out` into a folder that holds other files): each
  staged entry is renamed into it, after checking that none is in the way without `force`;
- `replace=True` (`trtq run`): an existing `out` is renamed aside, the staging folder takes its
  name, and the old folder is removed.
On an exception the staging folder is removed (and any parent folders it had to create). A
process killed outright leaves its staging folder behind; the next staged write beside the
same target removes the staging folders of processes that no longer run, and a leftover never
blocks a rerun because every run stages under its own name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from trtq.artifacts import (
    check_parent,
    check_writable,
    make_parents,
    remove_folders,
    remove_stale,
)
from trtq.errors import ArtifactError

log = logging.getLogger("trtq")


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def check_folder_outputs(out: str | os.PathLike, names: Iterable[str], force: bool) -> Path:
    """Refuse, before any work, an `out` that is a file, whose folder cannot be created, or
    that already holds one of `names` (without `force`)."""
    out = Path(out)
    if os.path.lexists(out) and not out.is_dir():
        raise ArtifactError(f"--out {out} is a file; give a folder path")
    check_parent(out)
    if out.is_dir():
        for name in names:
            check_writable(out / name, force)
    return out


def _merge(stage: Path, out: Path, force: bool) -> None:
    entries = sorted(stage.iterdir())
    for entry in entries:  # check them all before moving any
        target = out / entry.name
        if os.path.lexists(target) and (not force or target.is_dir() or entry.is_dir()):
            raise ArtifactError(f"{target} already exists; pass --force to overwrite it")
    for entry in entries:
        os.replace(entry, out / entry.name)
    stage.rmdir()


def _swap(stage: Path, out: Path) -> None:
    old = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(out)}{os.getpid()}-old-",
                                dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def _commit(stage: Path, out: Path, force: bool, replace: bool) -> None:
    if not os.path.lexists(out):
        os.replace(stage, out)
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        os.replace(stage, out)
    elif replace:
        _swap(stage, out)
    else:
        _merge(stage, out, force)


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, names: Iterable[str] = (), force: bool = False,
                  replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder whose entries become `out`'s when the block succeeds.
    `names`: the files the block will write (checked before it runs)."""
    out = check_folder_outputs(out, names, force)
    created = make_parents(out)
    remove_stale(out.parent, _partial_prefix(out))
    stage = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(out)}{os.getpid()}-",
                                  dir=out.parent))
    os.chmod(stage, 0o755)  # mkdtemp makes 0700; the result is shared like any artifact
    try:
        yield stage
        _commit(stage, out, force, replace)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        remove_folders(created)
        raise
    log.debug("committed %s", out)
