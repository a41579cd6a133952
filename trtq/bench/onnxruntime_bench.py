"""Latency of an ONNX model in onnxruntime (CPU by default)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from trtq.artifacts import sha256_file
from trtq.bench.latency import summarize, time_calls
from trtq.errors import TrtqError
from trtq.system import current_rss_mib, describe_cpu, peak_rss_mib

log = logging.getLogger("trtq.bench")

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def parse_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`name:1x4` strings (the trtexec --shapes form) → {name: (1, 4)}."""
    shapes = {}
    for spec in specs or []:
        name, _, dims = spec.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            shape = ()
        if not name or not shape or min(shape) < 1:
            raise TrtqError(f"bad --shape {spec!r}; write NAME:DxDxD, e.g. boxes:4x4")
        shapes[name] = shape
    return shapes


def make_feeds(session, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict:
    """Random inputs for every model input; symbolic dimensions default to 1."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session.get_inputs():
        if arg.type not in _NUMPY_TYPES:
            raise TrtqError(f"input {arg.name} has unsupported type {arg.type}")
        shape = shapes.get(arg.name) or tuple(d if isinstance(d, int) else 1 for d in arg.shape)
        dtype = _NUMPY_TYPES[arg.type]
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.uniform(0.0, 1.0, shape).astype(dtype)
        else:
            feeds[arg.name] = np.zeros(shape, dtype)
    unknown = set(shapes) - set(feeds)
    if unknown:
        raise TrtqError(f"--shape names unknown inputs {sorted(unknown)}; "
                        f"the model's inputs are {sorted(feeds)}")
    return feeds


def bench_onnx(path: str | os.PathLike, iterations: int = 50, warmup: int = 5,
               threads: int | None = None, shapes: dict | None = None,
               progress: bool = False, providers: list[str] | None = None) -> dict:
    """Time `session.run` on random inputs (host in, host out); return the bench JSON record.
    `providers` are onnxruntime execution providers in priority order (default: CPU)."""
    import onnxruntime

    from trtq.export.onnxruntime_session import create_session

    path = Path(path)
    rss_before = current_rss_mib()
    session = create_session(path, threads, providers)
    feeds = make_feeds(session, shapes or {})
    log.info("benchmarking %s: %d warm-up + %d timed runs", path.name, warmup, iterations)
    samples = time_calls(lambda: session.run(None, feeds), iterations, warmup, progress, path.name)
    stats = summarize(samples)
    rss_after = current_rss_mib()
    options = session.get_session_options()
    return {
        "backend": "onnxruntime",
        "device": describe_cpu(),
        "provider": session.get_providers()[0],
        "onnxruntime_version": onnxruntime.__version__,
        "threads": options.intra_op_num_threads or os.cpu_count(),
        "model_file": str(path),
        "model_sha256": sha256_file(path),
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "warmup": warmup,
        "iterations": iterations,
        "latency_ms": stats,
        "fps": 1000.0 / stats["median"],
        "peak_rss_mib": peak_rss_mib(),  # whole process, since it started
        # memory the session and its buffers added to the process (None off Linux)
        "rss_delta_mib": None if rss_before is None else rss_after - rss_before,
        "samples_ms": samples,
    }
