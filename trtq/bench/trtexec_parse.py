"""trtexec's console log and `--exportTimes` JSON, read into numbers trtq can report.

The format comes from `printEpilog` in samples/common/sampleReporting.cpp (NVIDIA/TensorRT) and
the real logs quoted in ../shared/TENSORRT.md §4 and §9:

- every line starts `[MM/DD/YYYY-HH:MM:SS] [I] ` (or [W], [E], [V], [F]); the banner lines
  `&&&& RUNNING|PASSED|FAILED TensorRT.trtexec [TensorRT v100300] # <command>` have no prefix;
- after `=== Performance summary ===`: `Throughput: <x> qps`, then one line per metric
  (`Latency`, `End-to-End Host Latency` (8.x only), `Enqueue Time`, `H2D Latency`,
  `GPU Compute Time`, `D2H Latency`) of the form `min = x ms, max = x ms, mean = x ms,
  median = x ms` followed by zero or more `percentile(<p>%) = x ms` (90/95/99 by default from
  8.5, a single 99% in 8.0-8.4 logs, any list with `--percentile`), then `Total Host Walltime`
  and `Total GPU Compute Time` in seconds, then `[W] * ...` warnings whose second line is
  indented by two spaces;
- numbers use C++ stream defaults (6 significant digits: `0.00390625`, `1.2e-05`);
- with `--noDataTransfers` the H2D and D2H lines are all zeros;
- TensorRT 7.x printed a different, multi-line summary (`Host Latency` / `min: 1.64058 ms (end to
  end 1.66368 ms)` / `throughput: 0 qps`), which is refused here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trtq.bench.latency import summarize
from trtq.engines.versions import TrtVersion, parse_version
from trtq.errors import BackendError

log = logging.getLogger("trtq.bench")

METRICS = ("Latency", "End-to-End Host Latency", "Enqueue Time", "H2D Latency",
           "GPU Compute Time", "D2H Latency")
_NUM = r"(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan))"
_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s)?\[([IWEVF])\](?:\s|$)")
_BANNER = re.compile(r"^&&&& (RUNNING|PASSED|FAILED|WAIVED) TensorRT\.trtexec"
                     r"(?: \[TensorRT (v\d+)\])?(?: # (.*))?$")
_METRIC = re.compile(rf"^({'|'.join(re.escape(m) for m in METRICS)}): (min = .*)$")
_STAT = re.compile(rf"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)) = ({_NUM}) ms")
_THROUGHPUT = re.compile(rf"^Throughput: ({_NUM}) qps$")
_TOTAL = re.compile(rf"^Total (Host Walltime|GPU Compute Time): ({_NUM}) s$")
_CV = re.compile(rf"coefficient of variance = ({_NUM})%")
_LEGACY = re.compile(rf"^(?:Host Latency|min: {_NUM} ms \(end to end|throughput: {_NUM} qps)")
_VERSION_LINE = re.compile(r"^TensorRT version: (\d+\.\d+\.\d+)")
_SUMMARY = "=== Performance summary ==="
_DEVICE = "=== Device Information ==="


def _percentile_key(label: str) -> int | float:
    value = float(label)
    return int(value) if value.is_integer() else value


@dataclass(frozen=True)
class MetricStats:
    """One metric line of the summary, in ms; `percentiles` maps 99 (or 99.9) to its value."""

    min: float
    max: float
    mean: float
    median: float
    percentiles: dict = field(default_factory=dict)

    def percentile(self, p: float) -> float | None:
        return self.percentiles.get(_percentile_key(str(p)))

    @property
    def all_zero(self) -> bool:
        return all(v == 0 for v in (self.min, self.max, self.mean, self.median,
                                    *self.percentiles.values()))

    def to_dict(self) -> dict:
        return {"min": self.min, "max": self.max, "mean": self.mean, "median": self.median,
                "percentiles": {str(p): v for p, v in self.percentiles.items()}}


@dataclass(frozen=True)
class PerformanceSummary:
    """The block after `=== Performance summary ===`; `metrics` is keyed by trtexec's names."""

    throughput_qps: float
    metrics: dict
    total_host_walltime_s: float | None = None
    total_gpu_compute_time_s: float | None = None

    @property
    def latency(self) -> MetricStats | None:
        """Host latency: H2D + GPU compute + D2H of one query."""
        return self.metrics.get("Latency")

    @property
    def gpu_compute(self) -> MetricStats:
        return self.metrics["GPU Compute Time"]

    @property
    def enqueue(self) -> MetricStats | None:
        return self.metrics.get("Enqueue Time")

    @property
    def h2d(self) -> MetricStats | None:
        return self.metrics.get("H2D Latency")

    @property
    def d2h(self) -> MetricStats | None:
        return self.metrics.get("D2H Latency")

    def to_dict(self) -> dict:
        return {"throughput_qps": self.throughput_qps,
                "metrics": {name: stats.to_dict() for name, stats in self.metrics.items()},
                "total_host_walltime_s": self.total_host_walltime_s,
                "total_gpu_compute_time_s": self.total_gpu_compute_time_s}


@dataclass(frozen=True)
class TrtexecDevice:
    """The `=== Device Information ===` block; `fields` keeps every `Key: value` line."""

    name: str | None
    compute_capability: str | None = None
    sms: int | None = None
    global_memory_mib: int | None = None
    memory_bus_width_bits: int | None = None
    compute_clock_ghz: float | None = None
    memory_clock_ghz: float | None = None
    fields: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "compute_capability": self.compute_capability,
                "sms": self.sms, "global_memory_mib": self.global_memory_mib,
                "memory_bus_width_bits": self.memory_bus_width_bits,
                "compute_clock_ghz": self.compute_clock_ghz,
                "memory_clock_ghz": self.memory_clock_ghz, "fields": dict(self.fields)}


@dataclass(frozen=True)
class TrtexecReport:
    """What one trtexec run printed. `summary` is None for build-only or failed runs.

    `status` is PASSED/FAILED/WAIVED from the final `&&&&` line, or None when the log stops
    before it (killed, truncated); `log_text` is the full log (left out of `to_dict`).
    """

    status: str | None
    tensorrt_version: str | None
    command: str | None
    device: TrtexecDevice | None
    summary: PerformanceSummary | None
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    gpu_compute_cv_percent: float | None = None
    log_text: str = field(default="", repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.status == "PASSED"

    @property
    def no_data_transfers(self) -> bool:
        """True when H2D and D2H are printed and all zero: a `--noDataTransfers` run."""
        s = self.summary
        return bool(s and s.h2d and s.d2h and s.h2d.all_zero and s.d2h.all_zero)

    def version(self) -> TrtVersion:
        """The TensorRT release as a TrtVersion (refuses releases trtq does not support)."""
        if self.tensorrt_version is None:
            raise BackendError("the trtexec log has no `&&&& RUNNING TensorRT.trtexec "
                               "[TensorRT vNNNN]` line; pass the whole log, from its first line")
        return parse_version(self.tensorrt_version)

    def require_summary(self) -> PerformanceSummary:
        """The performance summary, or a BackendError quoting the log's last errors."""
        if self.summary is not None:
            return self.summary
        errors = "; ".join(self.errors[-5:]) or "no [E] lines"
        hint = ("the run failed" if self.status == "FAILED" else
                "was it built with --skipInference/--buildOnly, or cut short?")
        raise BackendError(f"the trtexec log has no performance summary ({hint}); last errors: "
                           f"{errors}. Rerun trtexec with --loadEngine and without "
                           "--skipInference, and fix the errors above")

    def to_dict(self) -> dict:
        return {"status": self.status, "tensorrt_version": self.tensorrt_version,
                "command": self.command,
                "device": self.device.to_dict() if self.device else None,
                "summary": self.summary.to_dict() if self.summary else None,
                "warnings": list(self.warnings), "errors": list(self.errors),
                "gpu_compute_cv_percent": self.gpu_compute_cv_percent,
                "no_data_transfers": self.no_data_transfers}


def _messages(text: str) -> list[tuple[str | None, str]]:
    """(severity letter or None, message) per line, the timestamp prefix removed."""
    out = []
    for raw in text.splitlines():
        line = raw.rstrip()
        match = _PREFIX.match(line)
        out.append((match.group(1), line[match.end():]) if match else (None, line.strip()))
    return out


def _banner_version(token: str) -> str:
    """v100300 → '10.3.0'; releases older than trtq supports (v8400) are still named."""
    layout = re.fullmatch(r"v(\d)(\d)(\d{2})|v(\d{2})(\d{2})(\d{2})", token)
    if layout is None:
        return token  # a layout trtq does not know: kept as printed
    try:
        return str(parse_version(token))
    except BackendError:  # older than TrtVersion accepts; the digits still name the release
        return ".".join(str(int(g)) for g in layout.groups() if g is not None)


def _metric(name: str, body: str) -> MetricStats:
    values, percentiles = {}, {}
    for key, pct, number in _STAT.findall(body):
        if pct:
            percentiles[_percentile_key(pct)] = float(number)
        else:
            values[key] = float(number)
    if set(values) != {"min", "max", "mean", "median"}:
        raise BackendError(f"cannot read the trtexec metric line {name!r}: {body!r}; expected "
                           "'min = X ms, max = X ms, mean = X ms, median = X ms, "
                           "percentile(P%) = X ms' (TensorRT 8.0 or newer)")
    return MetricStats(percentiles=percentiles, **values)


def _summary(lines: list[tuple[str | None, str]]):
    """The performance summary, its `* ...` warnings and the coefficient of variance."""
    throughput, metrics, totals, warnings = None, {}, {}, []
    for severity, message in lines:
        if message.startswith("Explanations of the performance metrics") or \
                (message.startswith("===") and message != _SUMMARY):
            break
        if severity == "W" and message.startswith("* "):
            warnings.append(message[2:].strip())
        elif severity == "W" and warnings and message[:1].isspace():
            warnings[-1] = f"{warnings[-1]} {message.strip()}"
        elif match := _THROUGHPUT.match(message):
            throughput = float(match.group(1))
        elif match := _METRIC.match(message):
            metrics[match.group(1)] = _metric(match.group(1), match.group(2))
        elif match := _TOTAL.match(message):
            totals[match.group(1)] = float(match.group(2))
    if throughput is None or "GPU Compute Time" not in metrics:
        raise BackendError("the trtexec performance summary is incomplete (no Throughput or GPU "
                           "Compute Time line); pass the whole log, including the lines after "
                           f"'{_SUMMARY}'")
    summary = PerformanceSummary(throughput, metrics, totals.get("Host Walltime"),
                                 totals.get("GPU Compute Time"))
    cv = next((float(m.group(1)) for w in warnings if (m := _CV.search(w))), None)
    return summary, tuple(warnings), cv


def _device(lines: list[tuple[str | None, str]]) -> TrtexecDevice:
    fields = {}
    for _, message in lines:
        if message.startswith("===") or (not message and fields):
            break
        key, sep, value = message.partition(": ")
        if sep and key and not key[0].isspace():
            fields[key] = value.strip()

    def first(pattern: str, *keys: str, cast=float):
        for key in keys:
            match = re.match(pattern, fields.get(key, ""))
            if match:
                return cast(match.group(1))
        return None

    return TrtexecDevice(
        name=fields.get("Selected Device"), compute_capability=fields.get("Compute Capability"),
        sms=first(r"(\d+)$", "SMs", cast=int),
        global_memory_mib=first(r"(\d+) MiB", "Device Global Memory", cast=int),
        memory_bus_width_bits=first(r"(\d+) bits", "Memory Bus Width", cast=int),
        compute_clock_ghz=first(rf"({_NUM}) GHz", "Application Compute Clock Rate",
                                "Compute Clock Rate"),
        memory_clock_ghz=first(rf"({_NUM}) GHz", "Application Memory Clock Rate",
                               "Memory Clock Rate"),
        fields=fields)


def parse_trtexec_log(text: str) -> TrtexecReport:
    """Read a trtexec console log (stdout and stderr together) into a TrtexecReport."""
    lines = _messages(text)
    status = version = command = None
    device = None
    summary, warnings, cv = None, (), None
    for index, (severity, message) in enumerate(lines):
        if severity is None and (match := _BANNER.match(message)):
            if match.group(1) != "RUNNING":
                status = match.group(1)
            if match.group(2) and version is None:
                version = _banner_version(match.group(2))
            if match.group(3) and command is None:
                command = match.group(3).strip()
        elif message == _DEVICE:
            device = _device(lines[index + 1:])
        elif message == _SUMMARY:
            summary, warnings, cv = _summary(lines[index + 1:])  # the last summary wins
        elif version is None and (match := _VERSION_LINE.match(message)):
            version = match.group(1)
    if summary is None and any(_LEGACY.match(m) for s, m in lines if s is not None):
        raise BackendError("this trtexec log has the multi-line summary of TensorRT 7.x "
                           "('Host Latency' / 'min: ... (end to end ...)'), which trtq does "
                           "not read; rerun with TensorRT 8.5 or newer (JetPack 5.1+), whose "
                           f"trtexec prints '{_SUMMARY}'")
    errors = tuple(m for s, m in lines if s in ("E", "F") and m)
    report = TrtexecReport(status, version, command, device, summary, warnings, errors, cv, text)
    log.debug("trtexec log: status %s, TensorRT %s, summary %s", status, version,
              "found" if summary else "absent")
    return report


def _bench_stats(stats: MetricStats) -> dict:
    out = {"median": stats.median, "p90": None, "p95": None, "p99": None}
    out.update({f"p{p}": v for p, v in stats.percentiles.items()})
    out.update(min=stats.min, max=stats.max, mean=stats.mean)
    return out


def to_bench_record(report: TrtexecReport) -> dict:
    """trtq's bench JSON record: `latency_ms` is GPU Compute Time, `host_latency_ms` Latency.

    `fps` is trtexec's throughput in queries (inferences) per second; a query is one batch.
    Percentiles the run did not print (8.4 prints only the 99th) are None.
    """
    summary = report.require_summary()
    return {
        "backend": "trtexec",
        "latency_ms": _bench_stats(summary.gpu_compute),
        "host_latency_ms": _bench_stats(summary.latency) if summary.latency else None,
        "fps": summary.throughput_qps,
        "tensorrt_version": report.tensorrt_version,
        "device": report.device.name if report.device else None,
        "warnings": list(report.warnings),
        "no_data_transfers": report.no_data_transfers,
        "gpu_compute_cv_percent": report.gpu_compute_cv_percent,
        "total_host_walltime_s": summary.total_host_walltime_s,
        "command": report.command,
    }


_EXPORT_FIELDS = {"compute_ms": "computeMs", "latency_ms": "latencyMs", "h2d_ms": "h2dMs",
                  "d2h_ms": "d2hMs", "end_to_end_ms": "endToEndMs"}


def parse_export_times(data: str | bytes | os.PathLike | Sequence[Mapping],
                       warmup_ms: float | None = None) -> dict:
    """`--exportTimes` JSON → per-iteration arrays and statistics of computeMs and latencyMs.

    `data` is the JSON text, a path to the file, or the already-loaded list. From 8.6 trtexec
    leaves the warm-up iterations out of the file; older releases write them too: pass the run's
    `--warmUp` as `warmup_ms` to drop records that started computing before it, as trtexec does.
    """
    records = data
    if isinstance(data, os.PathLike):
        with open(data, encoding="utf-8") as handle:
            records = json.load(handle)
    elif isinstance(data, str | bytes):
        try:
            records = json.loads(data)
        except json.JSONDecodeError as exc:
            raise BackendError(f"the --exportTimes data is not JSON ({exc}); pass the file "
                               "trtexec wrote, or its text") from exc
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise BackendError("--exportTimes JSON must be a list of per-iteration objects "
                           "({'computeMs': ..., 'latencyMs': ...}); is this the --exportProfile "
                           "file instead?")
    if warmup_ms is not None:
        records = [r for r in records if r.get("startComputeMs", math.inf) >= warmup_ms]
    missing = [i for i, r in enumerate(records) if "computeMs" not in r or "latencyMs" not in r]
    if not records or missing:
        raise BackendError(f"--exportTimes JSON has {len(records)} usable iterations "
                           f"(records without computeMs/latencyMs: {missing[:5]}); rerun "
                           "trtexec with --exportTimes=<file> and at least one iteration")
    arrays = {name: [float(r[key]) for r in records] for name, key in _EXPORT_FIELDS.items()
              if all(key in r for r in records)}
    if all("startEnqMs" in r and "endEnqMs" in r for r in records):
        arrays["enqueue_ms"] = [float(r["endEnqMs"]) - float(r["startEnqMs"]) for r in records]
    return {"iterations": len(records), "per_iteration": arrays,
            "compute_ms": summarize(arrays["compute_ms"]),
            "latency_ms": summarize(arrays["latency_ms"])}
