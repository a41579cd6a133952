"""Record the Jetson power mode (`nvpmodel -q`) and whether clocks are locked (`jetson_clocks`).

A Jetson benchmark means little without both: nvpmodel caps clocks and online cores per mode, and
without `sudo jetson_clocks` DVFS lets CPU/GPU/EMC idle down between inferences. Facts used
here (../shared/TENSORRT.md §5): `sudo nvpmodel -q` / `-m <id>`; MAXN is `-m 0` on AGX Orin 64GB,
MAXN_SUPER is `-m 2` on Orin Nano with JetPack 6.2, and "mode ID varies by JetPack version";
`sudo jetson_clocks` locks clocks and `sudo jetson_clocks --show` verifies them.

`nvpmodel -q` prints the mode name, then its id on the next line:

    NV Power Mode: MAXN_SUPER
    2

`jetson_clocks --show` needs root (as a normal user the script prints "Error: Run this script(...)
as a root user" and exits 1). What "locked" looks like follows from what `jetson_clocks` writes
(NVIDIA's jetson_clocks.sh: `scaling_max_freq` into `scaling_min_freq` for every CPU, GPU
`max_freq` into `min_freq`, EMC max into the update rate with `FreqOverride=1`), and matches
published `--show` output before and after locking (AGX Orin JetPack 5 and 7.2, Orin Nano Super
JetPack 6 and 7.2, Nano 5 W; quoted in tests/bench/test_tegrastats.py):

    cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 ...
    GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000        <- not locked
    cpu0:  Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 ...
    GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000      <- locked
    EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1

So: every online CPU has MinFreq == MaxFreq, the GPU has MinFreq == MaxFreq, and EMC runs at
MaxFreq (with FreqOverride=1 where that field is printed; JetPack 7.2 drops it and raises MinFreq).
DLA/PVA lines keep MinFreq=0 even when locked and are not checked.
"""

from __future__ import annotations

import logging
import re
import subprocess

log = logging.getLogger("trtq.bench")

MAX_MODES = ("MAXN", "MAXN_SUPER")
_MODE = re.compile(r"NV Power Mode:\s*(\S+)(?:[ \t]+(\d+))?")
_CPU = re.compile(r"^cpu(\d+):\s.*?MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)")
_ONLINE = re.compile(r"\bOnline=(\d)")
_UNIT = re.compile(r"^(GPU|EMC) MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)"
                   r"(?: FreqOverride=(\d))?")


def _call(cmd: list[str], run) -> tuple[str | None, str | None]:
    """(stdout, None) on success, else (output or None, the reason it failed)."""
    try:
        done = run(cmd, capture_output=True, text=True, timeout=15, check=False)
    except FileNotFoundError:
        return None, f"{cmd[0]} not found: not a Jetson (L4T) system"
    except PermissionError as exc:
        return None, f"{' '.join(cmd)} not permitted ({exc})"
    except subprocess.TimeoutExpired:
        return None, f"{' '.join(cmd)} timed out"
    text = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        for line in text.splitlines():
            if "root" in line.lower() or "permission" in line.lower():
                first = line.strip()
        return text, f"{' '.join(cmd)} exited {done.returncode}: {first}".rstrip(": ")
    return done.stdout or "", None


def parse_nvpmodel(text: str) -> dict | None:
    """`{"mode": "MAXN", "id": 0}` from `nvpmodel -q` output (id None when absent)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if match := _MODE.search(line):
            following = next((ln.strip() for ln in lines[i + 1:] if ln.strip()), "")
            same_line = match.group(2)  # `NV Power Mode: MAXN 0` once newlines are squashed
            mode_id = same_line or (following if following.isdigit() else None)
            return {"mode": match.group(1), "id": None if mode_id is None else int(mode_id)}
    return None


def parse_jetson_clocks(text: str) -> dict | None:
    """Clock lock state from `jetson_clocks --show`; None when the output has no CPU/GPU lines."""
    cpus: dict[int, dict] = {}
    units: dict[str, dict] = {}
    mode = None
    for line in text.splitlines():
        line = line.strip()
        if cpu := _CPU.match(line):
            online = _ONLINE.search(line)
            if online is None or online.group(1) == "1":  # JetPack 7.2 omits Online=
                idx, low, high, cur = map(int, cpu.groups())
                cpus[idx] = {"min": low, "max": high, "cur": cur}
        elif unit := _UNIT.match(line):
            name, low, high, cur, override = unit.groups()
            units[name] = {"min": int(low), "max": int(high), "cur": int(cur),
                           "override": None if override is None else int(override)}
        elif match := _MODE.search(line):
            mode = match.group(1)
    if not cpus or "GPU" not in units:
        return None
    gpu, emc = units["GPU"], units.get("EMC")
    cpu_locked = all(c["min"] == c["max"] for c in cpus.values())
    gpu_locked = gpu["min"] == gpu["max"]
    emc_locked = None if emc is None else (
        emc["cur"] == emc["max"] and emc["override"] in (None, 1))
    return {
        "locked": cpu_locked and gpu_locked and emc_locked is not False,
        "cpu_locked": cpu_locked,
        "gpu_locked": gpu_locked,
        "emc_locked": emc_locked,
        "cpu_mhz": sorted({c["cur"] // 1000 for c in cpus.values()}),
        "gpu_mhz": {k: v // 1_000_000 for k, v in gpu.items() if k != "override"},
        "emc_mhz": None if emc is None else {
            k: v // 1_000_000 for k, v in emc.items() if k != "override"},
        "power_mode": mode,
    }


def power_mode(run=subprocess.run) -> dict:
    """nvpmodel mode and jetson_clocks state; each part is None with a `*_reason` when unreadable.

    `run` is the `subprocess.run`-compatible launcher (tests inject recorded output). Nothing is
    run with sudo: as a normal user the clocks part is None with the reason.
    """
    out, reason = _call(["nvpmodel", "-q"], run)
    nvp = parse_nvpmodel(out) if out is not None and reason is None else None
    if reason is None and nvp is None:
        reason = "nvpmodel -q printed no 'NV Power Mode:' line"
    clk_out, clk_reason = _call(["jetson_clocks", "--show"], run)
    clocks = parse_jetson_clocks(clk_out) if clk_reason is None and clk_out is not None else None
    if clk_reason is not None and "root" in clk_reason.lower():
        clk_reason = ("jetson_clocks --show needs root: run the benchmark with sudo, or record "
                      f"`sudo jetson_clocks --show` by hand ({clk_reason})")
    elif clk_reason is None and clocks is None:
        clk_reason = "jetson_clocks --show printed no CPU/GPU frequency lines"
    for what, why in (("nvpmodel", reason), ("jetson_clocks", clk_reason)):
        if why:
            log.info("%s state not recorded: %s", what, why)
    return {"nvpmodel": nvp, "nvpmodel_reason": reason,
            "jetson_clocks": clocks, "jetson_clocks_reason": clk_reason}


def warnings(mode: dict) -> list[str]:
    """Human-readable problems with a `power_mode()` result for a benchmark (empty when fine)."""
    found: list[str] = []
    nvp = mode.get("nvpmodel")
    if nvp is None:
        found.append(f"power mode unknown ({mode.get('nvpmodel_reason')}); results cannot be "
                     "compared with other Jetson runs")
    elif nvp["mode"] not in MAX_MODES:
        ident = "" if nvp["id"] is None else f" (id {nvp['id']})"
        found.append(
            f"power mode is {nvp['mode']}{ident}, not MAXN/MAXN_SUPER: clocks and cores "
            "are capped. For peak numbers run `sudo nvpmodel -m 0` (MAXN on AGX Orin) or "
            "`sudo nvpmodel -m 2` (MAXN_SUPER on Orin Nano, JetPack 6.2); mode ids vary by "
            "JetPack, so check them with `nvpmodel -p --verbose` (POWER_MODEL ID=.. NAME=..)")
    clocks = mode.get("jetson_clocks")
    if clocks is None:
        found.append(f"clock lock state unknown ({mode.get('jetson_clocks_reason')})")
    elif not clocks["locked"]:
        parts = [n for n in ("cpu", "gpu", "emc") if clocks[f"{n}_locked"] is False]
        found.append(f"clocks are not locked ({', '.join(parts).upper()} still scaling): run "
                     "`sudo jetson_clocks` before benchmarking so DVFS does not add latency jitter")
    return found
