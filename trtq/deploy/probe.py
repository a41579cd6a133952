"""What a Jetson is: module, L4T/JetPack/TensorRT versions, DLA, tools, free memory and disk.

`probe.sh` runs on the device (read-only) and prints KEY=VALUE lines; `parse_probe` turns them
into `DeviceFacts`. JetPack follows from the L4T release in /etc/nv_tegra_release, and the
TensorRT version from JetPack's NvInferVersion.h when the dev headers are installed, else from
the release table (TENSORRT.md §1.1).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from importlib import resources

from trtq.engines.device import module_has_dla
from trtq.engines.versions import TrtVersion, parse_version
from trtq.errors import BackendError

# L4T release -> (JetPack, TensorRT it ships). Longest prefix wins. TENSORRT.md §1.1: R35 is
# JetPack 5.1.x with TensorRT 8.5.2, R36.2/36.3 JetPack 6.0 with 8.6.2, R36.4 JetPack 6.1 and
# R36.4.3/36.4.4 JetPack 6.2/6.2.1 with 10.3, R38.2/38.4 JetPack 7.0/7.1 (Thor), R39.2 7.2.
_L4T_RELEASES = {
    "35.2": ("5.1", "8.5.2"), "35.3": ("5.1.1", "8.5.2"), "35.4": ("5.1.2", "8.5.2"),
    "35.5": ("5.1.3", "8.5.2"), "35.6": ("5.1.4", "8.5.2"),
    "36.2": ("6.0 DP", "8.6.2"), "36.3": ("6.0", "8.6.2"),
    "36.4": ("6.1", "10.3.0"), "36.4.3": ("6.2", "10.3.0"), "36.4.4": ("6.2.1", "10.3.0"),
    "38.2": ("7.0", None), "38.4": ("7.1", None), "39.2": ("7.2", "11.4"),
}
_JETPACK_L4T = {jetpack: l4t for l4t, (jetpack, _) in _L4T_RELEASES.items()}
_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def probe_script() -> str:
    return resources.files("trtq.deploy").joinpath("probe.sh").read_text(encoding="utf-8")


def parse_l4t(line: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, ...' -> '36.4.3'."""
    match = _RELEASE.search(line or "")
    return f"{match.group(1)}.{match.group(2)}" if match else None


def jetpack_for(l4t: str | None) -> tuple[str | None, str | None]:
    """(JetPack, TensorRT) for an L4T release, by the longest known prefix; (None, None)."""
    if not l4t:
        return None, None
    parts = l4t.split(".")
    for n in range(len(parts), 1, -1):
        found = _L4T_RELEASES.get(".".join(parts[:n]))
        if found:
            return found
    return None, None


def l4t_for_jetpack(jetpack: str) -> str:
    """The L4T release of a JetPack ('6.2' -> '36.4.3'), for planning without a device."""
    if jetpack not in _JETPACK_L4T:
        known = ", ".join(sorted(_JETPACK_L4T, key=lambda v: [int(p) for p in
                                                              v.split()[0].split(".")]))
        raise BackendError(f"unknown JetPack {jetpack!r}; trtq knows {known}")
    return _JETPACK_L4T[jetpack]


@dataclass(frozen=True)
class DeviceFacts:
    """One device as the probe saw it (paths are the device's; '' = not found)."""

    model: str
    l4t: str | None
    jetpack: str | None
    tensorrt: str | None
    tensorrt_source: str  # "header" (NvInferVersion.h), "jetpack" (release table) or "unknown"
    dla: bool | None
    arch: str
    trtexec: str
    tegrastats: str
    nvcc: str
    cmake: str
    trtq: str
    rsync: str
    sha256sum: str
    mem_available_mib: float | None
    mem_total_mib: float | None
    disk_free_mib: float | None
    power_mode: dict = field(default_factory=dict)  # as trtq.bench.jetson_power_mode records it
    probed: bool = True  # False: assumed for an offline --dry-run

    def trt_version(self) -> TrtVersion:
        if not self.tensorrt:
            raise BackendError(f"cannot tell the TensorRT version on {self.describe()}: "
                               "install the JetPack TensorRT packages (sudo apt install "
                               "nvidia-jetpack) so /usr/include/aarch64-linux-gnu/"
                               "NvInferVersion.h exists")
        return parse_version(self.tensorrt)

    def describe(self) -> str:
        jetpack = f"JetPack {self.jetpack}" if self.jetpack else "unknown JetPack"
        l4t = f"L4T R{self.l4t}" if self.l4t else "no L4T release file"
        trt = f"TensorRT {self.tensorrt}" if self.tensorrt else "TensorRT unknown"
        return f"{self.model or 'unknown model'} ({jetpack}, {l4t}, {trt})"

    def to_dict(self) -> dict:
        return asdict(self)


def _kib_to_mib(text: str) -> float | None:
    return int(text) / 1024 if text.isdigit() else None


def _power_mode(values: dict) -> dict:
    """nvpmodel mode and clock lock from the probe, in `jetson_power_mode.power_mode`'s shape."""
    from trtq.bench.jetson_power_mode import parse_jetson_clocks, parse_nvpmodel

    nvp_text = values.get("nvpmodel_q", "").replace("|", "\n")
    clk_text = values.get("jetson_clocks_show", "").replace("|", "\n")
    nvp = parse_nvpmodel(nvp_text) if nvp_text else None
    clocks = parse_jetson_clocks(clk_text) if clk_text else None
    return {
        "nvpmodel": nvp,
        "nvpmodel_reason": None if nvp else ("nvpmodel not found on the device"
                                             if "nvpmodel_q" not in values else
                                             f"nvpmodel -q said: {nvp_text.strip()[:200]}"),
        "jetson_clocks": clocks,
        "jetson_clocks_reason": None if clocks else (
            "jetson_clocks not found on the device" if "jetson_clocks_show" not in values else
            "jetson_clocks --show needs root (log in as root, or allow `sudo -n jetson_clocks`)"
            if "root" in clk_text.lower() or "password" in clk_text.lower() else
            f"jetson_clocks --show said: {clk_text.strip()[:200]}"),
    }


def parse_probe(text: str) -> DeviceFacts:
    """DeviceFacts from probe.sh's output; refuses a probe that did not run to its end."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    if values.get("probe_done") != "1":
        raise BackendError("the device probe did not finish (its output ends early): is the "
                           f"remote shell POSIX sh? Output was:\n{text.strip()[-1000:]}")
    l4t = parse_l4t(values.get("l4t", ""))
    jetpack, table_trt = jetpack_for(l4t)
    header = values.get("tensorrt_header", "")
    trt = header if re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", header) else table_trt
    model = values.get("model", "")
    return DeviceFacts(
        model=model, l4t=l4t, jetpack=jetpack, tensorrt=trt,
        tensorrt_source="header" if trt == header and header else
        ("jetpack" if trt else "unknown"),
        dla=module_has_dla(model), arch=values.get("arch", ""),
        trtexec=values.get("trtexec", ""), tegrastats=values.get("tegrastats", ""),
        nvcc=values.get("nvcc", ""), cmake=values.get("cmake", ""),
        trtq=values.get("trtq", ""), rsync=values.get("rsync", ""),
        sha256sum=values.get("sha256sum", ""),
        mem_available_mib=_kib_to_mib(values.get("mem_available_kib", "")),
        mem_total_mib=_kib_to_mib(values.get("mem_total_kib", "")),
        disk_free_mib=_kib_to_mib(values.get("disk_free_kib", "")),
        power_mode=_power_mode(values))


def assumed_facts(jetpack: str, model: str) -> DeviceFacts:
    """Facts for planning offline (`--dry-run --jetpack`): JetPack's default tool paths."""
    l4t = l4t_for_jetpack(jetpack)
    _, trt = jetpack_for(l4t)
    return DeviceFacts(
        model=model, l4t=l4t, jetpack=jetpack, tensorrt=trt,
        tensorrt_source="jetpack" if trt else "unknown", dla=module_has_dla(model),
        arch="aarch64", trtexec="/usr/src/tensorrt/bin/trtexec", tegrastats="/usr/bin/tegrastats",
        nvcc="/usr/local/cuda/bin/nvcc", cmake="/usr/bin/cmake", trtq="", rsync="/usr/bin/rsync",
        sha256sum="/usr/bin/sha256sum", mem_available_mib=None, mem_total_mib=None,
        disk_free_mib=None, probed=False)
