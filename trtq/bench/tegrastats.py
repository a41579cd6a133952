"""Parse `tegrastats` lines and sample them during a benchmark (Jetson power, load, memory).

One line of `tegrastats` holds RAM/SWAP, per-core CPU load, EMC and GR3D (iGPU) load, temperatures
and INA3221 power rails. The forms accepted here are those collected in ../shared/TENSORRT.md §5
and the checklist in §9: JetPack 4-6 (`VDD_IN 4673mW/4673mW`, unit-less `VDD_IN 8039/8039` on older
releases), JetPack 7.2 / L4T R39.2 (`cpu@52.968C/52.968C`, `VDD_IN 3582mW/3522mW/3582mW`) and Thor
(`GR3D_FREQ @[1000,1000,1000]` with no load). Run as a normal user, tegrastats omits `EMC_FREQ`
frequencies and the `@MHz` part of `GR3D_FREQ` (and the engine clocks); both appear only as root.
Unknown tokens are ignored, so a new field in a future JetPack does not break parsing.

Total power (`TegraSample.total_power_mw`) follows jtop (rbonghi/jetson_stats jtop/core/power.py
`total_power`): the module input rail `VDD_IN` (Orin Nano / NX, Xavier NX, TX2) or `POM_5V_IN`
(Nano) when present, because the other rails are branches of it; otherwise (AGX Orin, AGX Xavier)
the sum of every rail except the unconnected `NC` channels. On AGX Orin that sum
(VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO) covers the module only: the carrier
board is not measured by the onboard sensors (TENSORRT.md §9, citing git.astron.nl/RD/pmt MR 114).
"""

from __future__ import annotations

import logging
import re
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from trtq.errors import BackendError, DataError

log = logging.getLogger("trtq.bench")

ABSENT_C = -256.0  # tegrastats prints -256C for a sensor that is off or missing (AGX CV0..2, GPU)
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
_UNIT_MB = {"k": 1 / 1024, "K": 1 / 1024, "M": 1.0, "G": 1024.0}

_DATE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_RAM = re.compile(
    r"(?<!\S)RAM (\d+)/(\d+)([kKMG])B(?: ?\(lfb (\d+)x(\d+)([kKMG])B\))?")
_SWAP = re.compile(r"(?<!\S)SWAP (\d+)/(\d+)([kKMG])B(?: ?\(cached (\d+)([kKMG])B\))?")
_IRAM = re.compile(r"(?<!\S)IRAM \d+/\d+[kKMG]B ?\(lfb \d+[kKMG]B\)")
_MTS = re.compile(r"(?<!\S)MTS fg \d+% bg \d+%")
_CPU = re.compile(r"(?<!\S)CPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"(\d+)%(?:@(\d+))?$")
# `0%`, `7%@306`, `26%@[306]`, `0%@[0,0]`, `12%@[1300,1300]`, `@[1000,1000,1000]` (Thor)
_FREQ_FIELD = re.compile(
    r"(?<!\S)(GR3D2?_FREQ|EMC_FREQ) (?:(\d+)%)?(?:@(?:\[([0-9,]*)\]|(\d+)))?(?!\S)")
_TEMP = re.compile(
    r"(?<![\w@])([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C(?:/(-?\d+(?:\.\d+)?)C)?(?!\S)")
_NUM = r"(\d+(?:\.\d+)?)(m?W)?"
_RAIL = re.compile(rf"(?<!\S)([A-Za-z][A-Za-z0-9_]*) {_NUM}/{_NUM}(?:/{_NUM})?(?!\S)")
_ENGINE = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (off|\d+)(?!\S)")


@dataclass(frozen=True)
class Rail:
    """One power rail: instantaneous, running-average and (JetPack 7.2) running-max mW."""

    cur_mw: float
    avg_mw: float
    max_mw: float | None = None


@dataclass(frozen=True)
class TegraSample:
    """One parsed tegrastats line; fields the line did not carry are None or empty."""

    timestamp: datetime | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    lfb_blocks: int | None = None
    lfb_block_mb: float | None = None
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    swap_cached_mb: float | None = None
    cpu_load_pct: tuple[int | None, ...] = ()  # None for a core printed as `off`
    cpu_mhz: tuple[int | None, ...] = ()
    emc_load_pct: int | None = None
    emc_mhz: int | None = None  # root only
    gpu_load_pct: int | None = None  # None on Thor, which prints no GR3D load
    gpu_mhz: tuple[int, ...] = ()  # one per GPC (GR3D2_FREQ appended); root only on JetPack <= 6
    temps_c: dict[str, float] = field(default_factory=dict)
    temps_max_c: dict[str, float] = field(default_factory=dict)  # JetPack 7.2 second value
    absent_sensors: tuple[str, ...] = ()  # printed as -256C
    rails: dict[str, Rail] = field(default_factory=dict)  # `NC` (not connected) skipped
    engines: dict[str, int | None] = field(default_factory=dict)  # NVDEC off, APE 200, ...
    t_s: float | None = None  # seconds since the sampler started (set by TegrastatsSampler)

    @property
    def power_source(self) -> str | None:
        """Which rail(s) `total_power_mw` reads: `VDD_IN`, `POM_5V_IN` or `sum(A+B+...)`."""
        for name in TOTAL_RAILS:
            if name in self.rails:
                return name
        return f"sum({'+'.join(self.rails)})" if self.rails else None

    @property
    def total_power_mw(self) -> float | None:
        """Instantaneous board/module power in mW (see the module docstring for the rule)."""
        for name in TOTAL_RAILS:
            if name in self.rails:
                return self.rails[name].cur_mw
        return sum(r.cur_mw for r in self.rails.values()) if self.rails else None


def _mb(value: str, unit: str) -> float:
    return int(value) * _UNIT_MB[unit]


def _mw(value: str, unit: str | None) -> float:
    return float(value) * (1000.0 if unit == "W" else 1.0)


def _take(pattern: re.Pattern[str], text: str) -> tuple[list[re.Match[str]], str]:
    """All matches of `pattern` and the text with them blanked (so later patterns skip them)."""
    found = list(pattern.finditer(text))
    return found, pattern.sub(" ", text) if found else text


def _cpus(match: re.Match[str]) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
    shared_mhz = int(match.group(2)) if match.group(2) else None  # old `CPU [3%,2%]@1420`
    loads: list[int | None] = []
    mhz: list[int | None] = []
    for entry in (e.strip() for e in match.group(1).split(",")):
        if entry == "off":
            loads.append(None)
            mhz.append(None)
        elif core := _CORE.match(entry):
            loads.append(int(core.group(1)))
            mhz.append(int(core.group(2)) if core.group(2) else shared_mhz)
        elif entry:
            log.debug("tegrastats: ignoring CPU entry %r", entry)
    return tuple(loads), tuple(mhz)


def _freq_fields(text: str, out: dict) -> str:
    found, text = _take(_FREQ_FIELD, text)
    gpc: list[int] = []
    for m in found:
        name, load, array, single = m.groups()
        mhz = [int(v) for v in array.split(",") if v] if array is not None else (
            [int(single)] if single else [])
        if name == "EMC_FREQ":
            out["emc_load_pct"] = int(load) if load else None
            out["emc_mhz"] = max(mhz) if mhz else None
            continue
        if name == "GR3D_FREQ" and load:
            out["gpu_load_pct"] = int(load)
        gpc.extend(mhz)
    out["gpu_mhz"] = tuple(gpc)
    return text


def _temps(text: str, out: dict) -> str:
    found, text = _take(_TEMP, text)
    temps: dict[str, float] = {}
    temps_max: dict[str, float] = {}
    absent: list[str] = []
    for m in found:
        name, cur, peak = m.group(1), float(m.group(2)), m.group(3)
        if cur <= ABSENT_C:
            absent.append(name)
            continue
        temps[name] = cur
        if peak is not None:
            temps_max[name] = float(peak)
    out.update(temps_c=temps, temps_max_c=temps_max, absent_sensors=tuple(absent))
    return text


def _rails(text: str, out: dict) -> str:
    found, text = _take(_RAIL, text)
    rails: dict[str, Rail] = {}
    for m in found:
        name, cur, cu, avg, au, peak, pu = m.groups()
        if name == "NC" or name in rails:  # NC = unconnected INA3221 channel, printed twice on AGX
            continue
        rails[name] = Rail(_mw(cur, cu), _mw(avg, au), _mw(peak, pu) if peak else None)
    out["rails"] = rails
    return text


def parse_line(line: str) -> TegraSample:
    """Parse one tegrastats line; raise `DataError` when it is not tegrastats output at all."""
    text = line.strip()
    out: dict = {}
    if date := _DATE.match(text):
        out["timestamp"] = datetime.strptime(date.group(1), "%m-%d-%Y %H:%M:%S")
        text = text[date.end():]
    ram, text = _take(_RAM, text)
    if ram:
        used, total, unit, blocks, size, size_unit = ram[0].groups()
        out.update(ram_used_mb=_mb(used, unit), ram_total_mb=_mb(total, unit))
        if blocks:
            out.update(lfb_blocks=int(blocks), lfb_block_mb=_mb(size, size_unit))
    swap, text = _take(_SWAP, text)
    if swap:
        used, total, unit, cached, cached_unit = swap[0].groups()
        out.update(swap_used_mb=_mb(used, unit), swap_total_mb=_mb(total, unit))
        if cached:
            out["swap_cached_mb"] = _mb(cached, cached_unit)
    cpu, text = _take(_CPU, text)
    if cpu:
        out["cpu_load_pct"], out["cpu_mhz"] = _cpus(cpu[0])
    has_gpu = "GR3D_FREQ" in text
    _, text = _take(_IRAM, text)
    _, text = _take(_MTS, text)
    text = _freq_fields(text, out)
    if not (ram or cpu or has_gpu):
        shown = line.strip()[:120]
        raise DataError(
            f"not a tegrastats line: {shown!r} (expected fields such as 'RAM 2272/7620MB', "
            "'CPU [..]', 'GR3D_FREQ 0%'); pass the raw output of `tegrastats --interval <ms>`")
    text = _temps(text, out)
    text = _rails(text, out)
    out["engines"] = {m.group(1): (None if m.group(2) == "off" else int(m.group(2)))
                      for m in _ENGINE.finditer(text)}
    return TegraSample(**out)


def _interval_ms(samples: list[TegraSample]) -> float | None:
    times = [s.t_s for s in samples if s.t_s is not None]
    if len(times) >= 2:
        return statistics.median(b - a for a, b in zip(times, times[1:], strict=False)) * 1000
    stamps = [s.timestamp for s in samples if s.timestamp is not None]
    if len(stamps) >= 2 and stamps[-1] > stamps[0]:  # 1 s resolution: a coarse fallback
        return (stamps[-1] - stamps[0]).total_seconds() * 1000 / (len(stamps) - 1)
    return None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(samples, inferences: int | None = None, seconds: float | None = None) -> dict:
    """RAM, GPU load, power and (given the run's duration) energy over a list of samples.

    Power mean/peak come from each line's instantaneous value (not tegrastats' running average).
    `energy_j` = mean power x `seconds`; `energy_per_inference_mj` divides it by `inferences`.
    `interval_ms` is the median gap between lines as the sampler received them, else (parsed
    lines only) the spacing of their 1 s timestamps.
    """
    samples = list(samples)
    if not samples:
        raise DataError("no tegrastats samples to summarize: run the measured work for longer "
                        "than the sampling interval, or lower interval_ms")
    if inferences is not None and inferences <= 0:
        raise ValueError(f"inferences must be positive, got {inferences}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    ram = [s.ram_used_mb for s in samples if s.ram_used_mb is not None]
    gpu = [s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]
    power = [p for s in samples if (p := s.total_power_mw) is not None]
    temps = [t for s in samples for t in s.temps_c.values()]
    sources = sorted({s.power_source for s in samples if s.power_source is not None})
    power_mean = _mean(power)
    energy_j = power_mean / 1000 * seconds if power_mean is not None and seconds else None
    per_inf = energy_j * 1000 / inferences if energy_j is not None and inferences else None
    return {
        "samples": len(samples),
        "interval_ms": _interval_ms(samples),
        "ram_used_mb_max": max(ram) if ram else None,
        "ram_used_mb_mean": _mean(ram),
        "ram_total_mb": next((s.ram_total_mb for s in samples if s.ram_total_mb), None),
        "gpu_load_pct_mean": _mean(gpu),
        "gpu_load_pct_max": max(gpu) if gpu else None,
        "power_mw_mean": power_mean,
        "power_mw_peak": max(power) if power else None,
        "power_source": ", ".join(sources) if sources else None,
        "temp_max_c": max(temps) if temps else None,
        "seconds": seconds,
        "energy_j": energy_j,
        "inferences": inferences,
        "energy_per_inference_mj": per_inf,
    }


class TegrastatsSampler:
    """Run `tegrastats --interval N` while a block runs and keep every line it prints.

        with TegrastatsSampler(interval_ms=100) as power:
            run_inferences(n)
        stats = power.summary(inferences=n)

    Root is not required; as a normal user the EMC and GR3D frequencies are missing (loads and
    power rails are still there). `popen` is the process launcher (default `subprocess.Popen`);
    tests pass a fake that replays recorded lines.
    """

    def __init__(self, interval_ms: int = 100, binary: str = "tegrastats", popen=None,
                 stop_timeout_s: float = 3.0) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        self.interval_ms = int(interval_ms)
        self.binary = binary
        self.stop_timeout_s = stop_timeout_s
        self._popen = popen if popen is not None else subprocess.Popen
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._samples: list[TegraSample] = []
        self.rejected = 0  # lines that were not tegrastats output (e.g. error messages)
        self.elapsed_s: float | None = None
        self.returncode: int | None = None
        self._proc = None
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    @classmethod
    def available(cls, binary: str = "tegrastats") -> bool:
        """True when `binary` is on PATH (only on Jetson / L4T)."""
        return shutil.which(binary) is not None

    @property
    def samples(self) -> list[TegraSample]:
        with self._lock:
            return list(self._samples)

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def _missing(self) -> BackendError:
        return BackendError(
            f"{self.binary!r} not found: tegrastats exists only on NVIDIA Jetson boards (L4T / "
            "JetPack, /usr/bin/tegrastats). Run on a Jetson to record power and GPU load, or run "
            "the benchmark without the tegrastats sampler (latency only, no power figures)")

    def start(self) -> TegrastatsSampler:
        if self._proc is not None:
            raise RuntimeError("TegrastatsSampler is already running")
        if self._popen is subprocess.Popen and not self.available(self.binary):
            raise self._missing()
        cmd = [self.binary, "--interval", str(self.interval_ms)]
        try:
            self._proc = self._popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        except FileNotFoundError as exc:
            raise self._missing() from exc
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._thread.start()
        log.debug("started %s", " ".join(cmd))
        return self

    def _read(self) -> None:
        for raw in self._proc.stdout:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            now = time.monotonic() - self._t0
            try:
                sample = replace(parse_line(line), t_s=now)
            except DataError:
                with self._lock:
                    self._lines.append(line)
                    self.rejected += 1
                log.debug("tegrastats printed a non-sample line: %r", line)
                continue
            with self._lock:
                self._lines.append(line)
                self._samples.append(sample)

    def stop(self) -> None:
        """Terminate tegrastats (kill it if it ignores SIGTERM) and wait for the reader."""
        if self._proc is None or self.elapsed_s is not None:
            return
        self.elapsed_s = time.monotonic() - self._t0
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self.returncode = self._proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("tegrastats ignored SIGTERM for %.1f s; killing it", self.stop_timeout_s)
            self._proc.kill()
            self.returncode = self._proc.wait(timeout=self.stop_timeout_s)
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout_s)
            if self._thread.is_alive():
                log.warning("tegrastats reader did not finish within %.1f s", self.stop_timeout_s)
        if not self._samples and self._lines:
            log.warning("tegrastats gave no samples; first line was: %r", self._lines[0])

    def summary(self, inferences: int | None = None) -> dict:
        """`summarize` over the collected samples, with the sampler's own duration."""
        return summarize(self.samples, inferences=inferences, seconds=self.elapsed_s)

    def __enter__(self) -> TegrastatsSampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
