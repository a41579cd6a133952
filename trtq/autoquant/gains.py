"""The time INT8 saves per layer group, measured on the backend.

onnxruntime: both files (FP32 and the full INT8 export, as shipped) are profiled in plain
default sessions on this machine (onnxruntime's per-node profiler, `runs` timed runs after
`warmup`), and each node's mean kernel time goes to its group (`trtq.autoquant.groups`).

TensorRT: trtexec's `--exportProfile` files of the FP16 and the INT8 engine, as `trtq deploy`
brings them back from the device. The file is a JSON list: a first record `{"count": N}` (the
profiled iterations), then one record per engine layer with its `name`, `timeMs` (the total
over the N iterations), `averageMs`, `percentage` and, in newer releases, `medianMs`.

A group's gain is its FP32 (or FP16) time minus its INT8 time; positive is faster in INT8.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from trtq.autoquant.groups import OTHER, attribute
from trtq.errors import TrtqError

log = logging.getLogger("trtq.autoquant")


def ort_node_profile(path: str | os.PathLike, feeds: dict, runs: int = 5, warmup: int = 2,
                     disabled_optimizers: tuple[str, ...] = ()) -> dict[str, dict]:
    """{node name: {"op", "input_types", "ms"}} from onnxruntime's profiler: the node's op type,
    its inputs' element types and its mean kernel milliseconds over the last `runs` runs, in a
    session with default options (one-thread settings and the like are onnxruntime's own)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=list(disabled_optimizers))
        for _ in range(warmup + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    # the profile covers every run; keep the last `runs` runs of each node
    per_node: dict[str, list[float]] = defaultdict(list)
    info: dict[str, dict] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            node = name[:-len("_kernel_time")]
            per_node[node].append(event["dur"] / 1000.0)
            args = event.get("args", {})
            info[node] = {"op": args.get("op_name", ""),
                          "input_types": [t for shape in args.get("input_type_shape", [])
                                          for t in shape]}
    return {node: {**info[node], "ms": sum(times[-runs:]) / len(times[-runs:])}
            for node, times in per_node.items()}


def ort_node_times(path: str | os.PathLike, feeds: dict, runs: int = 5,
                   warmup: int = 2) -> dict[str, float]:
    """{node name: mean kernel milliseconds per run} (`ort_node_profile`)."""
    return {node: row["ms"] for node, row in
            ort_node_profile(path, feeds, runs, warmup).items()}


def ort_profiles(fp32_dir: str | os.PathLike, int8_dir: str | os.PathLike,
                 parts: Iterable[str], runs: int = 5) -> dict[str, dict[str, dict[str, float]]]:
    """{"baseline" / "int8": {part: {node: ms}}} of the FP32 and the INT8 export in two folders
    (`<part>.onnx` for each of `parts`, the model adapter's part names), each part fed the
    same random inputs (dynamic dimensions 1: SAM's decoder one box)."""
    import onnxruntime as ort

    from trtq.bench.onnxruntime_bench import make_feeds

    times: dict = {"baseline": {}, "int8": {}}
    for part in parts:
        fp32 = Path(fp32_dir) / f"{part}.onnx"
        probe = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
        feeds = make_feeds(probe, {})
        log.info("profiling the FP32 and INT8 %s in onnxruntime", part)
        times["baseline"][part] = ort_node_times(fp32, feeds, runs=runs)
        times["int8"][part] = ort_node_times(Path(int8_dir) / f"{part}.onnx", feeds, runs=runs)
    return times


def by_group(times: dict[str, float], prefix: str, groups: Iterable[str]) -> dict[str, float]:
    """Milliseconds per group of one part's nodes (node names lacking `prefix`)."""
    groups = list(groups)
    out: dict[str, float] = defaultdict(float)
    for name, ms in times.items():
        out[attribute(name, prefix, groups)] += ms
    return dict(out)


def read_trtexec_profile(path: str | os.PathLike) -> dict[str, float]:
    """{layer name: average milliseconds per iteration} from a trtexec `--exportProfile`
    file; a clear error for anything else (e.g. an `--exportTimes` or `--exportLayerInfo`
    file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrtqError(f"cannot read the trtexec profile {path} ({exc}); pass the file "
                        "written by trtexec --exportProfile") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) \
            or "count" not in data[0]:
        raise TrtqError(f"{path} is not a trtexec --exportProfile file (a JSON list starting "
                        "with {\"count\": N}); --exportTimes and --exportLayerInfo files differ")
    count = max(int(data[0]["count"]), 1)
    layers = {}
    for record in data[1:]:
        if not isinstance(record, dict) or "name" not in record:
            raise TrtqError(f"{path}: a layer record without a name ({str(record)[:80]})")
        if "averageMs" in record:
            ms = float(record["averageMs"])
        elif "timeMs" in record:
            ms = float(record["timeMs"]) / count
        else:
            raise TrtqError(f"{path}: layer {record['name']!r} has no averageMs or timeMs")
        layers[record["name"]] = layers.get(record["name"], 0.0) + ms
    if not layers:
        raise TrtqError(f"{path} lists no layers; profile the engine with trtexec "
                        "--exportProfile=FILE --separateProfileRun")
    return layers


def gains(baseline: dict[str, dict[str, float]], int8: dict[str, dict[str, float]],
          groups: Iterable[str],
          prefixes: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Per group: baseline ms, INT8 ms, gain ms, from {part: {node or layer: ms}} of each
    precision; `prefixes`: {part: the module prefix its node names lack} (the model adapter's
    `part_prefixes`). The OTHER row holds what no group claims (fused nodes without a module
    path, reformats), so the rows add up to the whole."""
    groups = list(groups)
    prefixes = prefixes or {}
    rows: dict[str, dict[str, float]] = {}
    for part in baseline:
        prefix = prefixes.get(part, "")
        base = by_group(baseline[part], prefix, groups)
        quant = by_group(int8.get(part, {}), prefix, groups)
        for group in set(base) | set(quant):
            row = rows.setdefault(group, {"baseline_ms": 0.0, "int8_ms": 0.0})
            row["baseline_ms"] += base.get(group, 0.0)
            row["int8_ms"] += quant.get(group, 0.0)
    for row in rows.values():
        row["gain_ms"] = row["baseline_ms"] - row["int8_ms"]
    rows.setdefault(OTHER, {"baseline_ms": 0.0, "int8_ms": 0.0, "gain_ms": 0.0})
    return rows
