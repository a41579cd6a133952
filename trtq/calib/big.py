"""PTQ4SAM's Bimodal Integration (BIG) with trtq's centring, folded into the decoder's weights.

    report = apply_big(model, recipe.big, probe, bits=8)   # before calibration

`probe(model)` runs one full-precision forward (the first calibration image with its boxes).
For every decoder attention it records K = k_proj's output; on the attentions named by
`options.layers` (the token→image ones) it then

1. detects bimodality on one prompt's K: Gaussian KDE (Scott bandwidth) on `grid` points from
   min to max, peaks at least `min_height` of the summed density high and `min_distance` grid
   points apart; bimodal iff exactly two peaks;
2. if bimodal and `flip`: γ_j = sign(mean of channel j), sign(0) = +1, multiplied into row j of
   q_proj and k_proj (weights and biases): q'·k' = q·k for every head;
3. if `center`: μ_j = mid-range of channel j after the flip, subtracted from k_proj's bias:
   q·(k_i − μ) = q·k_i − q·μ, and q·μ is the same for every key i, so the softmax over keys is
   unchanged, while K becomes centred for a symmetric INT8 scale.

The per-layer report carries the verdict and the numbers behind it (peaks, K range and
symmetric K quantization RMSE before and after), and the largest change of the decoder's
outputs caused by the fold on the probe image. The fold (γ, μ per layer) is saved with the
quant state and re-applied by `load_quant_state`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from trtq.calib.qdq import fake_quant
from trtq.models.two_way_transformer import DecoderAttention, capture_keys, decoder_attentions
from trtq.recipes import BigOptions

ATTR = "trtq_big"  # model attribute holding {layer: {"sign": γ, "center": μ}} once folded


# -- detection ---------------------------------------------------------------------------------
def kde_density(values: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian KDE (Scott's bandwidth, as scipy's gaussian_kde) on `grid` points spanning
    [min, max], computed on `values`' device; returns (points, density)."""
    x = values.detach().double().flatten()
    n = x.numel()
    points = torch.linspace(float(x.min()), float(x.max()), grid, dtype=torch.float64,
                            device=x.device)
    std = float(x.std()) if n > 1 else 0.0
    bandwidth = std * n ** (-1 / 5)
    density = torch.zeros(grid, dtype=torch.float64, device=x.device)
    if not bandwidth > 0:
        density[0] = 1.0
        return points, density
    for chunk in x.split(1 << 16):
        z = (points[:, None] - chunk[None, :]) / bandwidth
        density += torch.exp(-0.5 * z * z).sum(dim=1)
    density /= n * bandwidth * math.sqrt(2 * math.pi)
    return points, density


def find_peaks(density: torch.Tensor, min_height: float, min_distance: int) -> list[int]:
    """Interior local maxima of `density` (first index of a flat top), at least
    `min_height` × sum(density) high; of two peaks closer than `min_distance` points the lower
    one is dropped (scipy.signal.find_peaks' height/distance rules). A sequential scan: it runs
    on the host, on the `grid` density values (one read per attention)."""
    d = density.tolist()
    candidates = []
    i = 1
    while i < len(d) - 1:
        if d[i] > d[i - 1]:
            j = i
            while j + 1 < len(d) - 1 and d[j + 1] == d[i]:
                j += 1
            if d[j + 1] < d[i]:
                candidates.append((i + j) // 2)
            i = j + 1
        else:
            i += 1
    floor = min_height * sum(d)
    candidates = [c for c in candidates if d[c] >= floor]
    kept: list[int] = []
    for c in sorted(candidates, key=lambda c: -d[c]):
        if all(abs(c - k) >= min_distance for k in kept):
            kept.append(c)
    return sorted(kept)


@dataclass
class Verdict:
    bimodal: bool
    peaks: list[float]  # K values at the peaks
    peak_heights: list[float]  # density at the peaks, as a share of the summed density


def detect_bimodal(k: torch.Tensor, options: BigOptions) -> Verdict:
    points, density = kde_density(k, options.grid)
    peaks = find_peaks(density, options.min_height, options.min_distance)
    total = float(density.sum())
    return Verdict(len(peaks) == 2, [float(points[p]) for p in peaks],
                   [float(density[p]) / total for p in peaks])


# -- the fold ------------------------------------------------------------------------------------
def channel_signs(k: torch.Tensor) -> torch.Tensor:
    """γ_j = sign(mean of channel j over prompts and tokens), with sign(0) = +1."""
    mean = k.detach().reshape(-1, k.shape[-1]).double().mean(dim=0)
    return torch.where(mean < 0, -1.0, 1.0).to(torch.float32)


def channel_midrange(k: torch.Tensor) -> torch.Tensor:
    flat = k.detach().reshape(-1, k.shape[-1])
    return ((flat.amax(dim=0) + flat.amin(dim=0)) / 2).to(torch.float32)


@torch.no_grad()
def fold(attn: DecoderAttention, sign: torch.Tensor, center: torch.Tensor) -> None:
    """q_proj, k_proj rows ×γ; k_proj bias −μ (μ in the flipped K's coordinates)."""
    for proj in (attn.q_proj, attn.k_proj):
        proj.weight.mul_(sign[:, None])
        proj.bias.mul_(sign)
    attn.k_proj.bias.sub_(center)


def symmetric_rmse(k: torch.Tensor, bits: int) -> float:
    """RMSE of K through a symmetric per-tensor min/max quantizer with `bits` bits."""
    qmax = 2 ** (bits - 1) - 1
    scale = float(k.abs().max()) / qmax
    if scale == 0:
        return 0.0
    q = fake_quant(k.float(), torch.tensor(scale, device=k.device),
                   torch.tensor(0, device=k.device), -qmax - 1, qmax)
    return float((q - k).pow(2).mean().sqrt())


# -- probing and applying ------------------------------------------------------------------------
@dataclass
class LayerReport:
    layer: str
    k_shape: list[int]
    bimodal: bool
    peaks: list[float]
    peak_heights: list[float]
    folded: bool = False
    flipped_channels: int = 0
    k_range_before: list[float] = field(default_factory=list)
    k_range_after: list[float] = field(default_factory=list)
    k_rmse_before: float = 0.0
    k_rmse_after_flip: float = 0.0
    k_rmse_after: float = 0.0
    bits: int = 8


def _k_range(k: torch.Tensor) -> list[float]:
    return [float(k.min()), float(k.max())]


def inspect_keys(keys: dict[str, torch.Tensor], options: BigOptions,
                 bits: int) -> list[LayerReport]:
    """The detection verdict and K statistics of every captured decoder attention (nothing is
    changed)."""
    reports = []
    for name, k in keys.items():
        verdict = detect_bimodal(k[0], options)  # one prompt's K
        reports.append(LayerReport(name, list(k.shape), verdict.bimodal, verdict.peaks,
                                   verdict.peak_heights, k_range_before=_k_range(k),
                                   k_rmse_before=symmetric_rmse(k, bits), bits=bits))
    return reports


def apply_big(model: nn.Module, options: BigOptions, probe: Callable[[nn.Module], object],
              bits: int = 8) -> dict:
    """Detect, fold (in place, before quantizers are installed) and report; see module doc."""
    keys, before = capture_keys(model, probe)
    if not keys:
        raise ValueError("BIG found no decoder attention to probe (the probe ran no decoder)")
    attns = decoder_attentions(model)
    folds = {}
    reports = inspect_keys(keys, options, bits)
    for report in reports:
        if not fnmatch.fnmatchcase(report.layer, options.layers):
            continue
        k = keys[report.layer]
        ones = torch.ones(k.shape[-1], device=k.device)
        sign = channel_signs(k) if (options.flip and report.bimodal) else ones
        flipped = k * sign
        center = channel_midrange(flipped) if options.center else torch.zeros_like(ones)
        after = flipped - center
        fold(attns[report.layer], sign, center)
        folds[report.layer] = {"sign": sign, "center": center}
        report.folded = True
        report.flipped_channels = int((sign < 0).sum())
        report.k_range_after = _k_range(after)
        report.k_rmse_after_flip = symmetric_rmse(flipped, bits)
        report.k_rmse_after = symmetric_rmse(after, bits)
    setattr(model, ATTR, folds)
    _, after_out = capture_keys(model, probe)
    change = _max_change(before, after_out)
    return {"options": asdict(options), "layers": [asdict(r) for r in reports],
            "decoder_max_abs_change": change}


def _max_change(a, b) -> float | None:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return float((a - b).abs().max())
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        values = [_max_change(x, y) for x, y in zip(a, b, strict=False)]
        values = [v for v in values if v is not None]
        return max(values) if values else None
    return None


def reapply(model: nn.Module, folds: dict[str, dict[str, torch.Tensor]]) -> None:
    """Apply a saved fold (from a quant state) to a freshly loaded float model."""
    attns = decoder_attentions(model)
    missing = sorted(set(folds) - set(attns))
    if missing:
        raise ValueError(f"the saved BIG fold names attentions this model lacks: {missing[:3]}")
    for layer, f in folds.items():
        device = attns[layer].k_proj.weight.device
        fold(attns[layer], f["sign"].to(device, torch.float32),
             f["center"].to(device, torch.float32))
    setattr(model, ATTR, {k: dict(v) for k, v in folds.items()})
