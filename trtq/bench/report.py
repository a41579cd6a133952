"""Bench records as Markdown."""

from __future__ import annotations


def format_mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def bench_markdown(records: list[dict]) -> str:
    """One table row per bench record (latency in ms)."""
    lines = [
        "| model | backend | device | threads | median | p90 | p99 | min | max | FPS "
        "| peak RSS MiB | session RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lat = r["latency_ms"]
        name = r["model_file"].rsplit("/", 1)[-1]
        lines.append(
            f"| {name} | {r['backend']} | {r['device']} | {r['threads']} | {lat['median']:.2f} | "
            f"{lat['p90']:.2f} | {lat['p99']:.2f} | {lat['min']:.2f} | {lat['max']:.2f} | "
            f"{r['fps']:.2f} | {r['peak_rss_mib']:.0f} | {format_mib(r.get('rss_delta_mib'))} |"
        )
    first = records[0] if records else {}
    lines.append("")
    lines.append(f"{first.get('warmup', 0)} warm-up runs, {first.get('iterations', 0)} timed runs "
                 "per model; latency in milliseconds; FPS = 1000 / median. Peak RSS: the whole "
                 "process; session RSS: what creating and running the session added.")
    return "\n".join(lines) + "\n"
