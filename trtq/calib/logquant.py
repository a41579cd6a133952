"""AGQ's log2 quantizer (PTQ4SAM, ALGORITHMS.md §3): the format, its tables and the reference.

Format, for `bits` b (L = 2^b codes), scale s > 0 (the largest level) and base τ ∈ {1, 2, 4}:

* code q in 0 … L−2 decodes to s·2^(−q/τ); **code L−1 decodes to exactly 0** (trtq's explicit
  zero: a real b-bit format has no extra code for underflow, so one code is reserved for it and
  2^b − 1 non-zero levels remain);
* encoding: q = the number of thresholds θ_k = s·2^(−(k+½)/τ) (k = 0 … L−2) that are greater
  than max(x, 0). Away from exact ties this is clamp(round(−τ·log2(x/s)), 0, L−1), with every
  value below the last threshold (and every zero or negative input) on the zero code.

The thresholds and levels are float32 tables computed once in float64. Where the grid runs
below the smallest normal float32 (τ = 1 at 7–8 bits, τ = 2 at 8 bits), those thresholds are
dropped and every value under the last remaining one decodes to 0. The PyTorch reference
(`log_fake_quant`), the standard-ONNX decomposition (`trtq.calib.logquant_onnx`), the
onnxruntime custom op (and the CUDA kernel of the plugin issue) all encode by comparing against
the same thresholds and decode from the same level table, so they agree bit for bit, however a
library rounds its log2.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from trtq.calib.observers import check_finite

TAUS = (1, 2, 4)
FLT_MIN = float(np.finfo(np.float32).tiny)  # smallest normal float32


def check_params(bits: int, tau: int, scale: float) -> None:
    if not 2 <= int(bits) <= 8:
        raise ValueError(f"log2 quantizer bits={bits}: use 2..8")
    if int(tau) not in TAUS:
        raise ValueError(f"log2 quantizer tau={tau}: use one of {TAUS}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"log2 quantizer scale={scale}: needs a finite value > 0")


@lru_cache(maxsize=256)
def _tables(bits: int, tau: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    check_params(bits, tau, scale)
    codes = 2 ** bits
    k = np.arange(codes - 1, dtype=np.float64)
    thresholds = (scale * np.exp2(-(k + 0.5) / tau)).astype(np.float32)
    levels = np.zeros(codes, dtype=np.float32)
    levels[:-1] = (scale * np.exp2(-k / tau)).astype(np.float32)
    # float32 ends at FLT_MIN: thresholds below it are dropped (0), and every code past the
    # last real threshold decodes to 0 (only τ = 1 at 7-8 bits and τ = 2 at 8 bits reach it)
    usable = int(np.count_nonzero(thresholds >= FLT_MIN))
    thresholds[usable:] = 0.0
    levels[usable:] = 0.0
    thresholds.setflags(write=False)
    levels.setflags(write=False)
    return thresholds, levels


def thresholds(bits: int, tau: int, scale: float) -> np.ndarray:
    """θ_0 > θ_1 > … > θ_{L−2}: code q covers θ_q ≤ x < θ_{q−1} (float32, read-only)."""
    return _tables(int(bits), int(tau), float(scale))[0]


def levels(bits: int, tau: int, scale: float) -> np.ndarray:
    """The L decoded values, level[q] = s·2^(−q/τ), level[L−1] = 0 (float32, read-only)."""
    return _tables(int(bits), int(tau), float(scale))[1]


def encode_numpy(x: np.ndarray, bits: int, tau: int, scale: float) -> np.ndarray:
    """Codes (int32) of `x` (the custom op's reference)."""
    ascending = thresholds(bits, tau, scale)[::-1]
    above = ascending.size - np.searchsorted(ascending, np.maximum(x, 0), side="right")
    return above.astype(np.int32)


def log_fake_quant_numpy(x: np.ndarray, bits: int, tau: int, scale: float) -> np.ndarray:
    return levels(bits, tau, scale)[encode_numpy(x, bits, tau, scale)]


def encode(x: torch.Tensor, bits: int, tau: int, scale: float) -> torch.Tensor:
    """Codes (int64) of `x`: how many thresholds are greater than max(x, 0)."""
    ascending = torch.from_numpy(thresholds(bits, tau, scale)[::-1].copy()).to(x.device)
    below_or_equal = torch.bucketize(x.float().clamp_min(0), ascending, right=True)
    return ascending.numel() - below_or_equal


def log_fake_quant(x: torch.Tensor, bits: int, tau: int, scale: float) -> torch.Tensor:
    """Quantize-dequantize `x` on the log2 grid (same dtype and shape as `x`)."""
    table = torch.from_numpy(levels(bits, tau, scale).copy()).to(x.device)
    return table[encode(x, bits, tau, scale)].to(x.dtype)


# -- AGQ: τ and scale search on the attention output -----------------------------------------
GOLDEN = (math.sqrt(5) - 1) / 2


def output_error(a: torch.Tensor, v: torch.Tensor | None, bits: int, tau: int, scale: float,
                 p: float) -> float:
    """mean |Q(a)·V − a·V|^p (V in full precision), or mean |Q(a) − a|^p without V."""
    qa = log_fake_quant(a, bits, tau, scale)
    diff = (qa - a) if v is None else torch.matmul(qa - a, v)
    return float(diff.abs().pow(p).mean())


def search_scale(a: torch.Tensor, v: torch.Tensor | None, bits: int, tau: int, p: float = 2.4,
                 iterations: int = 16) -> tuple[float, float]:
    """Golden-section search of s in [min(0.1, 0.01·m), m] (m = max a); returns (s, error).
    The best point evaluated is returned, so an uneven error curve cannot make it worse than
    either bound."""
    m = float(a.max())
    if not m > 0:
        return 1.0, output_error(a, v, bits, tau, 1.0, p)
    lo, hi = min(0.1, 0.01 * m), m
    seen: dict[float, float] = {}

    def err(s: float) -> float:
        if s not in seen:
            seen[s] = output_error(a, v, bits, tau, s, p)
        return seen[s]

    x1, x2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    for _ in range(iterations):
        if err(x1) <= err(x2):
            hi, x2 = x2, x1
            x1 = hi - GOLDEN * (hi - lo)
        else:
            lo, x1 = x1, x2
            x2 = lo + GOLDEN * (hi - lo)
    err(min(0.1, 0.01 * m))
    err(m)
    best = min(seen, key=seen.get)
    return best, seen[best]


def subsample_rows(a: torch.Tensor, v: torch.Tensor | None, max_elements: int):
    """Keep an evenly strided subset of the leading (batch × heads) slices so that `a` has at
    most `max_elements` elements; V keeps the matching slices. Exact when small enough."""
    if a.numel() <= max_elements or a.dim() < 3:
        return a, v
    lead = a.shape[:-2]
    flat_a = a.reshape(-1, *a.shape[-2:])
    per = flat_a[0].numel()
    keep = max(1, max_elements // per)
    # computed on the host (the same rows on every device), then moved to a's device
    index = torch.linspace(0, flat_a.shape[0] - 1, keep).round().long().unique().to(a.device)
    sub_v = None
    if v is not None:
        sub_v = v.expand(*lead, *v.shape[-2:]).reshape(-1, *v.shape[-2:])[index]
    return flat_a[index], sub_v


class AgqObserver:
    """Per image: the best scale for each τ (golden section); at the end, τ with the smallest
    summed error and the mean of its best scales (ALGORITHMS.md §3).

    The errors are computed on the activations' device; the golden-section search compares
    them on the host (one read per evaluated scale), as its next point depends on them."""

    def __init__(self, bits: int, taus=TAUS, p: float = 2.4, max_elements: int = 1 << 16,
                 iterations: int = 16) -> None:
        self.bits, self.taus, self.p = bits, tuple(taus), p
        self.max_elements, self.iterations = max_elements, iterations
        self.errors = {t: 0.0 for t in self.taus}
        self.scales: dict[int, list[float]] = {t: [] for t in self.taus}
        self.batches = 0

    def update(self, x: torch.Tensor) -> None:
        self.update_pair(x, None)

    def update_pair(self, a: torch.Tensor, v: torch.Tensor | None) -> None:
        check_finite(a, "activation")
        if v is not None:
            check_finite(v, "activation")
        a, v = subsample_rows(a.detach().float(), None if v is None else v.detach().float(),
                              self.max_elements)
        for tau in self.taus:
            scale, error = search_scale(a, v, self.bits, tau, self.p, self.iterations)
            self.errors[tau] += error
            self.scales[tau].append(scale)
        self.batches += 1

    def compute(self) -> tuple[int, float]:
        tau = min(self.taus, key=lambda t: self.errors[t])
        return tau, float(np.mean(self.scales[tau]))
