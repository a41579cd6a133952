"""PNG plots of benchmarks: latency distributions, speed vs accuracy, a `trtq run` summary.

Figures are drawn with matplotlib's object API on an Agg canvas (`Figure` + `FigureCanvasAgg`),
never through pyplot: no global figure registry to leak into, no GUI backend switched on in the
caller's process, nothing to close. matplotlib is imported inside the functions so that importing
trtq does not pay for it.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from trtq.bench.accuracy import ACCURACY_METRICS, accuracy_summary
from trtq.errors import DataError

log = logging.getLogger("trtq.bench")

DPI = 100
HEIGHT_IN = 4.5
LOG_SCALE_RATIO = 30.0  # medians further apart than this get a logarithmic latency axis
_PART_ORDER = ("encoder", "decoder")
_COLORS = ("#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272")


def _figure(width_in: float, height_in: float = HEIGHT_IN):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI)  # format given: atomic_output's temp ends in .tmp


def _series(item: Any) -> tuple[str, Mapping[str, Any], list[float] | None, str | None]:
    """(label, latency_ms, samples or None, device) of an Entry or a `compare` result row."""
    if hasattr(item, "record"):
        label, record = item.label, item.record
    else:
        label, record = item["label"], item
    samples = record.get("samples_ms")
    return label, record["latency_ms"], (list(samples) if samples else None), record.get("device")


def _title_device(devices: Sequence[str | None]) -> str:
    known = sorted({d for d in devices if d})
    if not known:
        return "device not recorded"
    return known[0] if len(known) == 1 else "mixed devices: " + "; ".join(known)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _median_whisker(ax, x: float, lat: Mapping[str, Any], width: float, **bar_kw) -> float:
    """A bar at the median, a whisker up to p99 and a tick at p90; returns the whisker's top."""
    median = lat["median"]
    top = lat.get("p99") or lat.get("p90") or median
    ax.bar(x, median, width, **bar_kw)
    ax.errorbar(x, median, yerr=[[0.0], [max(top - median, 0.0)]], fmt="none", ecolor="black",
                capsize=5, linewidth=1)
    if lat.get("p90") is not None:
        ax.plot([x], [lat["p90"]], marker="_", markersize=12, color="black")
    return top


def _maybe_log(ax, values: Sequence[float]) -> None:
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_RATIO:
        ax.set_yscale("log")


def latency_plot(entries: Sequence[Any], path: str | os.PathLike) -> None:
    """One box per entry from its latency samples (quartiles, whiskers p1-p99, outliers), or,
    without samples, a bar at the median with a whisker to p99 and a tick at p90.

    `entries`: `compare.Entry` objects or the rows of a `compare` result.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    series = [_series(item) for item in entries]
    if not series:
        raise DataError("no bench records to plot")
    fig = _figure(max(6.0, 1.3 * len(series) + 2.0))
    ax = fig.add_subplot()
    handles = {}
    for x, (_, lat, samples, _) in enumerate(series):
        if samples:
            ax.boxplot([samples], positions=[x], widths=0.5, whis=(1, 99), patch_artist=True,
                       boxprops={"facecolor": "#9ecae1"}, medianprops={"color": "black"},
                       flierprops={"marker": ".", "markersize": 2, "alpha": 0.5})
            handles["box"] = Patch(facecolor="#9ecae1", edgecolor="black",
                                   label="samples: quartiles, whiskers p1–p99")
        else:
            _median_whisker(ax, x, lat, 0.5, color="#fdae6b", edgecolor="black")
            handles["bar"] = Line2D([], [], color="black", marker="_", markersize=12,
                                    label="no samples: median bar, tick p90, whisker p99")
        ax.annotate(f"{lat['median']:.2f}", (x + 0.27, lat["median"]), fontsize=8, va="center")
    labels = [label for label, *_ in series]
    ax.set_xticks(range(len(series)))
    ax.set_xticklabels(labels, rotation=15 if max(map(len, labels)) > 12 else 0, ha="right"
                       if max(map(len, labels)) > 12 else "center", fontsize=9)
    ax.set_xlim(-0.7, len(series) - 0.3)
    _maybe_log(ax, [lat["median"] for _, lat, *_ in series])
    ax.set_ylabel("latency per inference (ms)")
    ax.set_xlabel("entry (median in ms beside each)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=list(handles.values()), fontsize=8, loc="best")
    ax.set_title(_wrap(f"Latency on {_title_device([d for *_, d in series])}", 90), fontsize=10)
    _save(fig, path)


def _pick_metric(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """The accuracy metric most entries have (display order breaks ties)."""
    counts = {m: sum(m in (r.get("accuracy") or {}) for r in rows) for m in metrics}
    if not counts or max(counts.values()) == 0:
        raise DataError("no entry has accuracy; pass --accuracy files (from `trtq eval` or "
                        "`trtq classify`) to plot speed against accuracy")
    return max(metrics, key=lambda m: counts[m])  # max keeps the first of equal counts


def speed_accuracy_plot(result: Mapping[str, Any], path: str | os.PathLike,
                        metric: str | None = None) -> None:
    """FPS (x) against accuracy (y) for each entry with accuracy; points labelled with their
    speedup over the baseline, the baseline drawn as a star. Up and to the right is better."""
    rows = result["entries"]
    metric = metric or _pick_metric(rows, result.get("accuracy_metrics") or list(ACCURACY_METRICS))
    points = [r for r in rows if metric in (r.get("accuracy") or {})]
    if not points:
        raise DataError(f"no entry has {metric}; pick a metric the accuracy files hold")
    fig = _figure(7.0)
    ax = fig.add_subplot()
    for k, row in enumerate(sorted(points, key=lambda r: r["fps"])):
        is_base = row["label"] == result["baseline"]
        ax.scatter([row["fps"]], [row["accuracy"][metric]], s=120 if is_base else 50,
                   marker="*" if is_base else "o", color="#d62728" if is_base else "#1f77b4",
                   zorder=3)
        note = "baseline" if is_base else f"{row['speedup']:.2f}×"
        ax.annotate(f"{row['label']} ({note})", (row["fps"], row["accuracy"][metric]),
                    xytext=(6, 6 if k % 2 == 0 else -12), textcoords="offset points", fontsize=8)
    ax.margins(0.2)
    ax.set_xlabel("throughput (FPS, inferences per second)")
    ax.set_ylabel(ACCURACY_METRICS.get(metric, metric))
    ax.grid(alpha=0.3)
    device = _title_device([r.get("device") for r in rows])
    ax.set_title(_wrap(f"Speed vs {ACCURACY_METRICS.get(metric, metric)} on {device}", 80),
                 fontsize=10)
    _save(fig, path)


def _pipeline_bench(report: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """{precision: {part: record}}; also accepts a flat {part: record} (the FP32-only report)."""
    bench = report.get("bench")
    if not isinstance(bench, Mapping):
        return {}

    def is_record(value: Any) -> bool:
        return isinstance(value, Mapping) and isinstance(value.get("latency_ms"), Mapping)

    if any(is_record(v) for v in bench.values()):
        flat = {part: rec for part, rec in bench.items() if is_record(rec)}
        precision = next(iter(flat.values())).get("precision") or "fp32"
        return {str(precision): flat}
    out = {}
    for precision, parts in bench.items():
        if isinstance(parts, Mapping):
            records = {part: rec for part, rec in parts.items() if is_record(rec)}
            if records:
                out[str(precision)] = records
    return out


def _pipeline_latency(ax, bench: dict[str, dict[str, Mapping[str, Any]]],
                      colors: Mapping[str, str]) -> None:
    parts = [p for p in _PART_ORDER if any(p in v for v in bench.values())]
    parts += sorted({p for v in bench.values() for p in v} - set(parts))
    ref = "fp32" if "fp32" in bench else next(iter(bench))
    width = 0.8 / len(bench)
    for k, (precision, records) in enumerate(bench.items()):
        for x, part in enumerate(parts):
            if part not in records:
                continue
            lat = records[part]["latency_ms"]
            pos = x - 0.4 + width * (k + 0.5)
            first = part == next(p for p in parts if p in records)
            top = _median_whisker(ax, pos, lat, width * 0.9, color=colors[precision],
                                  edgecolor="black", label=precision if first else None)
            if precision != ref and part in bench[ref]:
                speedup = bench[ref][part]["latency_ms"]["median"] / lat["median"]
                ax.annotate(f"{speedup:.2f}×", (pos, top), xytext=(0, 3),
                            textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(parts)))
    ax.set_xticklabels(parts)
    _maybe_log(ax, [r[p]["latency_ms"]["median"] for r in bench.values() for p in r])
    ax.set_ylabel("latency per inference (ms)")
    ax.set_title(f"median, p90 tick, p99 whisker; speedup vs {ref}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _pipeline_accuracy(ax, accuracy: dict[str, dict[str, float]],
                       colors: Mapping[str, str]) -> None:
    metrics = [m for m in ACCURACY_METRICS if any(m in a for a in accuracy.values())]
    width = 0.8 / len(accuracy)
    for k, (name, values) in enumerate(accuracy.items()):
        xs = [x - 0.4 + width * (k + 0.5) for x, m in enumerate(metrics) if m in values]
        ys = [values[m] for m in metrics if m in values]
        bars = ax.bar(xs, ys, width * 0.9, label=name, color=colors[name], edgecolor="black")
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([ACCURACY_METRICS[m] for m in metrics], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy (fraction)")
    ax.set_title("accuracy", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")


def pipeline_plot(report: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Latency of each precision's encoder and decoder side by side (speedup over FP32 written
    on the bars) and, when the report has it, accuracy per precision in a second panel.

    `report`: {"bench": {precision: {part: record}}, "accuracy": {precision: summary}}; missing
    precisions, parts or accuracy are left out of the plot.
    """
    bench = _pipeline_bench(report)
    if not bench:
        raise DataError("the report has no bench records to plot; run `trtq run` with benchmarks")
    raw = report.get("accuracy") if isinstance(report.get("accuracy"), Mapping) else {}
    accuracy = {str(k): s for k, v in raw.items() if isinstance(v, Mapping)
                and (s := accuracy_summary(v))}
    names = list(dict.fromkeys([*bench, *accuracy]))  # one colour per precision in both panels
    colors = {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}
    fig = _figure(11.0 if accuracy else 7.0)
    if accuracy:
        grid = fig.add_gridspec(1, 2, width_ratios=(2, 1))
        _pipeline_latency(fig.add_subplot(grid[0]), bench, colors)
        _pipeline_accuracy(fig.add_subplot(grid[1]), accuracy, colors)
    else:
        _pipeline_latency(fig.add_subplot(), bench, colors)
    model = (report.get("config") or {}).get("model") if isinstance(report.get("config"),
                                                                    Mapping) else None
    device = _title_device([r.get("device") for v in bench.values() for r in v.values()])
    fig.suptitle(_wrap(f"trtq run{': ' + model if model else ''} on {device}", 110), fontsize=10)
    _save(fig, path)
