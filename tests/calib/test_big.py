"""PTQ4SAM's bimodal integration: detection, sign factor, fold exactness (flip and centring),
the bimodal model variant, and the fold's round trip through the quant state."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from trtq.calib.big import (
    apply_big,
    channel_signs,
    detect_bimodal,
    find_peaks,
    fold,
    inspect_keys,
)
from trtq.data.calibration import calibration_samples
from trtq.models import load_model
from trtq.models.sam_adapter import SAM
from trtq.models.sam_calibration import run_sample
from trtq.models.two_way_transformer import capture_keys as capture
from trtq.recipes import BigOptions

T2I_BIG = BigOptions(layers=SAM.rules.big_layers)  # the presets' BIG: token→image only

T2I = ("mask_decoder.transformer.layers.0.cross_attn_token_to_image",
       "mask_decoder.transformer.layers.1.cross_attn_token_to_image",
       "mask_decoder.transformer.final_attn_token_to_image")


@pytest.fixture(scope="module")
def sample(synthetic_coco):
    return calibration_samples(synthetic_coco, "calib", 1)[0]


def test_detection_counts_kde_peaks():
    g = torch.Generator().manual_seed(0)
    one = torch.randn(4096, 32, generator=g)
    offsets = (torch.randint(0, 2, (32,), generator=g) * 2 - 1) * 6.0
    two = one + offsets
    assert not detect_bimodal(one, BigOptions()).bimodal
    verdict = detect_bimodal(two, BigOptions())
    assert verdict.bimodal and len(verdict.peaks) == 2
    assert verdict.peaks[0] == pytest.approx(-6, abs=0.5)
    assert verdict.peaks[1] == pytest.approx(6, abs=0.5)
    # the distance rule: two peaks closer than min_distance grid points count as one
    assert len(detect_bimodal(two, BigOptions(min_distance=127)).peaks) == 1
    # the height rule drops a bump below min_height of the summed density
    density = torch.tensor([0, 5, 0, 0.01, 0, 4, 0], dtype=torch.float64)
    assert find_peaks(density, 0.01, 1) == [1, 5]
    assert find_peaks(density, 0.0, 1) == [1, 3, 5]


def test_sign_of_zero_mean_is_plus_one():
    k = torch.tensor([[[1.0, -2.0, 0.0], [-1.0, -2.0, 0.0]]])
    assert channel_signs(k).tolist() == [1.0, -1.0, 1.0]  # channel 0 mean 0 → +1, not 0


def _decoder_out(model, sample):
    with torch.no_grad():
        return run_sample(model, sample)


@pytest.mark.parametrize("model_name", ["tiny_litemedsam", "litemedsam"])
def test_fold_keeps_decoder_outputs(model_name, sample):
    model = load_model(model_name)
    before = _decoder_out(model, sample)
    keys, _ = capture(model, lambda m: run_sample(m, sample))
    attns = dict(model.mask_decoder.named_modules(prefix="mask_decoder"))
    for name in T2I:
        sign = torch.where(torch.arange(keys[name].shape[-1]) % 3 == 0, -1.0, 1.0)
        fold(attns[name], sign, torch.zeros_like(sign))
    flipped = _decoder_out(model, sample)
    for a, b in zip(before, flipped, strict=True):  # a sign flip is exact: bit for bit
        assert torch.equal(a, b)
    for name in T2I:
        k = keys[name]
        fold(attns[name], torch.ones(k.shape[-1]), k.reshape(-1, k.shape[-1]).mean(0))
    centred = _decoder_out(model, sample)
    for a, b in zip(before, centred, strict=True):
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))


def test_bimodal_variant_has_the_same_outputs_and_a_bimodal_k(sample):
    plain, bimodal = load_model("litemedsam"), load_model("litemedsam-bimodal")
    for a, b in zip(_decoder_out(plain, sample), _decoder_out(bimodal, sample), strict=True):
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))
    reports = {}
    for name, model in (("plain", plain), ("bimodal", bimodal)):
        keys, _ = capture(model, lambda m: run_sample(m, sample))
        reports[name] = {r.layer: r for r in inspect_keys(keys, BigOptions(), 8)}
        assert len(reports[name]) == 7  # every decoder attention is inspected
    # measured before this issue: one peak everywhere on LiteMedSAM itself
    assert not any(r.bimodal for r in reports["plain"].values())
    for layer, r in reports["bimodal"].items():
        assert r.bimodal == (layer in T2I), layer
        if r.bimodal:
            assert r.peaks[0] < 0 < r.peaks[1]


def test_big_on_the_bimodal_variant_flips_centres_and_shrinks_k_error(sample):
    model = load_model("litemedsam-bimodal")
    before = _decoder_out(model, sample)
    report = apply_big(model, T2I_BIG, lambda m: run_sample(m, sample), bits=4)
    layers = {r["layer"]: r for r in report["layers"]}
    for name in T2I:
        r = layers[name]
        assert r["folded"] and r["bimodal"] and 0 < r["flipped_channels"] < 128
        # the flip alone does not change max|K|; centring then narrows K several times
        assert r["k_rmse_after_flip"] == pytest.approx(r["k_rmse_before"], rel=1e-6)
        assert r["k_rmse_after"] < 0.5 * r["k_rmse_before"]
        width = r["k_range_after"][1] - r["k_range_after"][0]
        assert width < 0.6 * (r["k_range_before"][1] - r["k_range_before"][0])
    assert not layers["mask_decoder.transformer.layers.0.self_attn"]["folded"]
    assert report["decoder_max_abs_change"] <= 1e-4 * max(1.0, float(before[0].abs().max()))


def test_flip_is_skipped_on_a_unimodal_k(sample):
    model = load_model("tiny_litemedsam")
    report = apply_big(model, replace(T2I_BIG, center=False),
                       lambda m: run_sample(m, sample))
    folded = [r for r in report["layers"] if r["folded"]]
    assert len(folded) == 3 and all(r["flipped_channels"] == 0 for r in folded)
    assert report["decoder_max_abs_change"] == 0.0


def test_quant_state_carries_the_fold_and_log2_scales(tiny_ptq4sam, sample):
    from trtq.calib.calibrate import read_quant_state
    from trtq.calib.modules import quantizers
    from trtq.calib.state_dir import STATE_FILE, load_calibrated

    recipe, states, big = read_quant_state(tiny_ptq4sam / STATE_FILE)
    assert recipe.name == "w8a8-ptq4sam" and recipe.big == T2I_BIG
    assert sorted(big) == sorted(T2I)
    assert all(set(f) == {"sign", "center"} for f in big.values())
    assert any(float(f["sign"].min()) < 0 for f in big.values())  # the bimodal K was flipped
    log2 = {n: s for n, s in states.items() if "tau" in s}
    assert len(log2) == 11  # 4 encoder + 7 decoder attentions of the tiny config
    assert all(int(s["tau"]) in (1, 2, 4) and float(s["scale"]) > 0 for s in log2.values())

    model = load_model("tiny_litemedsam-bimodal")
    load_calibrated(model, "tiny_litemedsam-bimodal", tiny_ptq4sam)
    attn = dict(model.named_modules())[T2I[0]]
    plain = load_model("tiny_litemedsam-bimodal")
    expected = dict(plain.named_modules())[T2I[0]]
    sign, center = big[T2I[0]]["sign"], big[T2I[0]]["center"]
    assert torch.equal(attn.q_proj.weight, expected.q_proj.weight * sign[:, None])
    assert torch.allclose(attn.k_proj.bias, expected.k_proj.bias * sign - center)
    on = [n for n, q in quantizers(model) if q.enabled and q.is_log2]
    assert len(on) == 11
    out = _decoder_out(model, sample)
    assert all(bool(torch.isfinite(t).all()) for t in out)
    assert not np.allclose(out[0].numpy(), _decoder_out(plain, sample)[0].numpy())
