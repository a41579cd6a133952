"""The local report of a deploy, read from the pulled device results.

Per model: the trtexec performance summary (GPU compute latency percentiles, throughput), the
tegrastats summary over the benchmark (power, energy per inference, RAM), and the engine's
size and SHA-256 as built on the device; per part with both precisions, INT8 vs FP16 ratios.
Everything here was measured by the device's trtexec and tegrastats; nothing is estimated.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from trtq.artifacts import sha256_file, write_json, write_text
from trtq.bench.jetson_power_mode import warnings as power_warnings
from trtq.bench.report import format_cell as _cell
from trtq.bench.tegrastats import parse_line, summarize
from trtq.bench.trtexec_parse import parse_trtexec_log, to_bench_record
from trtq.errors import ArtifactError, DataError


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


def _power(path: Path, record: dict) -> dict | None:
    text = _read(path)
    if not text:
        return None
    samples = []
    for line in text.splitlines():
        if line.strip():
            try:
                samples.append(parse_line(line))
            except DataError:
                continue  # a line cut when tegrastats was stopped
    if not samples:
        return None
    seconds = record.get("total_host_walltime_s")
    inferences = round(record["fps"] * seconds) if seconds and record.get("fps") else None
    return summarize(samples, inferences=inferences or None, seconds=seconds or None)


def job_record(device_dir: Path, job) -> dict:
    """One model's measured figures from its pulled files."""
    log_text = _read(device_dir / f"{job.name}.bench.log")
    if log_text is None:
        raise ArtifactError(f"{device_dir / (job.name + '.bench.log')} was not pulled; rerun "
                            "the deploy")
    record = to_bench_record(parse_trtexec_log(log_text))
    engine_sum = (_read(device_dir / f"{job.name}.engine.sha256") or "").split()
    size = (_read(device_dir / f"{job.name}.engine.bytes") or "").strip()
    return {
        "name": job.name, "precision": job.precision, "onnx": str(job.onnx),
        "onnx_sha256": sha256_file(job.onnx),
        "engine_sha256": engine_sum[0] if engine_sum else None,
        "engine_bytes": int(size) if size.isdigit() else None,
        "trtexec": record,
        "power": _power(device_dir / f"{job.name}.tegrastats.log", record),
    }


def _ratios(rows: list[dict]) -> list[dict]:
    by_part: dict[str, dict[str, dict]] = {}
    for row in rows:
        part, _, precision = row["name"].rpartition(".")
        by_part.setdefault(part, {})[precision] = row
    out = []
    for part, pair in sorted(by_part.items()):
        if "fp16" not in pair or "int8" not in pair:
            continue
        fp16, int8 = pair["fp16"], pair["int8"]
        speedup = fp16["trtexec"]["latency_ms"]["median"] / int8["trtexec"]["latency_ms"]["median"]
        energy = [(r["power"] or {}).get("energy_per_inference_mj") for r in (fp16, int8)]
        size = [r["engine_bytes"] for r in (fp16, int8)]
        out.append({"part": part, "int8_speedup_median": speedup,
                    "int8_energy_ratio": energy[1] / energy[0] if all(energy) else None,
                    "int8_size_ratio": size[1] / size[0] if all(size) else None})
    return out


def markdown(report: dict) -> str:
    facts = report["device"]
    nvp = (facts["power_mode"] or {}).get("nvpmodel") or {}
    lines = [f"# trtq deploy: {facts['model'] or report['host']}", "",
             f"JetPack {facts['jetpack']} (L4T R{facts['l4t']}), TensorRT {facts['tensorrt']}, "
             f"power mode {nvp.get('mode', 'unknown')}; measured on the device by trtexec and "
             f"tegrastats, {report['created_utc']}.", "",
             "| model | GPU compute median ms | p99 ms | throughput qps | power mean W | "
             "energy/inference mJ | RAM max MB | engine MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["models"]:
        lat, power = row["trtexec"]["latency_ms"], row["power"] or {}
        watts = power.get("power_mw_mean")
        lines.append(
            f"| {row['name']} | {_cell(lat['median'], '.3f')} | {_cell(lat.get('p99'), '.3f')} | "
            f"{_cell(row['trtexec']['fps'], '.1f')} | "
            f"{_cell(watts / 1000 if watts else None, '.2f')} | "
            f"{_cell(power.get('energy_per_inference_mj'), '.2f')} | "
            f"{_cell(power.get('ram_used_mb_max'), '.0f')} | "
            f"{_cell(row['engine_bytes'] / 1e6 if row['engine_bytes'] else None, '.1f')} |")
    for warning in report["warnings"]:
        lines += ["", f"Warning: {warning}."]
    for ratio in report["int8_vs_fp16"]:
        lines.append("")
        lines.append(f"{ratio['part']}: INT8 is {ratio['int8_speedup_median']:.2f}x the FP16 "
                     f"speed (median GPU compute); energy per inference ratio "
                     f"{_cell(ratio['int8_energy_ratio'], '.2f')}; engine size ratio "
                     f"{_cell(ratio['int8_size_ratio'], '.2f')}.")
    return "\n".join(lines) + "\n"


def write_report(cfg, facts, jobs) -> dict:
    """report.json and report.md in cfg.out, from cfg.out/device/."""
    device_dir = cfg.out / "device"
    rows = [job_record(device_dir, job) for job in jobs]
    report = {
        "host": cfg.target.host, "remote_dir": cfg.remote_dir,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": facts.to_dict(), "models": rows, "int8_vs_fp16": _ratios(rows),
        "warnings": power_warnings(facts.power_mode),
        "files": sorted(p.name for p in device_dir.iterdir() if p.is_file()),
    }
    json.dumps(report)  # fail here, not half-way through the write, on an odd value
    for row in rows:  # the engines stay on the device; their sidecars come home
        sidecar = {"kind": "tensorrt-engine-on-device", "file": f"{row['name']}.engine",
                   "sha256": row["engine_sha256"], "bytes": row["engine_bytes"],
                   "host": cfg.target.host,
                   "device_path": f"{cfg.remote_dir}/engines/{row['name']}.engine",
                   "precision": row["precision"], "inputs": {"onnx": row["onnx_sha256"]},
                   "tensorrt": facts.tensorrt, "device": facts.model,
                   "jetpack": facts.jetpack, "created_utc": report["created_utc"]}
        write_json(cfg.out / "engines" / f"{row['name']}.engine.json", sidecar,
                   force=cfg.force)
    write_json(cfg.out / "report.json", report, force=cfg.force)
    write_text(cfg.out / "report.md", markdown(report), force=cfg.force)
    return report
