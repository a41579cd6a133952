"""ruff (line length 100, see pyproject.toml) and the file-size rule of STYLE.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    if shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists():
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", "trtq", "tests", "experiments", "examples"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_no_file_over_800_lines():
    long = [str(p) for p in (REPO / "trtq").rglob("*.py") if len(p.read_text().splitlines()) > 800]
    assert long == []
