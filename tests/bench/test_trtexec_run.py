"""The trtexec benchmark command line and running it through an injected fake process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trtq.bench import trtexec_run
from trtq.bench.trtexec_run import RECOMMENDED_FLAGS, run_trtexec, trtexec_bench_argv
from trtq.errors import BackendError, TrtqError

# A real TRT 10.x summary (NVIDIA/TensorRT#4177, TENSORRT.md §4) between real banners.
LOG = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=encoder.engine
[10/03/2024-10:47:59] [I] === Performance summary ===
[10/03/2024-10:47:59] [I] Throughput: 130.298 qps
[10/03/2024-10:47:59] [I] GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, \
mean = 7.58404 ms, median = 7.14139 ms, percentile(90%) = 10.2881 ms, \
percentile(95%) = 10.8175 ms, percentile(99%) = 12.9485 ms
[10/03/2024-10:47:59] [I] Total Host Walltime: 3.00082 s
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=encoder.engine
"""
FAILED_LOG = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=encoder.engine
[10/03/2024-10:47:59] [E] Error[1]: [runtime.cpp::parsePlan::314] Error Code 1: Serialization \
assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.
[10/03/2024-10:47:59] [E] Engine deserialization failed
&&&& FAILED TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=encoder.engine
"""


class FakeRunner:
    """Stands in for subprocess.run: records the call, returns (or raises) what it was given."""

    def __init__(self, stdout: str = LOG, returncode: int = 0, raises: Exception | None = None):
        self.stdout, self.returncode, self.raises = stdout, returncode, raises
        self.calls = []

    def __call__(self, argv, **kwargs):
        self.calls.append((list(argv), kwargs))
        if self.raises is not None:
            raise self.raises
        return subprocess.CompletedProcess(argv, self.returncode, stdout=self.stdout, stderr=None)


@pytest.fixture
def fake_trtexec(tmp_path) -> Path:
    path = tmp_path / "bin" / "trtexec"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_argv_with_every_option():
    argv = trtexec_bench_argv(Path("out/encoder.engine"), "/opt/trt/bin/trtexec",
                              shapes={"image": (1, 3, 1024, 1024), "boxes": [1, 4, 4]},
                              iterations=100, duration_s=0, warmup_ms=500,
                              export_times=Path("times.json"),
                              export_profile=Path("profile.json"), extra=["--useSpinWait"])
    assert argv == ["/opt/trt/bin/trtexec", "--loadEngine=out/encoder.engine",
                    "--shapes=boxes:1x4x4,image:1x3x1024x1024", "--iterations=100",
                    "--duration=0", "--warmUp=500", "--percentile=90,95,99",
                    "--exportTimes=times.json", "--exportProfile=profile.json",
                    "--useCudaGraph", "--noDataTransfers",
                    "--separateProfileRun", "--useSpinWait"]


def test_argv_defaults_and_switches():
    assert trtexec_bench_argv("e.engine", "trtexec") == [
        "trtexec", "--loadEngine=e.engine", "--percentile=90,95,99", *RECOMMENDED_FLAGS]
    assert trtexec_bench_argv("e.engine", "trtexec", percentiles=None, recommended=False) == [
        "trtexec", "--loadEngine=e.engine"]
    argv = trtexec_bench_argv("e.engine", "trtexec", percentiles=(99, 99.9), duration_s=2.5,
                              extra=("--noDataTransfers",))
    assert argv.count("--noDataTransfers") == 1 and argv[-1] == "--noDataTransfers"
    assert "--percentile=99,99.9" in argv and "--duration=2.5" in argv
    assert "--shapes='enc:img':1x3" in trtexec_bench_argv("e", "t", shapes={"enc:img": (1, 3)})
    assert RECOMMENDED_FLAGS == ("--useCudaGraph", "--noDataTransfers", "--separateProfileRun")


def test_argv_uses_find_trtexec_when_not_given(monkeypatch):
    monkeypatch.setattr(trtexec_run, "find_trtexec", lambda: "/usr/src/tensorrt/bin/trtexec")
    assert trtexec_bench_argv("e.engine")[0] == "/usr/src/tensorrt/bin/trtexec"
    monkeypatch.setattr(trtexec_run, "find_trtexec", lambda: None)
    assert trtexec_bench_argv("e.engine")[0] == "trtexec"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"iterations": 0}, "iterations"),
    ({"iterations": 2.5}, "iterations"),
    ({"duration_s": -1}, "duration_s"),
    ({"warmup_ms": float("nan")}, "warmup_ms"),
    ({"percentiles": (90, 101)}, r"\[0, 100\]"),
    ({"shapes": {"boxes": (1, 0, 4)}}, "positive dimensions"),
    ({"shapes": {"a,b": (1,)}}, "cannot be written"),
    ({"shapes": {"boxes": "1x4"}}, "list of integers"),
    ({"extra": "--useSpinWait"}, "not one string"),
])
def test_argv_rejects_bad_values(kwargs, message):
    with pytest.raises(TrtqError, match=message):
        trtexec_bench_argv("e.engine", "trtexec", **kwargs)


def test_run_success_keeps_log_and_parses(fake_trtexec):
    runner = FakeRunner()
    argv = trtexec_bench_argv("encoder.engine", fake_trtexec, iterations=10)
    report = run_trtexec(argv, timeout_s=60, runner=runner)
    assert report.passed and report.summary.gpu_compute.median == 7.14139
    assert report.summary.gpu_compute.percentile(99) == 12.9485
    assert report.tensorrt_version == "10.3.0" and report.log_text == LOG
    (called, kwargs), = runner.calls
    assert called == argv and called[0] == str(fake_trtexec)
    assert kwargs["stderr"] == subprocess.STDOUT and kwargs["timeout"] == 60
    assert kwargs["text"] is True and kwargs["check"] is False


def test_run_resolves_bare_trtexec_through_find_trtexec(monkeypatch, fake_trtexec):
    monkeypatch.setattr(trtexec_run, "find_trtexec", lambda: str(fake_trtexec))
    runner = FakeRunner()
    run_trtexec(["trtexec", "--loadEngine=e.engine"], runner=runner)
    assert runner.calls[0][0] == [str(fake_trtexec), "--loadEngine=e.engine"]


def test_missing_binary(monkeypatch, tmp_path):
    monkeypatch.setattr(trtexec_run, "find_trtexec", lambda: None)
    runner = FakeRunner()
    with pytest.raises(BackendError, match="trtexec not found.*libnvinfer-bin.*"
                                           "/usr/src/tensorrt/bin/trtexec"):
        run_trtexec(["trtexec", "--loadEngine=e.engine"], runner=runner)
    with pytest.raises(BackendError, match="trtexec not found"):
        run_trtexec([str(tmp_path / "nowhere" / "trtexec"), "--loadEngine=e"], runner=runner)
    assert runner.calls == []
    with pytest.raises(TrtqError, match="argv is empty"):
        run_trtexec([], runner=runner)


def test_nonzero_exit_raises_with_log_tail(fake_trtexec):
    runner = FakeRunner(stdout=FAILED_LOG, returncode=1)
    with pytest.raises(BackendError, match="exited with status 1") as info:
        run_trtexec([str(fake_trtexec), "--loadEngine=encoder.engine"], runner=runner)
    assert "Engine deserialization failed" in str(info.value)
    assert "&&&& FAILED TensorRT.trtexec" in str(info.value)


def test_failed_status_with_zero_exit_and_signal_raise(fake_trtexec):
    with pytest.raises(BackendError, match="(?s)reported FAILED.*deserialization failed"):
        run_trtexec([str(fake_trtexec)], runner=FakeRunner(stdout=FAILED_LOG, returncode=0))
    with pytest.raises(BackendError, match="killed by signal 9"):
        run_trtexec([str(fake_trtexec)], runner=FakeRunner(stdout=LOG[:200], returncode=-9))


def test_long_log_tail_is_cut(fake_trtexec):
    noise = "".join(f"[10/03/2024-10:47:59] [V] line {i}\n" for i in range(500))
    with pytest.raises(BackendError) as info:
        run_trtexec([str(fake_trtexec)], runner=FakeRunner(stdout=noise, returncode=2))
    assert "line 499" in str(info.value) and "line 400" not in str(info.value)


def test_timeout_and_os_errors(fake_trtexec):
    expired = subprocess.TimeoutExpired(["trtexec"], 5, output=b"[I] Starting inference\n")
    with pytest.raises(BackendError, match="(?s)within 5 s.*Starting inference"):
        run_trtexec([str(fake_trtexec)], timeout_s=5, runner=FakeRunner(raises=expired))
    with pytest.raises(BackendError, match="cannot start.*Permission denied"):
        run_trtexec([str(fake_trtexec)], runner=FakeRunner(raises=PermissionError(
            13, "Permission denied")))


def test_build_only_run_returns_report_without_summary(fake_trtexec):
    log = ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --skipInference\n"
           "[04/21/2025-16:34:20] [I] Skipped inference phase since --skipInference is added.\n"
           "&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --skipInference\n")
    report = run_trtexec([str(fake_trtexec)], runner=FakeRunner(stdout=log))
    assert report.passed and report.summary is None
    with pytest.raises(BackendError, match="no performance summary"):
        report.require_summary()
