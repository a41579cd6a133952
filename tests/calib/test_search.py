"""PTQ4ViT's Hessian-guided search: real (non-zero) gradients, the candidate grid, the search
improving its own metric and choosing other scales than output MSE, and calibration with it."""

from __future__ import annotations

import pytest
import torch

from trtq.calib import calibrate, load_quant_state, save_quant_state
from trtq.calib.calibrate import quantize
from trtq.calib.capture import Recorder
from trtq.calib.modules import quantizers
from trtq.calib.search import candidates, search_layer
from trtq.data.calibration import calibration_samples
from trtq.models import load_model
from trtq.models.sam_adapter import SAM
from trtq.models.sam_calibration import SamTask, mask_loss, run_sample, self_kl_loss
from trtq.recipes import QuantizerSpec, SearchOptions, get_recipe

LAYERS = ["image_encoder.layers.1.blocks.0.attn.qkv", "image_encoder.layers.1.blocks.0.mlp.fc2",
          "image_encoder.layers.0.blocks.0.conv1", "image_encoder.neck.2",
          "image_encoder.layers.1.blocks.0.attn.av_matmul",
          "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj"]


@pytest.fixture(scope="module")
def samples(synthetic_coco):
    return calibration_samples(synthetic_coco, "calib", 2)


def _record(samples, loss=mask_loss, recipe="w8a8-hessian", rows=128):
    model = load_model("tiny_litemedsam")
    quantize(model, get_recipe(recipe, SAM.rules))
    recorder = Recorder(model, LAYERS, rows)
    assert recorder.run(SamTask(samples, loss)) == 2
    return model, recorder.records


def test_mask_loss_gradients_are_real_and_self_kl_gradients_are_not(samples):
    _, ours = _record(samples)
    _, kl = _record(samples, self_kl_loss)
    for name in LAYERS:
        x, _, g = ours[name].tensors()
        _, _, g_kl = kl[name].tensors()
        assert g.shape[0] == x.shape[0] and g.shape[-1] > 1
        ours_mean = float(g.abs().mean())
        assert ours_mean > 0 and float((g == 0).double().mean()) < 0.5, name
        # KL of the model with itself: zero in exact arithmetic, rounding noise at most
        assert float(g_kl.abs().mean()) < 1e-4 * ours_mean, name


def test_recorded_rows_reproduce_the_layer_output(samples):
    model, records = _record(samples)
    modules = dict(model.named_modules())
    conv = modules["image_encoder.layers.0.blocks.0.conv1"]
    x, _, _ = records["image_encoder.layers.0.blocks.0.conv1"].tensors()
    w = conv.quant_weight().detach().reshape(conv.c.out_channels, -1)
    out = x[:, 0] @ w.T
    # the folded ConvBN output of some sampled position equals the real layer's output there
    seen = {}
    hook = conv.register_forward_hook(lambda m, a, o: seen.setdefault("out", o.detach()))
    with torch.no_grad():
        run_sample(model, samples[0])
    hook.remove()
    bias = conv._folded()[1].detach()
    full = seen["out"].flatten(2).transpose(1, 2).reshape(-1, w.shape[0])
    from trtq.calib.capture import rows_index

    index = rows_index(full.shape[0], 128)
    assert torch.allclose(out[:len(index)] + bias, full[index], atol=1e-4)


def test_candidate_grid_follows_the_spec():
    x = torch.tensor([-2.0, 0.5, 1.5])
    opts = SearchOptions(candidates=100, alpha=0.01, beta=1.2)
    cands = candidates(QuantizerSpec(bits=8, observer="hessian"), x, opts)
    assert len(cands) == 101
    delta0 = 2.0 / (2 ** 7 - 0.5)
    for i in (0, 37, 100):
        scale = float(cands[i].hi) / 127
        assert scale == pytest.approx(delta0 * (0.01 + i * 1.19 / 100), rel=1e-5)
    twin = candidates(QuantizerSpec(bits=6, kind="twin_softmax", observer="hessian"), x, opts)
    assert [c.scale for c in twin][:2] == pytest.approx([1 / 31, 0.5 / 31])
    assert len(twin) == 20 and twin[-1].scale == pytest.approx(2.0 ** -19 / 31)


def test_hessian_search_improves_its_metric_and_differs_from_output_mse(samples):
    model, records = _record(samples, recipe="w6a6-hessian", rows=96)
    modules = dict(model.named_modules())
    opts = SearchOptions(candidates=40, rounds=2)
    differ = 0
    for name in LAYERS:
        h = search_layer(name, modules[name], records[name], opts, metric="hessian")
        m = search_layer(name, modules[name], records[name], opts, metric="output_mse")
        assert not h["no_gradient"] and h["grad_mean_abs"] > 0
        for qname, chosen in h["quantizers"].items():
            key = "scale" if "scale" in chosen else "scale_mean"
            differ += chosen[key] != pytest.approx(m["quantizers"][qname][key], rel=1e-6)
    assert differ >= 2


def test_ptq4vit_calibration_saves_and_reloads(samples, tmp_path):
    recipe = get_recipe("w6a6-ptq4vit", SAM.rules)
    model = calibrate(load_model("tiny_litemedsam"), recipe, samples)
    qs = dict(quantizers(model))
    softmax = qs["image_encoder.layers.1.blocks.0.attn.av_matmul.input_quantizer"]
    gelu = qs["image_encoder.layers.1.blocks.0.mlp.fc2.input_quantizer"]
    assert softmax.is_twin and float(softmax.scale2) == pytest.approx(1 / 31)
    assert gelu.is_twin and float(gelu.scale2) == pytest.approx(0.17 / 32)
    ratio = float(gelu.scale) / float(gelu.scale2)
    assert ratio == 2.0 ** round(torch.log2(torch.tensor(ratio)).item())
    report = model.trtq_search_report
    assert report["samples"] == 2 and len(report["layers"]) > 50
    save_quant_state(model, recipe, tmp_path / "q.pt")
    again = load_model("tiny_litemedsam")
    load_quant_state(again, tmp_path / "q.pt")
    with torch.no_grad():
        a, b = run_sample(model, samples[0]), run_sample(again, samples[0])
    assert torch.equal(a[0], b[0])
