"""The stand-in Jetson root for the `trtq deploy` tests: an Orin Nano on JetPack 6.2.

`write_device_root` writes the release file (L4T R36.4.3), the device-tree model, meminfo and
TensorRT 10.3.0.30's version header, plus stand-in `trtexec` and `tegrastats` programs. Only the
trtexec performance summary (NVIDIA/TensorRT#4177) and the tegrastats line are recorded real
output; the other texts are plausible wording.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

L4T_RELEASE = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
               "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n"
               "TARGET_USERSPACE_LIB_DIR=nvidia\n")
MODEL = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
NVINFER_VERSION_H = """\
#ifndef NV_INFER_VERSION_H
#define NV_INFER_VERSION_H

#define NV_TENSORRT_MAJOR 10 //!< TensorRT major version.
#define NV_TENSORRT_MINOR 3 //!< TensorRT minor version.
#define NV_TENSORRT_PATCH 0 //!< TensorRT patch version.
#define NV_TENSORRT_BUILD 30 //!< TensorRT build number.

#define NV_TENSORRT_LWS_MAJOR 0 //!< TensorRT LWS major version.
#define NV_TENSORRT_LWS_MINOR 0 //!< TensorRT LWS minor version.
#define NV_TENSORRT_LWS_PATCH 0 //!< TensorRT LWS patch version.

#endif // NV_INFER_VERSION_H
"""
# An Orin Nano 8GB shape: MemTotal/MemAvailable as specified, the other values illustrative.
MEMINFO = (("MemTotal", 7802164), ("MemFree", 4387032), ("MemAvailable", 5931420),
           ("Buffers", 40124), ("Cached", 1718436), ("SwapCached", 0), ("Active", 698412),
           ("Inactive", 2195048), ("Active(anon)", 5344), ("Inactive(anon)", 1172256),
           ("Active(file)", 693068), ("Inactive(file)", 1022792), ("Unevictable", 0),
           ("Mlocked", 0), ("SwapTotal", 3901072), ("SwapFree", 3674768), ("Dirty", 124),
           ("Writeback", 0), ("AnonPages", 1135020), ("Mapped", 455236), ("Shmem", 42580),
           ("KReclaimable", 97052), ("Slab", 234828), ("SReclaimable", 97052),
           ("SUnreclaim", 137776), ("KernelStack", 11888), ("ShadowCallStack", 3012),
           ("PageTables", 20356), ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
           ("CommitLimit", 7802152), ("Committed_AS", 4319480), ("VmallocTotal", 263061440),
           ("VmallocUsed", 31932), ("VmallocChunk", 0), ("Percpu", 1824),
           ("HardwareCorrupted", 0), ("AnonHugePages", 0), ("ShmemHugePages", 0),
           ("ShmemPmdMapped", 0), ("FileHugePages", 0), ("FilePmdMapped", 0),
           ("CmaTotal", 262144), ("CmaFree", 253952), ("HugePages_Total", None),
           ("HugePages_Free", None), ("HugePages_Rsvd", None), ("HugePages_Surp", None),
           ("Hugepagesize", 2048), ("Hugetlb", 0))

# --- the stand-in programs (self-contained: they run over ssh, outside pytest) -------------------

TRTEXEC = r'''#!@PYTHON@
"""Stand-in for TensorRT 10.3's trtexec, written by trtq's tests (not NVIDIA's program).

--onnx=F builds (fails when F is missing/empty or ROOT/standin/fail-build exists), --saveEngine=E
writes a fake plan, --loadEngine=E runs and prints the performance summary recorded from a real
TensorRT 10.x run (NVIDIA/TensorRT#4177). ROOT/standin/{build,run}-seconds hold extra delays.
"""
import hashlib, json, sys, time
from pathlib import Path

ROOT = Path(__file__).absolute().parents[4]
MAGIC = b"STANDIN-ENGINE\n"
BANNER = "TensorRT.trtexec [TensorRT v100300] # " + " ".join(sys.argv)
STAMP = "[10/03/2024-10:47:59] "
SUMMARY = """=== Performance summary ===
Throughput: 130.298 qps
Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, percentile(99%) = 12.9675 ms
Enqueue Time: min = 2.72876 ms, max = 15.0201 ms, mean = 7.63062 ms, median = 7.86694 ms, percentile(90%) = 10.1792 ms, percentile(95%) = 11.7217 ms, percentile(99%) = 14.1848 ms
H2D Latency: min = 0.0065918 ms, max = 0.0698242 ms, mean = 0.0122212 ms, median = 0.00814819 ms, percentile(90%) = 0.0253906 ms, percentile(95%) = 0.0270996 ms, percentile(99%) = 0.0515137 ms
GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, median = 7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, percentile(99%) = 12.9485 ms
D2H Latency: min = 0.00390625 ms, max = 0.110596 ms, mean = 0.0100141 ms, median = 0.00439453 ms, percentile(90%) = 0.0254517 ms, percentile(95%) = 0.0319824 ms, percentile(99%) = 0.0994873 ms
Total Host Walltime: 3.00082 s
Total GPU Compute Time: 2.96536 s"""
COMPUTE_MS = (7.14139, 5.34595, 7.58404, 10.2881, 13.3388)


def log(severity, message):  # like trtexec: [E]/[W] on stderr, the rest on stdout
    stream = sys.stderr if severity in "EW" else sys.stdout
    print(f"{STAMP}[{severity}] {message}", file=stream, flush=True)


def finish(ok):
    print(("&&&& PASSED " if ok else "&&&& FAILED ") + BANNER, flush=True)
    return 0 if ok else 1


def fail(*errors):
    for error in errors + ("Failed to create engine from model or file.", "Engine set up failed"):
        log("E", error)
    return finish(False)


def delay(name):
    path = ROOT / "standin" / name
    if path.is_file():
        time.sleep(float(path.read_text().strip() or 0))


def export_times(path):
    records, t = [], 0.0
    for compute in COMPUTE_MS:
        h2d, d2h = 0.00814819, 0.00439453
        records.append({"startEnqMs": t, "endEnqMs": t + 0.05, "startH2dMs": t,
                        "endH2dMs": t + h2d, "startComputeMs": t + h2d,
                        "endComputeMs": t + h2d + compute, "startD2hMs": t + h2d + compute,
                        "endD2hMs": t + h2d + compute + d2h, "h2dMs": h2d, "computeMs": compute,
                        "d2hMs": d2h, "latencyMs": h2d + compute + d2h})
        t += h2d + compute + d2h
    Path(path).write_text(json.dumps(records, indent=2) + "\n")


def infer(opts):
    log("I", "Starting inference")
    time.sleep(0.5)
    delay("run-seconds")
    if "exportTimes" in opts:
        export_times(opts["exportTimes"])
    if "exportProfile" in opts:
        Path(opts["exportProfile"]).write_text(json.dumps([{"count": len(COMPUTE_MS)}, {
            "name": "standin_layer", "timeMs": sum(COMPUTE_MS), "averageMs": 8.74,
            "medianMs": 7.58404, "percentage": 100.0}]) + "\n")
    for line in SUMMARY.splitlines():
        log("I", line)
    return finish(True)


def build(opts):
    onnx = Path(opts["onnx"])
    if not onnx.is_file() or onnx.stat().st_size == 0:
        return fail(f"Could not open file {onnx}", "Failed to parse onnx file",
                    "Parsing model failed")
    log("I", "Start parsing network model.")
    log("I", "Finished parsing network model. Parse time: 0.0123")
    delay("build-seconds")
    if (ROOT / "standin" / "fail-build").exists():
        return fail("Error[10]: IBuilder::buildSerializedNetwork: Error Code 10: Internal Error "
                    "(Could not find any implementation for node standin_layer.)",
                    "Engine could not be created from network", "Building engine failed")
    plan = MAGIC + hashlib.sha256(onnx.read_bytes()).hexdigest().encode() + b"\n"
    log("I", "Engine built in 1.23 sec.")
    log("I", f"Created engine with size: {len(plan) / 2**20:.6f} MiB")
    if "saveEngine" in opts:
        Path(opts["saveEngine"]).write_bytes(plan)
        log("I", f"Engine saved to {opts['saveEngine']}")
    if "exportLayerInfo" in opts:
        Path(opts["exportLayerInfo"]).write_text(json.dumps(
            {"Layers": ["standin_layer"], "Bindings": ["input", "output"]}) + "\n")
    if "skipInference" in opts or "buildOnly" in opts:
        return finish(True)
    return infer(opts)


def load(opts):
    engine = Path(opts["loadEngine"])
    if not engine.is_file():
        return fail(f"Error opening engine file: {engine}")
    plan = engine.read_bytes()
    standin = plan.startswith(MAGIC) and len(plan) == len(MAGIC) + 65
    real = plan[:4] in (b"ftrt", b"vtrt")  # a real plan (vtrt: TensorRT-RTX, seen here)
    if not (standin or real):
        return fail("Error[1]: IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                    "(Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG "
                    "failed.)")
    log("I", "Engine loaded in 0.0123 sec.")
    return infer(opts)


def main():
    print("&&&& RUNNING " + BANNER, flush=True)
    opts = {}
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        opts[key.lstrip("-")] = value
    if "onnx" in opts:
        return build(opts)
    if "loadEngine" in opts:
        return load(opts)
    return fail("Model missing or format not supported")


sys.exit(main())
'''  # noqa: E501

TEGRASTATS = r'''#!@PYTHON@
"""Stand-in for Jetson's tegrastats, written by trtq's tests: the line recorded on an Orin Nano
8GB (JetPack 6, non-root) every --interval ms (VDD_IN varies), to --logfile or stdout, until
SIGTERM/SIGINT. --stop ends the other running stand-ins of this root; --start runs in the
background."""
import os, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).absolute().parents[2]
PIDS = ROOT / "standin" / "tegrastats"
LINE = ("RAM 2272/7620MB (lfb 4x4MB) SWAP 221/3810MB (cached 0MB) CPU [0%@729,0%@1036,0%@1036,"
        "0%@1036,0%@729,0%@729] GR3D_FREQ 0% cpu@54.937C soc2@55.562C soc0@56.156C gpu@55.468C "
        "tj@56.656C soc1@56.656C VDD_IN {now}mW/{avg}mW VDD_CPU_GPU_CV 527mW/527mW "
        "VDD_SOC 1339mW/1339mW")
POWER_MW = (4673, 6120, 7310, 6894, 5208)


def stop_others():
    for pidfile in PIDS.glob("*.pid"):
        pid = int(pidfile.stem)
        try:
            mine = str(Path(__file__).absolute()).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
            if mine and pid != os.getpid():
                os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        pidfile.unlink(missing_ok=True)


def stop(signum, frame):
    raise SystemExit(0)


def main(argv):
    if "--stop" in argv:
        stop_others()
        return 0
    if "--start" in argv:
        rest = [a for a in argv if a != "--start"]
        subprocess.Popen([sys.executable, __file__, *rest], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        return 0
    interval = int(argv[argv.index("--interval") + 1]) if "--interval" in argv else 1000
    logfile = argv[argv.index("--logfile") + 1] if "--logfile" in argv else None
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    PIDS.mkdir(parents=True, exist_ok=True)
    pidfile = PIDS / f"{os.getpid()}.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    out = open(logfile, "a", buffering=1) if logfile else sys.stdout
    try:
        total = 0
        for n in range(1, 1 << 62):
            now = POWER_MW[(n - 1) % len(POWER_MW)]
            total += now
            stamp = time.strftime("%m-%d-%Y %H:%M:%S ")
            out.write(stamp + LINE.format(now=now, avg=round(total / n)) + "\n")
            out.flush()
            time.sleep(interval / 1000)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        pidfile.unlink(missing_ok=True)
    return 0


sys.exit(main(sys.argv[1:]))
'''  # noqa: E501


def _interpreter() -> str:
    """The shebang interpreter: this Python (-I: isolated, fast) unless the path cannot be one."""
    exe = sys.executable
    if exe and len(exe) < 100 and not any(c.isspace() for c in exe):
        return f"{exe} -I"
    return "/usr/bin/env python3"


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(mode)


def write_device_root(root: Path) -> Path:
    """Fill `root` with the stand-in Orin Nano (JetPack 6.2) files; returns `root`."""
    _write(root / "etc" / "nv_tegra_release", L4T_RELEASE)
    _write(root / "proc" / "device-tree" / "model", MODEL.encode() + b"\0")
    lines = [f"{name + ':':<16}{value:>8} kB" if value is not None else f"{name + ':':<16}{0:>8}"
             for name, value in MEMINFO]
    _write(root / "proc" / "meminfo", "\n".join(lines) + "\n")
    _write(root / "usr" / "include" / "aarch64-linux-gnu" / "NvInferVersion.h", NVINFER_VERSION_H)
    python = _interpreter()
    _write(root / "usr" / "src" / "tensorrt" / "bin" / "trtexec",
           TRTEXEC.replace("@PYTHON@", python), 0o755)
    _write(root / "usr" / "bin" / "tegrastats", TEGRASTATS.replace("@PYTHON@", python), 0o755)
    (root / "standin").mkdir(exist_ok=True)
    return root


def stop_standins(root: Path) -> None:
    """End the stand-in tegrastats still running from `root` (`tegrastats --stop`)."""
    subprocess.run([str(root / "usr" / "bin" / "tegrastats"), "--stop"], timeout=30,
                   stdin=subprocess.DEVNULL, capture_output=True)
