"""The device runner script (device_runner.sh) run locally by /bin/sh: outputs appear only when
a step passes, unchanged builds are skipped, and a step left running by a dropped connection is
stopped before the same step runs again."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

RUNNER = resources.files("trtq.deploy").joinpath("device_runner.sh")


@pytest.fixture()
def deploy_dir(tmp_path) -> Path:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "m.onnx").write_bytes(b"model")
    return tmp_path


def _runner(folder: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(RUNNER), *args], cwd=folder, capture_output=True,
                          text=True, timeout=60, **kwargs)


def _build(folder: Path, command: str, **kwargs) -> subprocess.CompletedProcess:
    return _runner(folder, "build", "m", "inputs/m.onnx", "--", "sh", "-c", command, **kwargs)


def test_build_publishes_only_on_success_and_skips_unchanged(deploy_dir):
    done = _build(deploy_dir, "echo plan > engines/m.partial/m.engine; echo built")
    assert done.returncode == 0, done.stderr
    assert (deploy_dir / "engines/m.engine").read_text() == "plan\n"
    assert (deploy_dir / "results/m.build.log").read_text() == "built\n"
    assert (deploy_dir / "results/m.engine.bytes").read_text().strip() == "5"
    again = _build(deploy_dir, "echo plan > engines/m.partial/m.engine; echo built")
    assert "up to date" in again.stdout
    failed = _build(deploy_dir, "echo half > engines/m.partial/m.engine; echo '[E] no'; exit 3")
    assert failed.returncode == 1 and "[E] no" in failed.stderr  # the log's tail
    assert not (deploy_dir / "engines/m.engine").exists()  # the old engine is gone too
    assert not list(deploy_dir.rglob("*.partial"))  # files and folders
    assert (deploy_dir / "results/m.build.log.failed").read_text() == "[E] no\n"


def test_a_step_left_running_is_stopped_before_it_runs_again(deploy_dir):
    first = subprocess.Popen(["sh", str(RUNNER), "build", "m", "inputs/m.onnx", "--", "sleep",
                              "60"], cwd=deploy_dir, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pgid_file = deploy_dir / "run/m.build.pgid"
    deadline = time.monotonic() + 20
    while not (pgid_file.exists() and pgid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert int(pgid_file.read_text()) == os.getpgid(first.pid)
    # reap it when it dies, as init reaps an orphan on the device (a zombie still "exists")
    reaper = threading.Thread(target=first.wait, daemon=True)
    reaper.start()
    started = time.monotonic()
    second = _build(deploy_dir, "echo plan > engines/m.partial/m.engine", start_new_session=True)
    assert second.returncode == 0 and "stopping the earlier build of m" in second.stderr
    reaper.join(timeout=10)
    assert first.returncode is not None and first.returncode != 0  # killed, not finished
    assert time.monotonic() - started < 8  # stopped by TERM, not after the 10 s KILL wait
    assert (deploy_dir / "engines/m.engine").read_text() == "plan\n"
    assert not pgid_file.exists()


def test_manifest_lists_published_results_only(deploy_dir):
    (deploy_dir / "results").mkdir()
    (deploy_dir / "results/a.log").write_text("a")
    (deploy_dir / "results/b.log.partial").write_text("b")
    assert _runner(deploy_dir, "manifest").returncode == 0
    lines = (deploy_dir / "results/manifest.sha256").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["a.log"]
    assert _runner(deploy_dir, "bogus").returncode == 2


def test_plugin_step_renames_the_library_folder_when_the_build_passes(deploy_dir):
    """The runner's plugin step with a stand-in build_jetson.sh (the real one needs JetPack's
    TensorRT headers and libraries): OUT appears whole, and unchanged sources are not rebuilt."""
    src = deploy_dir / "plugin" / "src"
    src.mkdir(parents=True)
    script = src / "build_jetson.sh"
    script.write_text('mkdir -p "$1"; echo lib > "$1/liblogquant_trt.so"; echo built\n')
    first = _runner(deploy_dir, "plugin", "plugin/src", "plugin/lib")
    assert first.returncode == 0, first.stderr
    assert (deploy_dir / "plugin/lib/liblogquant_trt.so").read_text() == "lib\n"
    assert (deploy_dir / "results/plugin.build.log").read_text() == "built\n"
    assert "up to date" in _runner(deploy_dir, "plugin", "plugin/src", "plugin/lib").stdout
    script.write_text('mkdir -p "$1"; echo half > "$1/liblogquant_trt.so"; exit 4\n')
    failed = _runner(deploy_dir, "plugin", "plugin/src", "plugin/lib")
    assert failed.returncode == 1 and "build of plugin failed (status 4)" in failed.stderr
    assert (deploy_dir / "plugin/lib/liblogquant_trt.so").read_text() == "lib\n"  # untouched
    assert not (deploy_dir / "plugin/lib.partial").exists()
