"""Observers: how a quantizer's range is chosen from calibration data (ALGORITHMS.md §1).

Activations stream through `ActivationObserver.update` batch by batch; the observer keeps exact
min/max, per-batch extremes (for averaged min/max) and a signed histogram whose range grows by
powers of two (bins merge pairwise, so no count is ever re-estimated). Percentile, entropy (KL)
and MSE/Lp ranges are computed from that histogram, so memory stays constant however many
images are seen. Weights are observed directly, per channel.

A range is `(lo, hi)`; symmetric quantizers use `amax = max(|lo|, |hi|)`.

Devices: the statistics are computed where the activations are (the histogram counts stay
there). Per batch one pair of numbers, the batch's (min, max), comes to the host: it refuses
NaN/Inf on the image that carries it and sets the histogram's range (`torch.histc` takes host
bounds). The range searches over the finished histogram (percentile, KL, MSE) run in numpy on
the host, once per quantizer.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from trtq.errors import CalibrationError, NonFiniteError  # noqa: F401  (re-exported)
from trtq.recipes import QuantizerSpec


def check_finite(x: torch.Tensor, what: str) -> None:
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise NonFiniteError(int((~finite).sum()), x.numel(), what)


class SignedHistogram:
    """Counts over [-R, R] in 2·n equal bins; R doubles (merging bin pairs) when data exceeds it."""

    def __init__(self, bins_per_side: int) -> None:
        self.n = bins_per_side
        self.range = 0.0
        self.counts: torch.Tensor | None = None

    def _grow(self, amax: float) -> None:
        while amax > self.range:
            merged = self.counts.reshape(self.n, 2).sum(1)
            self.counts = torch.zeros_like(self.counts)
            self.counts[self.n // 2: self.n // 2 + self.n] = merged
            self.range *= 2.0

    def update(self, x: torch.Tensor, amax: float | None = None) -> None:
        """Count `x` (on its device); `amax` = max|x| when the caller knows it already."""
        amax = float(x.abs().max()) if amax is None else amax
        if self.counts is None:
            self.range = amax if amax > 0 else 1e-8
            self.counts = torch.zeros(2 * self.n, dtype=torch.float64, device=x.device)
        self._grow(amax)
        self.counts += torch.histc(x, 2 * self.n, -self.range, self.range).double()

    def host_counts(self) -> np.ndarray:
        return self.counts.cpu().numpy()

    @property
    def width(self) -> float:
        return self.range / self.n

    def centers(self) -> np.ndarray:
        return (np.arange(2 * self.n) + 0.5 - self.n) * self.width

    def folded(self) -> np.ndarray:
        """Counts of |x| over [0, R] in n bins."""
        c = self.host_counts()
        return c[self.n:] + c[:self.n][::-1]


def _fake_quant_np(x: np.ndarray, lo: float, hi: float, spec: QuantizerSpec) -> np.ndarray:
    scale, zp = range_to_qparams(torch.tensor(lo), torch.tensor(hi), spec)
    s, z = float(scale), float(zp)
    return (np.clip(np.round(x / s) + z, spec.qmin, spec.qmax) - z) * s


def _percentile_range(h: SignedHistogram, lo: float, hi: float, spec: QuantizerSpec):
    q = spec.percentile / 100.0
    if spec.symmetric:
        cum = np.cumsum(h.folded())
        index = int(np.searchsorted(cum, q * cum[-1]))
        amax = min((index + 1) * h.width, max(-lo, hi))
        return -amax, amax
    cum = np.cumsum(h.host_counts())
    edges = (np.arange(2 * h.n + 1) - h.n) * h.width
    low = edges[int(np.searchsorted(cum, (1.0 - q) * cum[-1]))]
    high = edges[int(np.searchsorted(cum, q * cum[-1])) + 1]
    return min(max(lo, float(low)), 0.0), max(min(hi, float(high)), 0.0)


def _mse_range(h: SignedHistogram, lo: float, hi: float, spec: QuantizerSpec):
    """Smallest Σ count·|c − q(c)|^p over `mse_candidates` shrinkings of the observed range."""
    centers, counts = h.centers(), h.host_counts()
    used = counts > 0
    centers, counts = centers[used], counts[used]
    best, best_err = (lo, hi), math.inf
    amax = max(-lo, hi)
    for k in range(1, spec.mse_candidates + 1):
        f = k / spec.mse_candidates
        cand = (-amax * f, amax * f) if spec.symmetric else (lo * f, hi * f)
        err = float(np.sum(counts * np.abs(centers - _fake_quant_np(centers, *cand, spec))
                           ** spec.mse_p))
        if err < best_err:
            best, best_err = cand, err
    return best


def _kl_after_requantization(folded: np.ndarray, i: int, levels: int) -> float:
    """KL(P‖Q): P = bins [0, i) with the tail folded into the last bin, Q = P requantized to
    `levels` levels (each level's mass spread evenly over its non-empty bins)."""
    p = folded[:i].astype(np.float64).copy()
    p[-1] += folded[i:].sum()
    edges = np.linspace(0, i, levels + 1).astype(np.int64)
    nonzero = (folded[:i] > 0).astype(np.float64)
    sums = np.add.reduceat(folded[:i], edges[:-1])
    nz = np.add.reduceat(nonzero, edges[:-1])
    per_bin = np.divide(sums, nz, out=np.zeros_like(sums), where=nz > 0)
    q = np.repeat(per_bin, np.diff(edges)) * nonzero
    ps, qs = p.sum(), q.sum()
    if ps == 0 or qs == 0:
        return math.inf
    p, q = p / ps, q / qs
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def _entropy_amax(folded: np.ndarray, width: float, bits: int, stride: int = 16) -> float:
    """TensorRT's KL-divergence calibration on a |x| histogram: the clip bin count i whose
    2^(b-1)-level requantization of bins [0, i) loses the least information. Searched every
    `stride` bins, then bin by bin around the best."""
    levels = 2 ** (bits - 1)
    n = len(folded)
    if n <= levels or folded.sum() == 0:
        return n * width

    def best_of(candidates) -> int:
        return min(candidates, key=lambda i: _kl_after_requantization(folded, i, levels))

    coarse = best_of(list(range(levels, n + 1, stride)) + [n])
    fine = best_of(range(max(levels, coarse - stride + 1), min(n, coarse + stride - 1) + 1))
    return fine * width


class ActivationObserver:
    """Streaming statistics of one per-tensor activation quantizer."""

    def __init__(self, spec: QuantizerSpec) -> None:
        self.spec = spec
        self.lo, self.hi = math.inf, -math.inf
        self.batch_lo: list[float] = []
        self.batch_hi: list[float] = []
        self.histogram = SignedHistogram(spec.histogram_bins)
        self.batches = 0
        self._entropy: float | None = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        # the batch's one host read: min/max are NaN or ±Inf iff some value is
        lo, hi = torch.stack(torch.aminmax(x)).tolist()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            check_finite(x, "activation")
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self.batch_lo.append(lo)
        self.batch_hi.append(hi)
        if self.spec.observer in ("percentile", "entropy", "mse"):
            self.histogram.update(x, max(-lo, hi))
        self.batches += 1

    def compute(self) -> tuple[float, float]:
        spec = self.spec
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        if spec.observer == "minmax":
            return lo, hi
        if spec.observer == "avg_minmax":
            lo, hi = float(np.mean(self.batch_lo)), float(np.mean(self.batch_hi))
            if spec.symmetric:
                amax = float(np.mean(np.maximum(np.abs(self.batch_lo), np.abs(self.batch_hi))))
                return -amax, amax
            return min(lo, 0.0), max(hi, 0.0)
        if spec.observer == "percentile":
            return _percentile_range(self.histogram, lo, hi, spec)
        if spec.observer == "mse":
            return _mse_range(self.histogram, lo, hi, spec)
        if self._entropy is None:
            self._entropy = _entropy_amax(self.histogram.folded(), self.histogram.width,
                                          spec.bits)
        amax = min(self._entropy, max(-lo, hi))
        return (-amax, amax) if spec.symmetric else (max(lo, -amax), min(hi, amax))


def weight_range(w: torch.Tensor, spec: QuantizerSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (along `spec.axis`) or per-tensor (lo, hi) of a weight tensor."""
    w = w.detach().float()
    check_finite(w, "weight")
    if spec.axis is None:
        flat = w.reshape(1, -1)
    else:
        flat = w.movedim(spec.axis, 0).reshape(w.shape[spec.axis], -1)
    lo = torch.clamp(flat.min(1).values, max=0.0)
    hi = torch.clamp(flat.max(1).values, min=0.0)
    if spec.symmetric:
        amax = torch.maximum(-lo, hi)
        lo, hi = -amax, amax
    if spec.observer == "mse":
        lo, hi = _weight_mse(flat, lo, hi, spec)
    if spec.axis is None:
        return lo[0], hi[0]
    return lo, hi


def _weight_mse(flat, lo, hi, spec: QuantizerSpec):
    best_lo, best_hi = lo.clone(), hi.clone()
    best_err = torch.full_like(lo, math.inf)
    for k in range(1, spec.mse_candidates + 1):
        f = k / spec.mse_candidates
        c_lo, c_hi = lo * f, hi * f
        scale, zp = range_to_qparams(c_lo, c_hi, spec)
        q = torch.clamp(torch.round(flat / scale[:, None]) + zp[:, None], spec.qmin, spec.qmax)
        err = ((q - zp[:, None]) * scale[:, None] - flat).abs().pow(spec.mse_p).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo = torch.where(better, c_lo, best_lo)
        best_hi = torch.where(better, c_hi, best_hi)
    return best_lo, best_hi


def range_to_qparams(lo: torch.Tensor, hi: torch.Tensor, spec: QuantizerSpec):
    """(scale, zero_point) for a range; zero ranges get a harmless positive scale.

    The range is widened to contain 0 first: 0 must be exactly representable (padding, ReLU
    and attention zeros), and an asymmetric range entirely above or below 0 would otherwise
    put the zero point outside the code range, where it saturates and every value clips."""
    lo = torch.clamp(torch.as_tensor(lo, dtype=torch.float32), max=0.0)
    hi = torch.clamp(torch.as_tensor(hi, dtype=torch.float32), min=0.0)
    if spec.symmetric:
        amax = torch.maximum(-lo, hi)
        amax = torch.where(amax > 0, amax, torch.ones_like(amax))
        scale = amax / spec.qmax
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return scale, zero_point
    span = hi - lo
    span = torch.where(span > 0, span, torch.ones_like(span))
    scale = span / (spec.qmax - spec.qmin)
    zero_point = torch.clamp(torch.round(spec.qmin - lo / scale), spec.qmin, spec.qmax)
    return scale, zero_point.to(torch.int32)
