"""tegrastats parsing, summaries and sampling; nvpmodel / jetson_clocks state (no Jetson needed).

Every fixture is real output pasted from its public source, named beside it (the first three
lines and the JetPack 7.2 / Thor forms are those of TENSORRT.md §5). Nothing here ran on a Jetson.
"""

from __future__ import annotations

import os
import queue
import shutil
import stat
import subprocess
import sys
import time
from datetime import datetime

import pytest

from trtq.bench.jetson_power_mode import parse_jetson_clocks, parse_nvpmodel, power_mode, warnings
from trtq.bench.tegrastats import Rail, TegrastatsSampler, parse_line, summarize
from trtq.errors import BackendError, DataError

# TENSORRT.md §5: Orin Nano 8GB, JetPack 6, non-root.
ORIN_NANO_JP6 = "07-29-2026 18:00:27 RAM 2272/7620MB (lfb 4x4MB) SWAP 221/3810MB (cached 0MB) CPU [0%@729,0%@1036,0%@1036,0%@1036,0%@729,0%@729] GR3D_FREQ 0% cpu@54.937C soc2@55.562C soc0@56.156C gpu@55.468C tj@56.656C soc1@56.656C VDD_IN 4673mW/4673mW VDD_CPU_GPU_CV 527mW/527mW VDD_SOC 1339mW/1339mW"  # noqa: E501
# TENSORRT.md §5: Orin Nano, root (`sudo timeout 4 tegrastats --interval 1000`).
ORIN_NANO_ROOT = "09-12-2026 02:14:33 RAM 1484/3602MB (lfb 21x4MB) SWAP 436/14089MB (cached 7MB) CPU [3%@729,2%@729,1%@729,0%@729,1%@729,1%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@56.281C soc2@55.843C soc0@54.093C gpu@55.843C tj@56.281C soc1@56.187C VDD_IN 4428mW/4428mW VDD_CPU_GPU_CV 562mW/562mW"  # noqa: E501
# TENSORRT.md §5: AGX Orin 64GB, as quoted there (the 12 CPU entries are elided in the doc).
AGX_ORIN_DOC = "04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) CPU [0%@729,…(12 cores)…] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C SOC2@40.093C Tdiode@33C SOC0@41.093C CV1@-256C GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"  # noqa: E501
# AGX Orin 64GB, JetPack 5.1, root, all 12 cores, GR3D2_FREQ (catid.io "AI on Jetson Orin", 2023).
AGX_ORIN_JP5 = "04-24-2023 00:01:24 RAM 1282/62795MB (lfb 15152x4MB) SWAP 0/31398MB (cached 0MB) CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@0 GR3D2_FREQ 0%@0 VIC_FREQ 729 APE 174 CV0@-256C CPU@42.593C Tboard@32C SOC2@39.343C Tdiode@33.25C SOC0@39.375C CV1@-256C GPU@-256C tj@42.593C SOC1@40.468C CV2@-256C VDD_GPU_SOC 2399mW/2399mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 4032mW/4032mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"  # noqa: E501
# Older releases without the mW unit: the line TENSORRT.md's `VDD_IN 8039/8039` comes from, and
# a TX2 (FindHao/tx-utils#3, non-root, `EMC_FREQ 0%` without a clock).
UNITLESS = "RAM 5123/31906MB (lfb 7510x4MB) SWAP 0/15953MB (cached 0MB) CPU [13%@2265,5%@2265,7%@2265,7%@2265,6%@2265,6%@2265,7%@2265,6%@2265,11%@2265,7%@2265,6%@2265,7%@2265] EMC_FREQ 0%@2133 GR3D_FREQ 0%@1300 VIC_FREQ 115 APE 25 CV0@-256C CPU@52.5C Tboard@42C SOC2@50.437C Tdiode@43.75C SOC0@52.062C CV1@-256C GPU@-256C tj@52.5C SOC1@49.812C CV2@-256C VDD_IN 8039/8039 VDD_CPU_GPU_CV 3231/3231 VDD_SOC 1623/1623"  # noqa: E501
TX2 = "RAM 2020/7852MB (lfb 1164x4MB) CPU [9%@345,21%@345,25%@345,3%@345,1%@345,1%@345] EMC_FREQ 0% GR3D_FREQ 0% PLL@42.5C MCPU@42.5C PMIC@100C Tboard@40C GPU@41C BCPU@42.5C thermal@41.9C Tdiode@41.25C VDD_SYS_GPU 153/158 VDD_SYS_SOC 536/547 VDD_4V0_WIFI 633/527 VDD_IN 3140/3208 VDD_SYS_CPU 536/590 VDD_SYS_DDR 557/601"  # noqa: E501
# TX2 with two cores `off` (rbonghi/jetson_stats#187); no power rails at all.
TX2_OFF = "RAM 1689/3825MB (lfb 339x4MB) SWAP 0/1913MB (cached 0MB) CPU [3%@345,off,off,0%@345,1%@345,1%@345] EMC_FREQ 0% GR3D_FREQ 0% PLL@50.5C MCPU@50.5C PMIC@50C GPU@50C BCPU@50.5C thermal@50.3C"  # noqa: E501
# TENSORRT.md §5: JetPack 7.2 (L4T R39.2) AGX Orin, and Thor (rbonghi/jetson_stats test_06).
AGX_ORIN_JP72 = "07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,7%@2201,5%@2201,27%@2201] EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C gpu@47.625C/47.625C VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW VIN_SYS_5V0 5500mW/5500mW/5500mW"  # noqa: E501
THOR = "RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ @[1000,1000,1000] APE 150"
# Orin Nano Super, JetPack 7.2.1 (L4T R39.2.1), 4 consecutive 1 s lines from a public board report.
ORIN_NANO_JP72 = """\
09-19-2026 13:33:02 RAM 2850/7486MB (lfb 33x4MB) CPU [2%@729,0%@729,0%@729,0%@729,1%@729,0%@729] EMC_FREQ 5%@665 GR3D_FREQ 0%@[305] NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off APE 200 cpu@45.812C/45.812C soc2@44.843C/44.843C soc0@46.093C/46.093C gpu@46.843C/46.843C tj@46.843C/46.843C soc1@46.281C/46.281C VDD_IN 3582mW/3582mW/3582mW VDD_CPU_GPU_CV 523mW/523mW/523mW VDD_SOC 1127mW/1127mW/1127mW
09-19-2026 13:33:03 RAM 2845/7486MB (lfb 33x4MB) CPU [1%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 3%@665 GR3D_FREQ 0%@[305] NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off APE 200 cpu@45.375C/45.812C soc2@44.687C/44.843C soc0@46.25C/46.25C gpu@46.562C/46.843C tj@46.562C/46.843C soc1@46.281C/46.281C VDD_IN 3462mW/3522mW/3582mW VDD_CPU_GPU_CV 442mW/483mW/523mW VDD_SOC 1127mW/1127mW/1127mW
09-19-2026 13:33:04 RAM 2840/7486MB (lfb 33x4MB) CPU [3%@729,0%@729,1%@729,0%@729,0%@729,0%@729] EMC_FREQ 3%@665 GR3D_FREQ 0%@[305] NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off APE 200 cpu@45.687C/45.812C soc2@44.687C/44.843C soc0@46.093C/46.25C gpu@46.781C/46.843C tj@46.781C/46.843C soc1@46.25C/46.281C VDD_IN 3462mW/3502mW/3582mW VDD_CPU_GPU_CV 442mW/469mW/523mW VDD_SOC 1127mW/1127mW/1127mW
09-19-2026 13:33:05 RAM 2837/7486MB (lfb 33x4MB) CPU [1%@729,1%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 3%@665 GR3D_FREQ 0%@[306] NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off APE 200 cpu@45.437C/45.812C soc2@44.718C/44.843C soc0@46.312C/46.312C gpu@46.5C/46.843C tj@46.5C/46.843C soc1@46.25C/46.281C VDD_IN 3462mW/3492mW/3582mW VDD_CPU_GPU_CV 442mW/462mW/523mW VDD_SOC 1127mW/1127mW/1127mW
""".splitlines()  # noqa: E501


def test_orin_nano_jp6_non_root():
    s = parse_line(ORIN_NANO_JP6)
    assert s.timestamp == datetime(2026, 7, 29, 18, 0, 27)
    assert (s.ram_used_mb, s.ram_total_mb, s.lfb_blocks, s.lfb_block_mb) == (2272, 7620, 4, 4)
    assert (s.swap_used_mb, s.swap_total_mb, s.swap_cached_mb) == (221, 3810, 0)
    assert s.cpu_load_pct == (0,) * 6 and s.cpu_mhz == (729, 1036, 1036, 1036, 729, 729)
    assert (s.gpu_load_pct, s.gpu_mhz) == (0, ())  # no @MHz without root
    assert (s.emc_load_pct, s.emc_mhz) == (None, None)  # EMC_FREQ is root only
    assert s.temps_c == {"cpu": 54.937, "soc2": 55.562, "soc0": 56.156, "gpu": 55.468,
                         "tj": 56.656, "soc1": 56.656}
    assert s.rails == {"VDD_IN": Rail(4673, 4673), "VDD_CPU_GPU_CV": Rail(527, 527),
                       "VDD_SOC": Rail(1339, 1339)}
    assert (s.total_power_mw, s.power_source) == (4673, "VDD_IN")  # VDD_IN, not the 6539 sum
    assert s.engines == {} and s.absent_sensors == ()


def test_orin_nano_root_has_emc_gpu_clock_and_engines():
    s = parse_line(ORIN_NANO_ROOT)
    assert (s.ram_used_mb, s.ram_total_mb, s.lfb_blocks) == (1484, 3602, 21)
    assert s.swap_cached_mb == 7 and s.cpu_load_pct == (3, 2, 1, 0, 1, 1)
    assert (s.emc_load_pct, s.emc_mhz, s.gpu_load_pct, s.gpu_mhz) == (0, 2133, 0, (305,))
    assert s.engines == {"NVDEC": None, "NVJPG": None, "NVJPG1": None, "VIC": None, "OFA": None,
                         "APE": 200}
    assert s.temps_c["gpu"] == 55.843 and s.temps_c["soc1"] == 56.187
    assert s.total_power_mw == 4428 and set(s.rails) == {"VDD_IN", "VDD_CPU_GPU_CV"}


def test_agx_orin_sums_rails_skips_nc_and_absent_sensors():
    s = parse_line(AGX_ORIN_DOC)
    assert (s.ram_used_mb, s.ram_total_mb, s.lfb_blocks, s.swap_used_mb) == (4321, 62801, 1759, 19)
    assert s.cpu_load_pct == (0,) and s.cpu_mhz == (729,)  # the doc's "…(12 cores)…" is skipped
    assert (s.emc_mhz, s.gpu_load_pct, s.gpu_mhz) == (2133, 0, (0, 0))
    assert s.engines == {"VIC_FREQ": 729, "APE": 174}
    assert s.absent_sensors == ("CV0", "CV1", "GPU", "CV2")
    assert "CV0" not in s.temps_c and "GPU" not in s.temps_c
    assert s.temps_c == {"CPU": 44.562, "Tboard": 32, "SOC2": 40.093, "Tdiode": 33,
                         "SOC0": 41.093, "tj": 44.343, "SOC1": 41.25}
    assert list(s.rails) == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert s.total_power_mw == 2340 + 390 + 4025 + 301 == 7056
    assert s.power_source == "sum(VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO)"


def test_agx_orin_jp5_full_line_with_second_gpc():
    s = parse_line(AGX_ORIN_JP5)
    assert len(s.cpu_load_pct) == 12 and set(s.cpu_mhz) == {729}
    assert (s.gpu_load_pct, s.gpu_mhz) == (0, (0, 0))  # GR3D_FREQ + GR3D2_FREQ
    assert s.total_power_mw == 2399 + 400 + 4032 + 301 and s.ram_total_mb == 62795


def test_unitless_rails_of_older_jetpack():
    s = parse_line(UNITLESS)
    assert s.rails["VDD_IN"] == Rail(8039, 8039) and s.total_power_mw == 8039
    assert (s.gpu_load_pct, s.gpu_mhz, s.cpu_load_pct[0]) == (0, (1300,), 13)
    tx2 = parse_line(TX2)
    assert tx2.rails["VDD_4V0_WIFI"] == Rail(633, 527) and tx2.total_power_mw == 3140
    assert (tx2.emc_load_pct, tx2.emc_mhz, tx2.swap_total_mb) == (0, None, None)
    assert tx2.temps_c["PMIC"] == 100 and tx2.cpu_load_pct == (9, 21, 25, 3, 1, 1)


def test_offline_cores_and_no_rails():
    s = parse_line(TX2_OFF)
    assert s.cpu_load_pct == (3, None, None, 0, 1, 1)
    assert s.cpu_mhz == (345, None, None, 345, 345, 345)
    assert s.rails == {} and s.total_power_mw is None and s.power_source is None


def test_jetpack_72_three_value_rails_and_temps():
    s = parse_line(AGX_ORIN_JP72)
    assert s.rails["VDD_GPU_SOC"] == Rail(5139, 5139, 5139)
    assert s.total_power_mw == 5139 + 3268 + 5500
    assert s.temps_c["cpu"] == 52.968 and s.temps_max_c["cpu"] == 52.968
    assert (s.gpu_load_pct, s.gpu_mhz, s.emc_load_pct, s.emc_mhz) == (12, (1300, 1300), 3, 3199)
    assert s.engines["PVA0_FREQ"] is None and s.engines["APE"] == 174
    assert s.swap_total_mb is None and len(s.cpu_load_pct) == 12
    nano = parse_line(ORIN_NANO_JP72[1])
    assert nano.rails["VDD_IN"] == Rail(3462, 3522, 3582)  # cur / average / max
    assert nano.temps_c["cpu"] == 45.375 and nano.temps_max_c["cpu"] == 45.812


def test_thor_gpu_clocks_without_load_and_kb_lfb():
    s = parse_line(THOR)
    assert (s.gpu_load_pct, s.gpu_mhz) == (None, (1000, 1000, 1000))
    assert (s.lfb_blocks, s.lfb_block_mb, s.emc_load_pct, s.emc_mhz) == (1, 0.5, 2, 1866)
    assert s.timestamp is None and s.total_power_mw is None and s.engines == {"APE": 150}


@pytest.mark.parametrize("field, load, mhz", [
    ("0%", 0, ()), ("7%@306", 7, (306,)), ("26%@[306]", 26, (306,)), ("0%@[0,0]", 0, (0, 0)),
    ("12%@[1300,1300]", 12, (1300, 1300)), ("@[1000,1000,1000]", None, (1000, 1000, 1000)),
])
def test_every_gr3d_form(field, load, mhz):
    s = parse_line(f"RAM 1/2MB (lfb 1x4MB) GR3D_FREQ {field} VDD_IN 10mW/10mW")
    assert (s.gpu_load_pct, s.gpu_mhz, s.total_power_mw) == (load, mhz, 10)


def test_unknown_tokens_are_ignored():
    noisy = ORIN_NANO_JP6.replace("GR3D_FREQ 0%", "GR3D_FREQ 0% NEW[1,2] x=y qux@abc FAN 55% ~")
    assert parse_line(noisy) == parse_line(ORIN_NANO_JP6)
    engine_like = parse_line(ORIN_NANO_JP6.replace("GR3D_FREQ 0%", "GR3D_FREQ 0% PVA1_FREQ 115"))
    assert engine_like.engines == {"PVA1_FREQ": 115} and engine_like.total_power_mw == 4673


@pytest.mark.parametrize("line", ["", "hello world", "Error: tegrastats: cannot open /sys",
                                  "NV Power Mode: MAXN", "VDD_IN 4673mW/4673mW"])
def test_non_tegrastats_line_raises(line):
    with pytest.raises(DataError, match="not a tegrastats line"):
        parse_line(line)


def test_summarize_real_jetpack72_run():
    stats = summarize([parse_line(line) for line in ORIN_NANO_JP72], inferences=200, seconds=4.0)
    # tegrastats' own running average after the 4th line is 3492 mW: the same as our mean.
    assert stats["power_mw_mean"] == pytest.approx(3492.0) and stats["power_mw_peak"] == 3582
    assert stats["power_source"] == "VDD_IN" and stats["samples"] == 4
    assert (stats["ram_used_mb_max"], stats["ram_used_mb_mean"]) == (2850, 2843.0)
    assert (stats["gpu_load_pct_mean"], stats["gpu_load_pct_max"]) == (0, 0)
    assert stats["interval_ms"] == 1000.0  # from the 1 s timestamps (no sampler clock here)
    assert stats["energy_j"] == pytest.approx(3.492 * 4.0)
    assert stats["energy_per_inference_mj"] == pytest.approx(3492.0 * 4.0 / 200)  # 69.84 mJ
    assert stats["temp_max_c"] == 46.843 and stats["ram_total_mb"] == 7486


def test_summarize_without_duration_or_samples():
    stats = summarize([parse_line(THOR)])
    assert stats["power_mw_mean"] is None and stats["energy_j"] is None
    assert stats["gpu_load_pct_mean"] is None and stats["interval_ms"] is None
    with pytest.raises(DataError, match="no tegrastats samples"):
        summarize([])
    with pytest.raises(ValueError):
        summarize([parse_line(THOR)], inferences=0, seconds=1.0)


class FakeProc:
    """A tegrastats stand-in: yields queued lines until terminated (or killed, if stubborn)."""

    def __init__(self, lines, stubborn=False):
        self._queue: queue.Queue = queue.Queue()
        for line in lines:
            self._queue.put(line + "\n")
        self.stdout = self
        self.stubborn = stubborn
        self.terminated = self.killed = False

    def __iter__(self):
        while (item := self._queue.get()) is not None:
            yield item

    def _done(self):
        return self.killed or (self.terminated and not self.stubborn)

    def poll(self):
        return -15 if self._done() else None

    def terminate(self):
        self.terminated = True
        if not self.stubborn:
            self._queue.put(None)

    def kill(self):
        self.killed = True
        self._queue.put(None)

    def wait(self, timeout=None):
        if not self._done():
            raise subprocess.TimeoutExpired("tegrastats", timeout)
        return -9 if self.killed else -15


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for tegrastats samples"
        time.sleep(0.02)


def test_sampler_streams_lines_and_stops_cleanly():
    proc, calls = FakeProc(["NVPM WARN: not a sample", *ORIN_NANO_JP72]), []

    def popen(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return proc

    with TegrastatsSampler(interval_ms=100, popen=popen) as sampler:
        _wait_for(lambda: len(sampler.samples) == 4)  # visible while tegrastats still runs
        assert not proc.terminated
    assert calls[0][0] == ["tegrastats", "--interval", "100"]
    assert calls[0][1]["stdout"] == subprocess.PIPE and calls[0][1]["text"] is True
    assert proc.terminated and not proc.killed and sampler.returncode == -15
    assert len(sampler.lines) == 5 and sampler.rejected == 1
    assert [s.total_power_mw for s in sampler.samples] == [3582, 3462, 3462, 3462]
    times = [s.t_s for s in sampler.samples]
    assert times == sorted(times) and times[0] >= 0
    stats = sampler.summary(inferences=50)
    assert stats["seconds"] == sampler.elapsed_s > 0
    assert stats["energy_per_inference_mj"] == pytest.approx(3492.0 * sampler.elapsed_s / 50)


def test_sampler_kills_a_process_that_ignores_sigterm():
    proc = FakeProc([ORIN_NANO_JP6], stubborn=True)
    with TegrastatsSampler(popen=lambda cmd, **kw: proc, stop_timeout_s=0.2) as sampler:
        _wait_for(lambda: len(sampler.samples) == 1)
    assert proc.terminated and proc.killed and sampler.returncode == -9
    assert sampler.samples[0].total_power_mw == 4673


def test_sampler_runs_a_real_process(tmp_path):
    fake = tmp_path / "tegrastats"
    fake.write_text(f"#!{sys.executable}\nimport sys, time\n"
                    "assert sys.argv[1:] == ['--interval', '50']\nwhile True:\n"
                    f"    print({ORIN_NANO_ROOT!r}, flush=True)\n    time.sleep(0.05)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert TegrastatsSampler.available(str(fake))
    with TegrastatsSampler(interval_ms=50, binary=str(fake)) as sampler:
        _wait_for(lambda: len(sampler.samples) >= 3)
    assert sampler.returncode == -15  # stopped by SIGTERM, not killed
    assert {s.total_power_mw for s in sampler.samples} == {4428}
    assert sampler.summary()["interval_ms"] > 0


def test_missing_tegrastats_says_it_is_jetson_only():
    assert not TegrastatsSampler.available("tegrastats-not-here-xyz")
    with pytest.raises(BackendError, match="only on NVIDIA Jetson.*without the tegrastats"):
        with TegrastatsSampler(binary="tegrastats-not-here-xyz"):
            pass

    def no_binary(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])

    with pytest.raises(BackendError, match="L4T"):
        TegrastatsSampler(popen=no_binary).start()


# `jetson_clocks --show` as published (trailing spaces stripped). AGX Orin, JetPack 7.2 (L4T
# R39.2.0), MAXN, after `sudo jetson_clocks` (a public environment log, 2026-07-24):
AGX_JP72_LOCKED = """\
SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11, Offline CPUs:
cpu0:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu1:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu2:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu3:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu4:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu5:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu6:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu7:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu8:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu9:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu10: Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu11: Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
Active GPU TPCs: 8
EMC MinFreq=3199000000 MaxFreq=3199000000 CurrentFreq=3199000000
DLA0_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000
DLA0_FALCON: Online=1 MinFreq=0 MaxFreq=844800000 CurrentFreq=844800000
DLA1_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000
DLA1_FALCON: Online=1 MinFreq=0 MaxFreq=844800000 CurrentFreq=844800000
PVA0_VPS0: Online=1 MinFreq=0 MaxFreq=1369600000 CurrentFreq=1369600000
PVA0_AXI:  Online=1 MinFreq=0 MaxFreq=985600000 CurrentFreq=985600000
FAN Dynamic Speed Control=nvfancontrol hwmon2_pwm1=66
FAN Dynamic Speed Control=nvfancontrol hwmon2_pwm1_enable=1
NV Power Mode: MAXN
"""  # noqa: E501
# AGX Orin 64GB, JetPack 5.1, MAXN but not locked (catid.io "AI on Jetson Orin", 2023).
AGX_JP5_UNLOCKED = """\
SOC family:tegra234  Machine:Jetson AGX Orin
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu10: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1113600 IdleStates: WFI=1 c7=1
cpu11: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1113600 IdleStates: WFI=1 c7=1
cpu2: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu3: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
cpu4: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu5: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu6: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2188800 IdleStates: WFI=1 c7=1
cpu7: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2112000 IdleStates: WFI=1 c7=1
cpu8: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu9: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0
DLA0_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000
DLA0_FALCON: Online=1 MinFreq=0 MaxFreq=844800000 CurrentFreq=844800000
DLA1_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000
DLA1_FALCON: Online=1 MinFreq=0 MaxFreq=844800000 CurrentFreq=844800000
PVA0_VPS0: Online=1 MinFreq=0 MaxFreq=1152000000 CurrentFreq=1152000000
PVA0_AXI:  Online=1 MinFreq=0 MaxFreq=832000000 CurrentFreq=832000000
FAN Dynamic Speed control=active hwmon2_pwm1=55
NV Power Mode: MAXN
"""  # noqa: E501
# Orin Nano Super, JetPack 7.2.1, 25W, not locked (same public report as ORIN_NANO_JP72).
NANO_JP72_25W = """\
SOC family:tegra234  Machine:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super
Online CPUs: 0-5, Offline CPUs:
cpu0:  Governor=schedutil MinFreq=729600 MaxFreq=1344000 CurrentFreq=960000 IdleStates: WFI=1 c7=1
cpu1:  Governor=schedutil MinFreq=729600 MaxFreq=1344000 CurrentFreq=960000 IdleStates: WFI=1 c7=1
cpu2:  Governor=schedutil MinFreq=729600 MaxFreq=1344000 CurrentFreq=1344000 IdleStates: WFI=1 c7=1
cpu3:  Governor=schedutil MinFreq=729600 MaxFreq=1344000 CurrentFreq=1344000 IdleStates: WFI=1 c7=1
cpu4:  Governor=schedutil MinFreq=729600 MaxFreq=1344000 CurrentFreq=1344000 IdleStates: WFI=1 c7=1
cpu5:  Governor=schedutil MinFreq=729600 MaxFreq=1344000 CurrentFreq=1267200 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=918000000 CurrentFreq=306000000
Active GPU TPCs: 4
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=665600000
FAN Dynamic Speed Control=nvfancontrol hwmon0_pwm1=60
FAN Dynamic Speed Control=nvfancontrol hwmon0_pwm1_enable=1
NV Power Mode: 25W
"""  # noqa: E501
# Orin Nano Super, JetPack 6 (L4T 36.4.7), MAXN_SUPER after `sudo jetson_clocks` (EMC override).
NANO_JP6_LOCKED = """\
cpu0: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
cpu1: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
GPU MinFreq=1020000000 MaxFreq=1020000000 CurrentFreq=1020000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
NV Power Mode: MAXN_SUPER
"""
# Jetson Nano, 5W, locked, cores 2-3 offline (Seeed article; its line wraps joined).
NANO_5W_LOCKED = """\
cpu0: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu2: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
GPU MinFreq=614400000 MaxFreq=614400000 CurrentFreq=614400000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
NV Power Mode: 5W
"""  # noqa: E501
# NVIDIA's jetson_clocks.sh as a normal user: "[ `whoami` != root ] && echo Error: Run this
# script\($0\) as a root user && exit 1" (script source; not a captured run).
NOT_ROOT = "Error: Run this script(/usr/bin/jetson_clocks) as a root user\n"


def fake_run(nvpmodel="NV Power Mode: MAXN\n0\n", clocks=AGX_JP72_LOCKED, clocks_rc=0):
    def run(cmd, **kwargs):
        assert kwargs["capture_output"] and kwargs["timeout"] > 0
        if cmd == ["nvpmodel", "-q"]:
            return subprocess.CompletedProcess(cmd, 0, nvpmodel, "")
        assert cmd == ["jetson_clocks", "--show"]
        return subprocess.CompletedProcess(cmd, clocks_rc, clocks, "")
    return run


def test_maxn_locked_gives_no_warnings():
    mode = power_mode(run=fake_run())
    assert mode["nvpmodel"] == {"mode": "MAXN", "id": 0} and mode["nvpmodel_reason"] is None
    clocks = mode["jetson_clocks"]
    assert clocks["locked"] and clocks["emc_locked"] and clocks["power_mode"] == "MAXN"
    assert clocks["gpu_mhz"] == {"min": 1300, "max": 1300, "cur": 1300}
    assert clocks["cpu_mhz"] == [2201]
    assert warnings(mode) == []


def test_15w_and_25w_unlocked_warn_with_the_fix():
    mode = power_mode(run=fake_run("NV Power Mode: 25W\n1\n", NANO_JP72_25W))
    assert mode["nvpmodel"] == {"mode": "25W", "id": 1}
    clocks = mode["jetson_clocks"]
    assert (clocks["locked"], clocks["cpu_locked"], clocks["gpu_locked"], clocks["emc_locked"]) \
        == (False, False, False, False)
    found = warnings(mode)
    assert len(found) == 2
    assert "25W (id 1)" in found[0] and "nvpmodel -m 0" in found[0] and "-m 2" in found[0]
    assert "vary by JetPack" in found[0]
    assert "sudo jetson_clocks" in found[1] and "CPU, GPU, EMC" in found[1]
    fifteen = warnings(power_mode(run=fake_run("NV Power Mode: 15W\n0\n")))
    assert len(fifteen) == 1 and "15W (id 0)" in fifteen[0]


def test_maxn_but_unlocked_agx_jp5():
    clocks = parse_jetson_clocks(AGX_JP5_UNLOCKED)
    assert not clocks["locked"] and not clocks["gpu_locked"] and clocks["emc_locked"] is False
    assert clocks["gpu_mhz"] == {"min": 306, "max": 1300, "cur": 306}
    assert clocks["emc_mhz"] == {"min": 204, "max": 3199, "cur": 2133}
    found = warnings({"nvpmodel": {"mode": "MAXN", "id": 0}, "jetson_clocks": clocks})
    assert len(found) == 1 and "not locked (CPU, GPU, EMC" in found[0]


def test_locked_outputs_with_emc_override_and_offline_cores():
    assert parse_jetson_clocks(NANO_JP6_LOCKED)["locked"]
    nano = parse_jetson_clocks(NANO_5W_LOCKED)
    assert nano["locked"] and nano["cpu_mhz"] == [921] and nano["power_mode"] == "5W"
    # jetson_clocks cannot write an offline core's cpufreq: its MinFreq may stay low (edited line)
    offline_low = NANO_5W_LOCKED.replace("Online=0 Governor=schedutil MinFreq=921600",
                                         "Online=0 Governor=schedutil MinFreq=102000")
    assert parse_jetson_clocks(offline_low)["locked"]
    online_low = NANO_5W_LOCKED.replace("Online=1 Governor=schedutil MinFreq=921600",
                                        "Online=1 Governor=schedutil MinFreq=102000")
    assert not parse_jetson_clocks(online_low)["cpu_locked"]
    relaxed = NANO_JP6_LOCKED.replace("FreqOverride=1", "FreqOverride=0")
    assert parse_jetson_clocks(relaxed)["emc_locked"] is False
    assert parse_jetson_clocks("SOC family:tegra234\n") is None


def test_non_root_jetson_clocks_is_none_with_reason():
    mode = power_mode(run=fake_run("NV Power Mode: MAXN_SUPER\n2\n", NOT_ROOT, clocks_rc=1))
    assert mode["nvpmodel"] == {"mode": "MAXN_SUPER", "id": 2}
    assert mode["jetson_clocks"] is None
    assert "needs root" in mode["jetson_clocks_reason"] and "sudo" in mode["jetson_clocks_reason"]
    assert warnings(mode) == [f"clock lock state unknown ({mode['jetson_clocks_reason']})"]


def test_not_a_jetson():
    def missing(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])

    mode = power_mode(run=missing)
    assert mode["nvpmodel"] is None and mode["jetson_clocks"] is None
    assert "not a Jetson" in mode["nvpmodel_reason"]
    assert len(warnings(mode)) == 2
    if shutil.which("nvpmodel") is None and os.name == "posix":  # this machine, really run
        assert power_mode()["nvpmodel"] is None


def test_parse_nvpmodel_forms():
    assert parse_nvpmodel("NV Power Mode: MAXN_SUPER\n2\n") == {"mode": "MAXN_SUPER", "id": 2}
    assert parse_nvpmodel("NV Power Mode: MAXN 0 ") == {"mode": "MAXN", "id": 0}
    assert parse_nvpmodel("NV Power Mode: 15W\n") == {"mode": "15W", "id": None}
    assert parse_nvpmodel("nvpmodel: command not found") is None
