"""Shared by the driver scripts: run trtq commands and other experiments/ scripts in child
processes, as a user would type them, and keep the list of what ran (stored under "steps"
in the results JSON, beside the provenance block)."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from _provenance import provenance, save_results

HERE = Path(__file__).resolve().parent


class Steps:
    """The commands run so far, shown as typed (`trtq ...`, `python experiments/...`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _run(self, shown: list[str], argv: list[str]) -> None:
        self.lines.append(shlex.join(shown))
        print("+", self.lines[-1], flush=True)
        subprocess.run(argv, check=True)

    def trtq(self, *args: str) -> None:
        self._run(["trtq", "-q", *args], [sys.executable, "-m", "trtq", "-q", *args])

    def script(self, name: str, *args: str) -> None:
        self._run(["python", f"experiments/{name}", *args],
                  [sys.executable, str(HERE / name), *args])


@contextlib.contextmanager
def work_dir(path: Path | None, prefix: str) -> Iterator[Path]:
    """`path` (created) when given, else a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = path or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


def read_keys(path: Path, keys: tuple[str, ...]) -> dict:
    """The given top-level keys of a JSON file (those present)."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: record[k] for k in keys if k in record}


def without_provenance(path: Path) -> dict:
    """A child script's results, minus its own provenance (the driver's block covers it)."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: v for k, v in record.items() if k != "provenance"}


def run_and_save(args, prefix: str, measure: Callable[..., dict]) -> None:
    """`measure(args, work, steps)` in `args.work` (or a temporary folder), then the results
    JSON at `args.out`: provenance, the arguments, the steps run, and what `measure` returned."""
    block = provenance()
    steps = Steps()
    with work_dir(args.work, prefix) as work:
        results = measure(args, work, steps)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    save_results(args.out, {"config": config, "steps": steps.lines, **results}, block)
    print(f"wrote {args.out}")
