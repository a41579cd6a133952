"""Timing loops and latency statistics (medians and tail percentiles, never a bare mean)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

PERCENTILES = (90, 95, 99)


def time_calls(fn: Callable[[], object], iterations: int, warmup: int,
               progress: bool = False, label: str = "") -> list[float]:
    """Call `fn` `warmup` times untimed, then `iterations` times; milliseconds per call."""
    if iterations < 1 or warmup < 0:
        raise ValueError("iterations must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    loop = range(iterations)
    if progress:
        from tqdm import tqdm

        loop = tqdm(loop, desc=label or "timing", unit="it", leave=False)
    samples = []
    for _ in loop:
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def summarize(samples_ms: Sequence[float]) -> dict:
    """median/p90/p95/p99/min/max/mean in ms and FPS (1000 / median) of latency samples."""
    if len(samples_ms) == 0:
        raise ValueError("no latency samples")
    data = np.asarray(samples_ms, dtype=np.float64)
    stats = {"median": float(np.median(data))}
    for p in PERCENTILES:
        stats[f"p{p}"] = float(np.percentile(data, p))
    stats.update(min=float(data.min()), max=float(data.max()), mean=float(data.mean()),
                 count=int(data.size))
    return stats
