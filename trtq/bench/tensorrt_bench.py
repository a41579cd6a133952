"""Latency of a TensorRT engine: CUDA-event timing of execute_async_v3 on device-resident
inputs (no host transfers in the timed region, like trtexec --noDataTransfers), optionally
replayed as a CUDA graph, with the engine's and the process's memory.

The engine is checked against its sidecar (`trtq.engines.engine_check`) before it is loaded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtq.artifacts import sha256_file
from trtq.bench.latency import summarize
from trtq.errors import BackendError
from trtq.system import peak_rss_mib

log = logging.getLogger("trtq.bench")
MIB = 1 << 20


@dataclass(frozen=True)
class EngineBenchOptions:
    iterations: int = 200
    warmup: int = 20
    duration_s: float | None = None  # time-box instead of (or after) the iteration count
    cuda_graph: bool = False
    shapes: Mapping[str, tuple] | None = None
    device: str = "cuda:0"
    seed: int = 0

    def __post_init__(self):
        if self.iterations < 1 or self.warmup < 0:
            raise BackendError(f"need iterations >= 1 and warmup >= 0 (got {self.iterations}, "
                               f"{self.warmup})")
        if self.duration_s is not None and self.duration_s <= 0:
            raise BackendError(f"--duration must be > 0 seconds, got {self.duration_s}")


def random_feeds(shapes: Mapping[str, tuple], dtypes: Mapping[str, np.dtype], seed: int = 0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in shapes.items():
        dtype = np.dtype(dtypes[name])
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.uniform(0.0, 1.0, shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype)
    return feeds


def _timed_loop(runner, step, options: EngineBenchOptions, progress: bool) -> list[float]:
    """Per-iteration milliseconds from CUDA events recorded on the engine's stream: at least
    `iterations` runs, and with `duration_s` as many more as fit in that time."""
    torch = runner.torch
    for _ in range(options.warmup):
        step()
    runner.stream.synchronize()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="engine", unit="it", leave=False)
    samples, started = [], time.perf_counter()
    while len(samples) < options.iterations or (
            options.duration_s and time.perf_counter() - started < options.duration_s):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record(runner.stream)
        step()
        end.record(runner.stream)
        end.synchronize()
        samples.append(begin.elapsed_time(end))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return samples


def _graph_step(runner):
    """Capture one enqueue in a CUDA graph (after a warm run) and return its replay."""
    torch = runner.torch
    runner.execute()
    runner.stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=runner.stream):
        runner.execute()
    return graph.replay


def _memory(engine, runner) -> dict:
    torch = runner.torch
    size = getattr(engine, "device_memory_size_v2", None) or getattr(
        engine, "device_memory_size", 0)
    free, total = torch.cuda.mem_get_info(runner.device)
    return {"engine_device_mib": size / MIB,
            "torch_allocated_mib": torch.cuda.memory_allocated(runner.device) / MIB,
            "gpu_used_mib": (total - free) / MIB, "gpu_total_mib": total / MIB}


def bench_engine(path: str | os.PathLike, options: EngineBenchOptions = EngineBenchOptions(),
                 trt=None, progress: bool = False) -> dict:
    """Benchmark one engine file; returns trtq's bench record."""
    from trtq.engines.device import require_device
    from trtq.engines.engine_check import check_engine, load_engine
    from trtq.engines.runner import EngineRunner
    from trtq.engines.tensorrt_api import import_tensorrt

    path = Path(path)
    trt = trt or import_tensorrt()
    record = check_engine(path, trt)
    require_device()  # deserializing and running need the GPU (TensorRT-RTX builds without)
    engine = load_engine(path, trt, record=record)
    runner = EngineRunner(engine, trt, options.device)
    shapes = runner.input_shapes(options.shapes)
    dtypes = {n: trt.nptype(engine.get_tensor_dtype(n)) for n in runner.inputs}
    runner.bind(random_feeds(shapes, dtypes, options.seed))
    step = _graph_step(runner) if options.cuda_graph else runner.execute
    log.info("benchmarking %s: %d warm-up + %d timed runs%s", path.name, options.warmup,
             options.iterations, " (CUDA graph)" if options.cuda_graph else "")
    samples = _timed_loop(runner, step, options, progress)
    stats = summarize(samples)
    return {
        "backend": "tensorrt", "device": runner.torch.cuda.get_device_name(runner.device),
        "tensorrt_version": trt.__version__, "precision": record.get("precision"),
        "model_file": str(path), "model_sha256": sha256_file(path),
        "input_shapes": {k: list(v) for k, v in shapes.items()},
        "warmup": options.warmup, "iterations": len(samples), "cuda_graph": options.cuda_graph,
        "timing": "CUDA events around execute_async_v3, inputs resident on the GPU",
        "latency_ms": stats, "fps": 1000.0 / stats["median"],
        "memory": _memory(engine, runner), "peak_rss_mib": peak_rss_mib(),
        "samples_ms": samples,
    }
