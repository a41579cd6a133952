"""PTQ4ViT's twin-uniform quantizers (ALGORITHMS.md §5), in simulation.

A b-bit twin quantizer is two (b−1)-bit uniform ranges and a flag bit choosing between them;
each value is quantized in exactly one range (never the sum of both, the reference code's
defect, which decodes a true 0 as a non-zero value).

* post-softmax (`twin_softmax`): values in [0, 1]. R1 = [0, split] with Δ1 = split / m, R2 =
  [split, 1] with the fixed Δ2 = 1 / m (m = 2^(b−1) − 1); x < split → R1, else R2. The split
  is a power of two 2^−k, so Δ2 = 2^k·Δ1 and an R2 code is aligned by a left shift of k bits.
* post-GELU (`twin_gelu`): the negative range has the fixed Δneg = 0.17 / 2^(b−1) (GELU's
  minimum is about −0.17) and codes −2^(b−1)..−1, so it reaches −0.17; values below −Δneg/2
  use it, all others (zero included) the positive range, codes 0..m, with Δpos searched and,
  when tied, rounded to Δneg·2^j.

A quantizer holds (scale, scale2): (Δ1, Δ2) for post-softmax, (Δpos, Δneg) for post-GELU.
"""

from __future__ import annotations

import math

import torch

GELU_MIN = 0.17  # |min GELU(x)| ≈ 0.1700 (at x ≈ −0.75)
MAX_SPLIT_EXPONENT = 19  # the post-softmax split is searched over 2^0 … 2^−19


def levels(bits: int) -> int:
    """m: the largest code of one (b−1)-bit range."""
    return 2 ** (bits - 1) - 1


def softmax_scale2(bits: int) -> float:
    return 1.0 / levels(bits)


def gelu_scale2(bits: int) -> float:
    return GELU_MIN / 2 ** (bits - 1)


def fixed_scale2(kind: str, bits: int) -> float:
    return softmax_scale2(bits) if kind == "twin_softmax" else gelu_scale2(bits)


def split_scales(bits: int) -> list[float]:
    """Δ1 candidates of the post-softmax quantizer: split = 2^−k, k = 0 … 19."""
    return [2.0 ** -k * softmax_scale2(bits) for k in range(MAX_SPLIT_EXPONENT + 1)]


def tie_to_power_of_two(scale: float, base: float) -> float:
    """`scale` rounded (in log2) to base·2^j, the shift-aligned post-GELU format."""
    return base * 2.0 ** round(math.log2(scale / base))


def twin_fake_quant(x: torch.Tensor, kind: str, bits: int, scale: float,
                    scale2: float) -> torch.Tensor:
    """Quantize-dequantize `x` with one twin quantizer; each value uses one range only."""
    m = levels(bits)
    if kind == "twin_softmax":
        low = torch.clamp(torch.round(x / scale), 0, m) * scale
        high = torch.clamp(torch.round(x / scale2), 0, m) * scale2
        return torch.where(x < scale * m, low, high)
    if kind == "twin_gelu":
        negative = torch.clamp(torch.round(x / scale2), -(m + 1), -1) * scale2
        positive = torch.clamp(torch.round(x / scale), 0, m) * scale
        return torch.where(x < -scale2 / 2, negative, positive)
    raise ValueError(f"not a twin quantizer kind: {kind!r}")


def twin_codes(x: torch.Tensor, kind: str, bits: int, scale: float,
               scale2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(flag, code): flag 1 where the value uses the second range (R2, or the negative range
    for post-GELU), and its (b−1)-bit code (the negative range stores magnitude − 1)."""
    m = levels(bits)
    if kind == "twin_softmax":
        flag = x >= scale * m
        code = torch.where(flag, torch.round(x / scale2), torch.round(x / scale)).clamp(0, m)
    else:
        flag = x < -scale2 / 2
        code = torch.where(flag, torch.round(-x / scale2) - 1, torch.round(x / scale))
        code = code.clamp(0, m)
    return flag, code.to(torch.int32)
