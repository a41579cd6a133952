"""Benchmark a built engine with NVIDIA's trtexec and read its log (trtexec_parse).

The flags are those of samples/common/sampleOptions.cpp (TENSORRT.md §4): `--loadEngine`,
`--shapes=name:1x4,...` (runtime shapes of dynamic inputs), `--iterations=N`, `--duration=N`
(seconds, at least), `--warmUp=N` (milliseconds), `--percentile=90,95,99` (a list from 8.5),
`--exportTimes=<json>`, `--exportProfile=<json>` (per-layer times, measured in the separate
profiling run when `--separateProfileRun` is given). The recommended measurement flags take
the host out of the number:
`--useCudaGraph` (enqueue cost), `--noDataTransfers` (no H2D/D2H copies) and
`--separateProfileRun` (no profiler attached to the timed run).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

from trtq.bench.trtexec_parse import TrtexecReport, parse_trtexec_log
from trtq.engines.trtexec import JETSON_TRTEXEC, find_trtexec
from trtq.errors import BackendError, TrtqError

log = logging.getLogger("trtq.bench")

RECOMMENDED_FLAGS = ("--useCudaGraph", "--noDataTransfers", "--separateProfileRun")
_TAIL_LINES = 25
_INSTALL = ("install TensorRT's binaries (desktop: put the bin/ folder of the TensorRT tar/zip "
            "package, which holds trtexec, on PATH; Jetson: `sudo apt install libnvinfer-bin`, "
            f"which installs {JETSON_TRTEXEC}) or pass the path of trtexec")


def _number(value: float, what: str, minimum: float) -> str:
    """A non-negative flag value written as trtexec reads it (an int when it is one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < minimum:
        raise TrtqError(f"{what} must be a number >= {minimum}, got {value!r}")
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _shapes_flag(shapes: Mapping[str, Sequence[int]]) -> str:
    specs = []
    for name in sorted(shapes):
        if not name or "," in name or "'" in name:
            raise TrtqError(f"input name {name!r} cannot be written in trtexec's --shapes list "
                            "(empty, or contains ',' or \"'\"); rename the ONNX input")
        try:
            dims = [int(d) for d in shapes[name]]
        except (TypeError, ValueError) as exc:
            raise TrtqError(f"the shape of {name!r} must be a list of integers, got "
                            f"{shapes[name]!r}") from exc
        if not dims or min(dims) < 1:
            raise TrtqError(f"the shape of {name!r} needs positive dimensions, got {dims}; "
                            "write the runtime shape, e.g. (1, 4, 4)")
        quoted = f"'{name}'" if ":" in name else name  # trtexec splits name:dims at the last ':'
        specs.append(f"{quoted}:{'x'.join(map(str, dims))}")
    return "--shapes=" + ",".join(specs)


def trtexec_bench_argv(engine: str | os.PathLike, trtexec: str | os.PathLike | None = None, *,
                       shapes: Mapping[str, Sequence[int]] | None = None,
                       iterations: int | None = None, duration_s: float | None = None,
                       warmup_ms: float | None = None,
                       percentiles: Sequence[float] | None = (90, 95, 99),
                       export_times: str | os.PathLike | None = None,
                       export_profile: str | os.PathLike | None = None,
                       extra: Sequence[str] = (), recommended: bool = True) -> list[str]:
    """The trtexec argument list (program first) that benchmarks `engine`.

    `trtexec=None` is trtexec as `find_trtexec` finds it (PATH, then JetPack's
    /usr/src/tensorrt/bin/trtexec), or the bare name when neither exists. `recommended=False`
    leaves out RECOMMENDED_FLAGS, e.g. to measure with data transfers.
    """
    if isinstance(extra, str):
        raise TrtqError(f"extra must be a list of flags, not one string: write [{extra!r}]")
    program = os.fspath(trtexec) if trtexec is not None else (find_trtexec() or "trtexec")
    argv = [program, f"--loadEngine={os.fspath(engine)}"]
    if shapes:
        argv.append(_shapes_flag(shapes))
    if iterations is not None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise TrtqError(f"iterations must be a whole number >= 1, got {iterations!r}")
        argv.append(f"--iterations={iterations}")
    if duration_s is not None:
        argv.append(f"--duration={_number(duration_s, 'duration_s (seconds)', 0)}")
    if warmup_ms is not None:
        argv.append(f"--warmUp={_number(warmup_ms, 'warmup_ms (milliseconds)', 0)}")
    if percentiles:
        values = [_number(p, "each percentile", 0) for p in percentiles]
        if any(float(v) > 100 for v in values):
            raise TrtqError(f"percentiles lie in [0, 100], got {list(percentiles)}")
        argv.append(f"--percentile={','.join(values)}")
    if export_times is not None:
        argv.append(f"--exportTimes={os.fspath(export_times)}")
    if export_profile is not None:  # per-layer times (`trtq autoquant --backend tensorrt`)
        argv.append(f"--exportProfile={os.fspath(export_profile)}")
    flags = [str(f) for f in extra]
    if recommended:
        argv += [f for f in RECOMMENDED_FLAGS if f not in flags]
    return argv + flags


def _resolve(program: str) -> str | None:
    """The executable that `program` names, or None."""
    if os.path.dirname(program):
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    if os.path.basename(program) == "trtexec":
        return find_trtexec()
    return shutil.which(program)


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) or "(no output)"


def _output(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def run_trtexec(argv: Sequence[str], timeout_s: float | None = None,
                runner: Callable[..., subprocess.CompletedProcess] = subprocess.run
                ) -> TrtexecReport:
    """Run trtexec, keep its whole log (`report.log_text`) and parse it.

    A missing binary, a timeout, a non-zero exit status or a `&&&& FAILED` line raise
    BackendError with the log's last lines. A run without a performance summary that still
    passed (e.g. --skipInference) returns a report whose `summary` is None. `runner` stands in
    for `subprocess.run` (tests pass a fake process).
    """
    argv = [os.fspath(a) for a in argv]
    if not argv:
        raise TrtqError("argv is empty; build it with trtexec_bench_argv(engine)")
    program = _resolve(argv[0])
    if program is None:
        raise BackendError(f"trtexec not found ({argv[0]!r}: not on PATH and not at "
                           f"{JETSON_TRTEXEC}); {_INSTALL}")
    argv[0] = program
    log.info("running %s", " ".join(argv))
    try:
        done = runner(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                      errors="replace", timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"trtexec did not finish within {timeout_s} s; raise timeout_s or "
                           "lower --duration/--iterations. Last output:\n"
                           f"{_tail(_output(exc.output))}") from exc
    except OSError as exc:  # vanished, or not executable
        raise BackendError(f"cannot start {program}: {exc}; {_INSTALL}") from exc
    text = _output(done.stdout) + _output(getattr(done, "stderr", None))
    code = done.returncode
    # A killed run can stop inside the summary, so the exit status is judged before parsing.
    report = parse_trtexec_log(text) if code == 0 else None
    if report is None or report.status == "FAILED":
        how = (f"was killed by signal {-code}" if code < 0 else
               f"exited with status {code}" if code else "reported FAILED")
        raise BackendError(f"trtexec {how}; read its last lines below, fix the cause (engine "
                           "built by another TensorRT version or GPU, wrong --shapes, out of "
                           f"memory) and rerun:\n{_tail(text)}")
    log.info("trtexec finished: %s, TensorRT %s", report.status, report.tensorrt_version)
    return report
