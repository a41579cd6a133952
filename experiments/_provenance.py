"""Provenance of a measurement: what ran, from which commit, when, and on what machine.

Every script in experiments/ stores `provenance()` under the "provenance" key of the results
JSON it writes, so that a figure in the README or docs/ can be traced to its command and code:

    {"command": "python experiments/fp32_reference.py --out ...", "argv": [...], "cwd": "...",
     "commit": "<git rev-parse HEAD>", "dirty": false, "date_utc": "2026-...Z",
     "machine": {"cpu": ..., "cores": ..., "ram_gib": ..., "os": ..., "python": ...,
                 "packages": {"torch": ..., "onnxruntime": ..., ...}, "gpu": ...,
                 "load_average": [1 min, 5 min, 15 min], "nice": niceness}}

`dirty` is true when tracked files differ from the commit (untracked files, such as the
results being written, do not count); `commit` is null outside a git checkout.

Shell scripts use the command line, which gathers finished JSON files under one results file:

    python experiments/_provenance.py --command "$0 $*" --out RESULTS.json \\
        [--keep KEY ...] [NAME=FILE.json ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("trtq", "torch", "onnxruntime", "onnx", "numpy", "tensorrt", "tensorrt_rtx")
REQUIRED_KEYS = ("command", "commit", "date_utc", "machine")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict:
    """{"commit": HEAD's hash or None, "dirty": whether tracked files differ from it}."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _ram_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (empty on a machine without an NVIDIA driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _version(package: str) -> str | None:
    names = {"tensorrt_rtx": "tensorrt-rtx-cu13-bindings"}
    try:
        return metadata.version(names.get(package, package))
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    from trtq.system import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "ram_gib": _ram_gib(),
            "os": platform.platform(), "python": platform.python_version(),
            "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
            "gpu": _gpus() or None,
            # a shared machine's load and this process's priority bear on any latency figure
            "load_average": [round(x, 2) for x in os.getloadavg()]
            if hasattr(os, "getloadavg") else None,
            "nice": os.nice(0) if hasattr(os, "nice") else None}


def provenance(argv: list[str] | None = None, command: str | None = None) -> dict:
    """The provenance block of a Python script started with `argv` (default: this process's
    sys.argv), or of a shell `command` line given as it was typed."""
    argv = list(sys.argv if argv is None else argv)
    if command is None:
        command = shlex.join([Path(sys.executable).name, *argv])
    else:
        argv = shlex.split(command)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"command": command, "argv": argv, "cwd": os.getcwd(), **git_state(),
            "date_utc": date.replace("+00:00", "Z"), "machine": machine()}


def missing_keys(block: object) -> list[str]:
    """The required provenance keys absent (or empty) in `block`; [] when it is complete."""
    if not isinstance(block, dict):
        return list(REQUIRED_KEYS)
    return [k for k in REQUIRED_KEYS if block.get(k) in (None, "", {}, [])]


def save_results(path: str | os.PathLike, data: dict, block: dict | None = None) -> None:
    """Write `data` with a "provenance" block to `path` (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {"provenance": block if block is not None else provenance(), **data}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Gather JSON results under one file with a "
                                 "provenance block (for shell scripts).")
    ap.add_argument("--command", required=True, help="the shell script's command line")
    ap.add_argument("--out", required=True, help="results JSON to write")
    ap.add_argument("--keep", nargs="+", metavar="KEY",
                    help="keep only these top-level keys of each file (e.g. drop per-instance "
                    "lists)")
    ap.add_argument("results", nargs="*", metavar="NAME=FILE.json",
                    help="finished result files, stored under runs[NAME]")
    args = ap.parse_args(argv)
    runs = {}
    for item in args.results:
        name, sep, file = item.partition("=")
        if not sep or not name:
            ap.error(f"{item!r} is not NAME=FILE.json")
        record = json.loads(Path(file).read_text(encoding="utf-8"))
        if args.keep:
            record = {k: record[k] for k in args.keep if k in record}
        runs[name] = record
    block = provenance(command=args.command)
    save_results(args.out, {"runs": runs}, block)
    print(f"wrote {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
