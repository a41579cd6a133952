"""PTQ4ViT's twin-uniform quantizers: one range per value, the power-of-two tie, and the error on
LiteMedSAM's real post-softmax and post-GELU tensors against uniform quantization."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trtq.calib import twin


def _probabilities(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(8, 4, 49, 49, generator=g) * 3, dim=-1)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 1e-7])
    return x


def _max_error(y: torch.Tensor, x: torch.Tensor) -> float:
    return float((y - x).abs().max()) if x.numel() else 0.0


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("k", [0, 3, 9, 19])
def test_softmax_twin_selects_one_range_per_value(bits, k):
    x = _probabilities(bits + k)
    d2 = twin.softmax_scale2(bits)
    d1 = twin.split_scales(bits)[k]
    assert d1 == pytest.approx(2.0 ** -k * d2)  # Δ_R2 = 2^k·Δ_R1: shift-aligned
    y = twin.twin_fake_quant(x, "twin_softmax", bits, d1, d2)
    split = d1 * twin.levels(bits)
    assert split == pytest.approx(2.0 ** -k)
    low, high = x < split, x >= split
    # R1 values are on R1's grid within half a step; R2 values on R2's grid
    assert _max_error(y[low], x[low]) <= d1 / 2 + 1e-7
    assert _max_error(y[high], x[high]) <= d2 / 2 + 1e-7
    assert torch.allclose(y[low] / d1, torch.round(y[low] / d1), atol=1e-4)
    assert torch.allclose(y[high] / d2, torch.round(y[high] / d2), atol=1e-4)
    assert float(y[0, 0, 0, 0]) == 0.0  # a true 0 decodes to exactly 0
    assert float(y[0, 0, 0, 1]) == pytest.approx(1.0)
    flag, code = twin.twin_codes(x, "twin_softmax", bits, d1, d2)
    assert bool(torch.all(flag == high)) and int(code.max()) <= twin.levels(bits)


def test_adding_both_ranges_would_shift_zero():
    # The reference defect (ALGORITHMS.md §5): its R2 part quantizes max(x, split) and the two
    # parts are added, so a true 0 decodes as round(split/Δ2)·Δ2; selecting one range gives 0.
    bits, k = 6, 3
    d2 = twin.softmax_scale2(bits)
    d1 = twin.split_scales(bits)[k]
    zero = torch.zeros(4)
    assert torch.equal(twin.twin_fake_quant(zero, "twin_softmax", bits, d1, d2), zero)
    m = twin.levels(bits)
    added = torch.clamp(torch.round(zero / d1), 0, m) * d1 + \
        torch.clamp(torch.round(torch.clamp(zero, min=d1 * m) / d2), 0, m) * d2
    assert float(added[0]) == pytest.approx(0.129, abs=2e-3)  # the 0.129 of ALGORITHMS.md §5


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_gelu_twin_ranges_and_tie(bits):
    x = torch.nn.functional.gelu(torch.linspace(-6, 8, 5001))
    x = torch.cat([x, torch.zeros(1)])
    neg = twin.gelu_scale2(bits)
    assert neg == pytest.approx(0.17 / 2 ** (bits - 1))
    pos = twin.tie_to_power_of_two(8.0 / twin.levels(bits), neg)
    ratio = pos / neg
    assert ratio == 2.0 ** round(torch.log2(torch.tensor(ratio)).item())  # Δpos = Δneg·2^m
    y = twin.twin_fake_quant(x, "twin_gelu", bits, pos, neg)
    assert float(y[-1]) == 0.0
    negative = x < 0
    # the negative range reaches GELU's minimum: every negative value within half a step
    assert float((y[negative] - x[negative]).abs().max()) <= neg / 2 + 1e-7
    assert bool(torch.all(y[negative] <= 0)) and bool(torch.all(y[~negative] >= 0))
    assert float((y[~negative] - x[~negative]).abs().max()) <= pos / 2 + 1e-6
    assert float(y.min()) >= -(2 ** (bits - 1)) * neg - 1e-7
    flag, code = twin.twin_codes(x, "twin_gelu", bits, pos, neg)
    assert int(code.max()) <= twin.levels(bits)  # b−1 bits per range, plus the flag
    assert bool(torch.all(flag == (x < -neg / 2)))


def test_twin_beats_uniform_on_litemedsam_tensors(litemedsam, busi, monkeypatch):
    """On one busi image's real post-softmax and post-GELU tensors, at 6 bits, the twin format
    (best split / Δpos) has a smaller relative error than uniform with its best range."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "experiments"))
    import twin_error as te  # experiments/twin_error.py, imported as its own folder runs it

    from trtq.data.calibration import calibration_samples

    samples = calibration_samples(busi, "calib", 1)
    tensors = te.record_tensors(litemedsam, samples, {
        "post-softmax": ("image_encoder.layers.1.*.av_matmul",
                         "mask_decoder.transformer.layers.0.cross_attn_image_to_token.av_matmul"),
        "post-GELU": ("image_encoder.layers.1.*.mlp.fc2", "image_encoder.layers.0.*.conv3")})
    for family, ts in tensors.items():
        assert len(ts) >= 2, family
        errs = [te.errors(t, 6) for t in ts]
        twin_mean = sum(e["twin"] for e in errs) / len(errs)
        # post-softmax: twin beats both uniform formats; post-GELU: it beats symmetric (the
        # TensorRT format), while asymmetric uniform (8 b for the positive side, no power-of-two
        # tie) is measured better on these layers
        kinds = ("uniform symmetric", "uniform asymmetric") if family == "post-softmax" \
            else ("uniform symmetric",)
        uniform = min(sum(e[k] for e in errs) / len(errs) for k in kinds)
        assert twin_mean < uniform, (family, errs)
