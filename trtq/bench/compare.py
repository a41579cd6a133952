"""Side-by-side comparison of bench records (and their accuracy): JSON, Markdown and plots.

`load_entries` reads `trtq bench` records and, by position, the accuracy JSON of `trtq eval` or
`trtq classify`; `compare` picks a baseline and computes speedup and accuracy deltas against it;
`write_comparison` writes `<out>.json`, `<out>.md`, `<out>.png` (latency distributions) and, when
any entry has accuracy, `<out>-speed-accuracy.png`. Timings from different devices are refused
unless asked for: a latency measured on another machine is not a comparison.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtq.bench.accuracy import ACCURACY_METRICS, accuracy_summary
from trtq.bench.accuracy import is_number as _is_number
from trtq.bench.report import format_cell as _fmt
from trtq.errors import ArtifactError, DataError

log = logging.getLogger("trtq.bench")

# Accuracy metrics in display order, with their column names.
_MEMORY_KEYS = ("engine_device_mib", "context_device_mib", "gpu_used_mib")
# Row key -> key in the record's "power" dict (trtq.bench.tegrastats.summarize).
_POWER_KEYS = {"power_mean_mw": "power_mw_mean", "power_peak_mw": "power_mw_peak",
               "energy_per_inference_mj": "energy_per_inference_mj",
               "ram_used_max_mb": "ram_used_mb_max", "gpu_load_mean": "gpu_load_pct_mean"}
NO_ACCURACY = "-"  # an accuracy path that stands for "none for this bench file"


@dataclass(frozen=True)
class Entry:
    """One bench record to compare, its display label and its accuracy summary (or None)."""

    label: str
    record: Mapping[str, Any]
    accuracy: Mapping[str, Any] | None = None
    source: str = ""  # the bench JSON it came from


def _read_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} {path} does not exist; check the path (write it with "
                            f"`trtq {'bench' if what == 'bench record' else 'eval'} --out`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{what} {path} is not valid JSON ({exc}); re-create it") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path} holds a JSON {type(data).__name__}, not an object; "
                        "pass the file written by trtq")
    return data


def _check_record(record: dict, path: Path) -> None:
    lat = record.get("latency_ms")
    if not isinstance(lat, dict) or not _is_number(lat.get("median")) or lat["median"] <= 0:
        raise DataError(f"{path} has no latency_ms.median; is it a `trtq bench` record? (an "
                        "accuracy file goes to --accuracy, in the same order as the bench files)")


def _auto_label(record: Mapping[str, Any], path: Path) -> str:
    label = record.get("label")
    if isinstance(label, str) and label.strip():
        return label.strip()
    if record.get("precision") and record.get("backend"):
        return f"{record['precision']} {record['backend']}"
    return path.stem


def _unique_labels(labels: list[str], paths: list[Path]) -> list[str]:
    """Automatic labels that collide get their file name appended (then a counter)."""
    out = [f"{lab} ({p.stem})" if labels.count(lab) > 1 else lab
           for lab, p in zip(labels, paths, strict=True)]
    seen: dict[str, int] = {}
    for i, lab in enumerate(out):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            out[i] = f"{lab} #{seen[lab]}"
    return out


def load_entries(bench_paths: Sequence[str | os.PathLike],
                 accuracy_paths: Sequence[str | os.PathLike] = (),
                 labels: Sequence[str] = ()) -> list[Entry]:
    """Read bench records; accuracy files and labels pair with them by position.

    An accuracy path of "-" means "no accuracy for this bench file". Without `labels`, a record's
    own "label" is used, else "<precision> <backend>", else the bench file's name.
    """
    paths = [Path(p) for p in bench_paths]
    if not paths:
        raise DataError("no bench records given; pass one or more JSON files from `trtq bench`")
    for what, given in (("labels", labels), ("accuracy files ('-' for none)", accuracy_paths)):
        if given and len(given) != len(paths):
            raise DataError(f"{len(given)} {what} for {len(paths)} bench records; give one per "
                            "bench file, in the same order")
    if labels and len(set(labels)) != len(labels):
        raise DataError(f"labels must be unique, got {list(labels)}")
    records = []
    for path in paths:
        record = _read_json(path, "bench record")
        _check_record(record, path)
        records.append(record)
    accuracies: list[dict | None] = [None] * len(paths)
    for i, acc_path in enumerate(accuracy_paths):
        if str(acc_path) == NO_ACCURACY:
            continue
        summary = accuracy_summary(_read_json(acc_path, "accuracy file"))
        if not summary:
            raise DataError(f"accuracy file {acc_path} has none of {', '.join(ACCURACY_METRICS)}; "
                            "pass the JSON written by `trtq eval` or `trtq classify`")
        accuracies[i] = summary
    names = list(labels) or _unique_labels(
        [_auto_label(r, p) for r, p in zip(records, paths, strict=True)], paths)
    return [Entry(name, rec, acc, str(path))
            for name, rec, acc, path in zip(names, records, accuracies, paths, strict=True)]


def choose_baseline(entries: Sequence[Entry], baseline: str | None = None) -> Entry:
    """The entry labelled `baseline`; else the first FP16 one, else the first FP32, else the
    first."""
    if baseline is not None:
        for entry in entries:
            if entry.label == baseline:
                return entry
        raise DataError(f"no entry is labelled {baseline!r}; the labels are "
                        f"{[e.label for e in entries]}")
    for precision in ("fp16", "fp32"):
        for entry in entries:
            if str(entry.record.get("precision", "")).lower() == precision:
                return entry
    return entries[0]


def _check_devices(entries: Sequence[Entry], allow_mixed: bool) -> list[str]:
    first: dict[str, str] = {}  # device -> label of the first entry timed on it
    for entry in entries:
        device = entry.record.get("device")
        if device:
            first.setdefault(str(device), entry.label)
        else:
            log.warning("%s records no device; it cannot be checked against the others",
                        entry.label)
    devices = list(first)
    if len(devices) > 1 and not allow_mixed:
        (dev_a, lab_a), (dev_b, lab_b) = list(first.items())[:2]
        raise DataError(f"{lab_a!r} was timed on {dev_a} but {lab_b!r} on {dev_b}; latencies from "
                        "different machines are not comparable. Re-run the benchmarks on one "
                        "device, or pass --allow-mixed-devices to tabulate them anyway")
    return devices


def _energy(record: Mapping[str, Any], power: Mapping[str, Any]) -> tuple[float | None, bool]:
    """Energy per inference in mJ: the record's own, else mean power x mean latency (derived)."""
    if _is_number(power.get("energy_per_inference_mj")):
        return float(power["energy_per_inference_mj"]), False
    lat = record["latency_ms"]
    if _is_number(power.get("power_mw_mean")):
        ms = lat["mean"] if _is_number(lat.get("mean")) else lat["median"]
        return power["power_mw_mean"] * ms / 1000.0, True  # mW x ms = uJ
    return None, False


def _row(entry: Entry, base: Entry) -> dict[str, Any]:
    rec, lat = entry.record, entry.record["latency_ms"]
    memory = rec.get("memory") if isinstance(rec.get("memory"), dict) else {}
    power = rec.get("power") if isinstance(rec.get("power"), dict) else {}
    energy, derived = _energy(rec, power)

    def num(mapping: Mapping, key: str) -> float | None:
        return float(mapping[key]) if _is_number(mapping.get(key)) else None

    row: dict[str, Any] = {
        "label": entry.label, "source": entry.source, "backend": rec.get("backend"),
        "precision": rec.get("precision"), "device": rec.get("device"),
        "model_file": rec.get("model_file"),
        "median_ms": float(lat["median"]), "p90_ms": num(lat, "p90"), "p99_ms": num(lat, "p99"),
        "fps": num(rec, "fps") or 1000.0 / lat["median"],
        "speedup": base.record["latency_ms"]["median"] / lat["median"],
        "latency_ms": dict(lat), "peak_rss_mib": num(rec, "peak_rss_mib"),
        "rss_delta_mib": num(rec, "rss_delta_mib"),
        **{key: num(memory, key) for key in _MEMORY_KEYS},
        **{row_key: num(power, key) for row_key, key in _POWER_KEYS.items()},
        "energy_per_inference_mj": energy, "energy_derived": derived,
        "accuracy": dict(entry.accuracy) if entry.accuracy else None, "accuracy_delta": None,
        "samples_ms": list(rec["samples_ms"]) if isinstance(rec.get("samples_ms"), list) else None,
    }
    if entry.accuracy and base.accuracy:
        row["accuracy_delta"] = {m: entry.accuracy[m] - base.accuracy[m]
                                 for m in entry.accuracy if m in base.accuracy}
    return row


def compare(entries: Sequence[Entry], baseline: str | None = None,
            allow_mixed_devices: bool = False) -> dict[str, Any]:
    """Per-entry latency, FPS, speedup, memory, power and accuracy against a baseline.

    Speedup = baseline median / entry median; accuracy delta = entry - baseline, per metric both
    have. Raises DataError when the records come from different devices (unless allowed).
    """
    if not entries:
        raise DataError("nothing to compare; pass one or more bench records")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise DataError(f"entry labels must be unique, got {labels}; pass --labels")
    devices = _check_devices(entries, allow_mixed_devices)
    base = choose_baseline(entries, baseline)
    rows = [_row(e, base) for e in entries]
    metrics = [m for m in ACCURACY_METRICS if any(m in (r["accuracy"] or {}) for r in rows)]
    return {"baseline": base.label, "device": devices[0] if len(devices) == 1 else None,
            "devices": devices, "accuracy_metrics": metrics, "entries": rows}


def _power_cell(row: Mapping[str, Any]) -> str:
    mean, peak = row["power_mean_mw"], row["power_peak_mw"]
    if mean is None:
        return "—"
    return f"{mean / 1000:.2f}/" + ("—" if peak is None else f"{peak / 1000:.2f}")


def _accuracy_cell(row: Mapping[str, Any], metric: str, is_base: bool) -> str:
    value = (row["accuracy"] or {}).get(metric)
    if value is None:
        return "—"
    delta = (row["accuracy_delta"] or {}).get(metric)
    return f"{value:.4f}" + ("" if is_base or delta is None else f" ({delta:+.4f})")


def compare_markdown(result: Mapping[str, Any]) -> str:
    """A table (one row per entry) and a one-line note naming the baseline and the device."""
    rows, base = result["entries"], result["baseline"]
    has = {key: any(r.get(key) is not None for r in rows)
           for key in ("engine_device_mib", "gpu_used_mib", "power_mean_mw",
                       "energy_per_inference_mj")}
    cols = [("entry", lambda r: r["label"] + (" (baseline)" if r["label"] == base else "")),
            ("backend", lambda r: r["backend"] or "—"),
            ("precision", lambda r: r["precision"] or "—"),
            ("median ms", lambda r: _fmt(r["median_ms"], ".2f")),
            ("p90 ms", lambda r: _fmt(r["p90_ms"], ".2f")),
            ("p99 ms", lambda r: _fmt(r["p99_ms"], ".2f")),
            ("FPS", lambda r: _fmt(r["fps"], ".1f")),
            ("speedup", lambda r: f"{r['speedup']:.2f}×"),
            ("peak RSS MiB", lambda r: _fmt(r["peak_rss_mib"], ".0f"))]
    if has["engine_device_mib"]:
        cols.append(("engine MiB", lambda r: _fmt(r["engine_device_mib"], ".0f")))
    if has["gpu_used_mib"]:
        cols.append(("GPU used MiB", lambda r: _fmt(r["gpu_used_mib"], ".0f")))
    if has["power_mean_mw"]:
        cols.append(("power W mean/peak", _power_cell))
    if has["energy_per_inference_mj"]:
        cols.append(("mJ / inference", lambda r: _fmt(r["energy_per_inference_mj"], ".2f")
                     + ("*" if r["energy_derived"] else "")))
    for metric in result["accuracy_metrics"]:
        cols.append((ACCURACY_METRICS[metric],
                     lambda r, m=metric: _accuracy_cell(r, m, r["label"] == base)))
    text = {"backend", "precision", "entry"}
    lines = ["| " + " | ".join(name for name, _ in cols) + " |",
             "|" + "|".join("---" if name in text else "---:" for name, _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, cell in cols) + " |" for r in rows]
    lines += ["", _note(result, has["energy_per_inference_mj"]
                        and any(r["energy_derived"] for r in rows))]
    return "\n".join(lines) + "\n"


def _note(result: Mapping[str, Any], derived_energy: bool) -> str:
    devices = result["devices"]
    where = (f"device: {devices[0]}" if len(devices) == 1 else
             "devices differ (" + "; ".join(devices) + "), so timings are not comparable"
             if devices else "device: not recorded")
    note = (f"Baseline: {result['baseline']}; speedup = baseline median / entry median; "
            f"accuracy in parentheses is the change from the baseline; {where}.")
    if derived_energy:
        note += " *energy = mean power × mean latency."
    return note


def _json_ready(result: Mapping[str, Any]) -> dict[str, Any]:
    """The result without the raw latency samples (the PNG shows them; the records hold them)."""
    rows = [{k: v for k, v in r.items() if k != "samples_ms"}
            | {"samples": len(r["samples_ms"] or [])} for r in result["entries"]]
    return {**result, "entries": rows}


def comparison_paths(out_json: str | os.PathLike, with_accuracy: bool) -> list[Path]:
    """<out>.json, <out>.md, <out>.png and, with accuracy, <out>-speed-accuracy.png."""
    out = Path(out_json)
    paths = [out, out.with_suffix(".md"), out.with_suffix(".png")]
    if with_accuracy:
        paths.append(out.with_name(f"{out.with_suffix('').name}-speed-accuracy.png"))
    return paths


def write_comparison(result: Mapping[str, Any], out_json: str | os.PathLike,
                     force: bool = False) -> list[Path]:
    """Write the comparison's JSON, Markdown and plots; nothing is written if any target exists
    and `force` is not set. Returns the paths written."""
    from trtq import artifacts
    from trtq.bench.plots import latency_plot, speed_accuracy_plot

    paths = comparison_paths(out_json, bool(result["accuracy_metrics"]))
    for path in paths:
        artifacts.check_writable(path, force)
    artifacts.write_json(paths[0], _json_ready(result), force=force)
    artifacts.write_text(paths[1], compare_markdown(result), force=force)
    with artifacts.atomic_output(paths[2], force) as tmp:
        latency_plot(result["entries"], tmp)
    if len(paths) > 3:
        with artifacts.atomic_output(paths[3], force) as tmp:
            speed_accuracy_plot(result, tmp)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
