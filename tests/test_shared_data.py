"""The shared datasets: tests skip without them on a developer machine, and fail under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NEEDS_BUSI = "tests/datasets/test_coco.py::test_busi_val_counts_and_masks"


def _pytest(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRTQ_SHARED_DATASETS": str(tmp_path / "absent")}
    env.pop("TRTQ_CI", None)
    if ci:
        env["TRTQ_CI"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           NEEDS_BUSI], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_missing_shared_datasets_skip_locally_and_fail_under_ci(tmp_path):
    local = _pytest(tmp_path, ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = _pytest(tmp_path, ci=True)
    assert ci.returncode == 1 and "1 error" in ci.stdout, ci.stdout  # a failing fixture
    assert "Failed: shared dataset" in ci.stdout


def test_ci_script_requires_the_shared_datasets():
    assert "export TRTQ_CI=1" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
