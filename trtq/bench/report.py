"""Bench records as Markdown."""

from __future__ import annotations


def format_mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def format_cell(value: float | None, spec: str) -> str:
    """A Markdown table cell: the value in format `spec`, or an em dash when it is missing."""
    return "—" if value is None else format(value, spec)


def _cell(value, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def bench_markdown(records: list[dict]) -> str:
    """One table row per bench record (latency in ms); onnxruntime and TensorRT records alike."""
    lines = [
        "| model | backend | precision | device | threads | median | p90 | p99 | min | max "
        "| FPS | peak RSS MiB | session RSS MiB | engine MiB | power W |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lat = r["latency_ms"]
        name = str(r.get("model_file", "?")).rsplit("/", 1)[-1]
        power = (r.get("power") or {}).get("power_mw_mean")
        lines.append(
            f"| {name} | {r['backend']} | {r.get('precision') or '—'} | {r.get('device') or '—'} "
            f"| {r.get('threads') or '—'} | {lat['median']:.2f} | {_cell(lat.get('p90'))} "
            f"| {_cell(lat.get('p99'))} | {_cell(lat.get('min'))} | {_cell(lat.get('max'))} "
            f"| {r['fps']:.2f} | {_cell(r.get('peak_rss_mib'), '{:.0f}')} "
            f"| {format_mib(r.get('rss_delta_mib'))} "
            f"| {_cell((r.get('memory') or {}).get('engine_device_mib'), '{:.0f}')} "
            f"| {_cell(None if power is None else power / 1000)} |"
        )
    first = records[0] if records else {}
    lines.append("")
    lines.append(f"{first.get('warmup', 0)} warm-up runs, {first.get('iterations', 0)} timed runs "
                 "per model; latency in milliseconds; FPS = 1000 / median. Peak RSS: the whole "
                 "process; session RSS: what creating and running the session added.")
    if first.get("backend") == "tensorrt":
        lines.append(f"TensorRT timing: {first.get('timing')}"
                     f"{', CUDA graph' if first.get('cuda_graph') else ''}.")
    return "\n".join(lines) + "\n"
