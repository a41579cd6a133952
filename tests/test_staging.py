"""Multi-file outputs are transactions: all files or none, killed runs leave nothing in the way.

The unit tests drive `trtq.staging` and `trtq.artifacts` directly; the kill tests start the
real CLI in a subprocess, kill it while it writes, and rerun it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trtq.artifacts import atomic_output, write_json
from trtq.errors import ArtifactError
from trtq.staging import staged_folder

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_new_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "deep" / "out"
    with staged_folder(out, ("a", "b")) as stage:
        (stage / "a").write_text("1")
        assert not out.exists() and stage.parent == out.parent
        (stage / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no staging left
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "new" / "x") as stage:
        (stage / "a").write_text("1")
        raise RuntimeError("the writer failed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]  # not even "new/"


def test_an_existing_folder_is_merged_into_and_names_are_checked_first(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "a").write_text("old")
    ran = []
    with pytest.raises(ArtifactError, match="a already exists; pass --force"):
        with staged_folder(tmp_path, ("a", "b")):
            ran.append(True)
    assert not ran  # refused before the block ran
    with staged_folder(tmp_path, ("a", "b"), force=True) as stage:
        (stage / "a").write_text("new")
        (stage / "b").write_text("b")
    assert (tmp_path / "a").read_text() == "new" and (tmp_path / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "keep.txt"]


def test_replace_swaps_a_whole_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_folder(out, replace=True) as stage:
        (stage / "report.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".out.partial-{dead}-abc123"
    stale.mkdir()
    (stale / "quant_state.pt").write_bytes(b"half")
    live = tmp_path / f".out.partial-{alive}-def456"
    live.mkdir()
    stale_tmp = tmp_path / f".r.json.tmp-{dead}-xyz.tmp"
    stale_tmp.write_text("{")
    with staged_folder(tmp_path / "out") as stage:
        (stage / "a").write_text("1")
    write_json(tmp_path / "r.json", {"ok": 1})
    assert not stale.exists() and not stale_tmp.exists() and live.exists()
    assert (tmp_path / "out" / "a").read_text() == "1"


def test_a_refused_or_failed_file_write_creates_no_folder(tmp_path):
    target = tmp_path / "a" / "b" / "r.json"
    with pytest.raises(RuntimeError), atomic_output(target):
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="file is a file, not a folder"):
        write_json(tmp_path / "file" / "sub" / "r.json", {})


def test_json_results_never_hold_nan_or_infinity(tmp_path):
    with pytest.raises(ArtifactError, match=r"per_instance\[1\]\.iou is not a finite number"):
        write_json(tmp_path / "r.json", {"miou": 0.5, "per_instance": [{"iou": 1.0},
                                                                       {"iou": float("nan")}]})
    with pytest.raises(ArtifactError, match="latency_ms.median is not a finite"):
        write_json(tmp_path / "b.json", {"latency_ms": {"median": float("inf")}})
    assert list(tmp_path.iterdir()) == []
    write_json(tmp_path / "ok.json", {"miou": 0.25, "n": [1, 2]})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"miou": 0.25, "n": [1, 2]}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "trtq", *argv]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _wait_for_staging(proc, parent: Path, name: str, timeout_s: float = 240) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = list(parent.glob(f".{name}.partial-{proc.pid}-*"))
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no staging folder for {name} within {timeout_s} s")


def test_a_killed_calibration_leaves_nothing_that_blocks_a_rerun(synthetic_coco, tmp_path):
    out = tmp_path / "cal"
    argv = _cli("calibrate", "--model", "tiny_litemedsam", "--calib-data", str(synthetic_coco),
                "--split", "calib", "--num-images", "4", "--out", str(out))
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stage = _wait_for_staging(proc, tmp_path, "cal")
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and stage.exists()  # the dead process's staging folder stays
    rerun = subprocess.run(argv, env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == ["quant_state.pt", "quant_state.pt.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal"]  # leftover removed
    record = json.loads((out / "quant_state.pt.json").read_text())
    assert len(record["calibration_id"]) == 16 and record["images"] == 4


def test_sigterm_during_an_export_cleans_up(tmp_path):
    out = tmp_path / "onnx"
    proc = subprocess.Popen(_cli("export", "--model", "tiny_litemedsam", "--out", str(out)),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_staging(proc, tmp_path, "onnx")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "trtq: terminated"
    assert list(tmp_path.iterdir()) == []
