"""Recipes: rule order, presets, validation, serialization."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from trtq.models.sam_adapter import SAM
from trtq.recipes import (
    BigOptions,
    QuantizerSpec,
    QuantRecipe,
    QuantRule,
    RecipeError,
    SearchOptions,
    get_recipe,
    recipe_from_dict,
)

SAM_BIG = BigOptions(layers=SAM.rules.big_layers)
W8 = "image_encoder.layers.1.blocks.0.attn.qkv.weight_quantizer"
A8 = "image_encoder.layers.1.blocks.0.attn.qkv.input_quantizer"


def test_last_matching_rule_wins():
    spec4, spec8 = QuantizerSpec(bits=4), QuantizerSpec(bits=8)
    recipe = QuantRecipe("r", (QuantRule("*", spec8), QuantRule("*.qkv.*", spec4),
                               QuantRule("*.weight_quantizer", None)))
    assert recipe.spec_for(A8) is spec4
    assert recipe.spec_for(W8) is None
    assert recipe.spec_for("mask_decoder.x.input_quantizer") is spec8


def test_w8a8_is_deployable_and_keeps_sensitive_parts_float():
    r = get_recipe("w8a8", SAM.rules)
    assert r.deployable and r.target == "tensorrt"
    w, a = r.spec_for(W8), r.spec_for(A8)
    assert (w.bits, w.symmetric, w.axis, w.narrow, w.qmin, w.qmax) == (8, True, 0, True, -127, 127)
    assert (a.bits, a.symmetric, a.axis, a.qmin, a.qmax) == (8, True, None, -128, 127)
    assert (a.observer, a.percentile) == ("percentile", 99.99)
    for name in ("image_encoder.patch_embed.seq.0.input_quantizer",
                 "prompt_encoder.mask_downscaling.0.input_quantizer",
                 "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight_quantizer",
                 "mask_decoder.iou_prediction_head.layers.2.input_quantizer",
                 "image_encoder.layers.0.blocks.1.conv2.input_quantizer",  # depthwise
                 "mask_decoder.transformer.layers.0.cross_attn_token_to_image.av_matmul"
                 ".input_quantizer"):
        assert r.spec_for(name) is None, name
    assert r.spec_for("mask_decoder.transformer.layers.0.self_attn.qk_matmul.other_quantizer")


def test_low_bit_presets_are_simulation_only():
    r = get_recipe("w4a4")
    assert not r.deployable and r.bits == {4} and "simulation" in r.notes[0]
    assert get_recipe("fp16").rules == ()
    for bad in ("w9a9", "w8a4", "int8", "w1a1"):
        with pytest.raises(RecipeError):
            get_recipe(bad)


def test_spec_validation_says_what_to_fix():
    with pytest.raises(RecipeError, match="2..8"):
        QuantizerSpec(bits=16)
    with pytest.raises(RecipeError, match="observer"):
        QuantizerSpec(observer="magic")
    with pytest.raises(RecipeError, match="per-channel"):
        QuantizerSpec(axis=0, observer="entropy")


def test_round_trip_hash_and_variants():
    r = get_recipe("w8a8", SAM.rules).with_activation_observer("percentile", 99.9)
    again = recipe_from_dict(r.to_dict())
    assert again == r and again.sha256() == r.sha256()
    assert r.spec_for(A8).observer == "percentile" and r.spec_for(A8).percentile == 99.9
    assert r.spec_for(W8).observer == "minmax"  # weights keep theirs
    ort = r.for_target("onnxruntime")
    assert not ort.spec_for(A8).symmetric and ort.spec_for(W8).symmetric
    assert ort.sha256() != r.sha256()
    with pytest.raises(RecipeError, match="re-run"):
        recipe_from_dict({"rules": []})


def test_ptq4sam_presets():
    full = get_recipe("w8a8-ptq4sam", SAM.rules)
    assert full.deployable and full.big == SAM_BIG
    log2 = full.spec_for("image_encoder.layers.1.blocks.0.attn.av_matmul.input_quantizer")
    assert log2.kind == "log2" and log2.observer == "agq" and log2.taus == (1, 2, 4)
    # the token→image softmax, float in the uniform presets, is log2-quantized here
    t2i = "mask_decoder.transformer.layers.0.cross_attn_token_to_image.av_matmul"
    assert get_recipe("w8a8", SAM.rules).spec_for(f"{t2i}.input_quantizer") is None
    assert full.spec_for(f"{t2i}.input_quantizer").kind == "log2"
    assert full.spec_for(f"{t2i}.other_quantizer").kind == "uniform"
    for name in ("w6a6-ptq4sam", "w4a4-ptq4sam"):
        recipe = get_recipe(name, SAM.rules)
        assert not recipe.deployable and recipe.bits == {int(name[1])}
    assert get_recipe("w4a4-flip", SAM.rules).big == replace(SAM_BIG, center=False)
    assert get_recipe("w4a4-center", SAM.rules).big == replace(SAM_BIG, flip=False)
    assert get_recipe("w6a6-agq", SAM.rules).big is None
    assert get_recipe("w6a6-big", SAM.rules).spec_for(f"{t2i}.input_quantizer") is None
    # observers leave the log2 quantizer alone
    entropy = full.with_activation_observer("entropy")
    assert entropy.spec_for(f"{t2i}.input_quantizer") == full.spec_for(f"{t2i}.input_quantizer")
    # the onnxruntime target lowers it: uniform uint8 where w8a8 is uniform, float where w8a8
    # keeps the attention float (both operands)
    ort = entropy.for_target("onnxruntime", SAM.rules)
    enc = "image_encoder.layers.1.blocks.0.attn.av_matmul.input_quantizer"
    assert ort.spec_for(enc) == QuantizerSpec(symmetric=False, observer="percentile")
    assert ort.spec_for(f"{t2i}.input_quantizer") is None
    assert ort.spec_for(f"{t2i}.other_quantizer") is None
    assert not any(r.spec is not None and r.spec.kind == "log2" for r in ort.rules)
    assert any("log2" in note for note in ort.notes)
    assert get_recipe("w8a8", SAM.rules).for_target("onnxruntime").notes == ()
    assert recipe_from_dict(json.loads(json.dumps(full.to_dict()))) == full


def test_log2_spec_validation():
    with pytest.raises(RecipeError, match="agq"):
        QuantizerSpec(kind="log2", observer="percentile")
    with pytest.raises(RecipeError, match="agq"):
        QuantizerSpec(observer="agq")
    with pytest.raises(RecipeError, match="taus"):
        QuantizerSpec(kind="log2", observer="agq", taus=(3,))
    with pytest.raises(RecipeError, match="unknown recipe"):
        get_recipe("w8a8-ptq4xyz")


def test_ptq4vit_recipes():
    from trtq.recipes import recipe_from_dict

    fc2 = "image_encoder.layers.1.blocks.0.mlp.fc2.input_quantizer"
    softmax = "image_encoder.layers.1.blocks.0.attn.av_matmul.input_quantizer"
    lin2 = "mask_decoder.transformer.layers.0.mlp.lin2.input_quantizer"
    full = get_recipe("w6a6-ptq4vit", SAM.rules)
    assert not full.deployable and full.search is not None
    assert full.spec_for(fc2).kind == "twin_gelu" and full.spec_for(softmax).kind == "twin_softmax"
    assert full.spec_for("image_encoder.layers.1.blocks.0.attn.qkv.weight_quantizer").observer \
        == "hessian"
    twin = get_recipe("w6a6-twin", SAM.rules)
    assert twin.spec_for(fc2).observer == "output_mse"
    assert twin.spec_for("image_encoder.layers.1.blocks.0.attn.qkv.input_quantizer").observer \
        == "percentile"
    deploy = get_recipe("w8a8-ptq4vit-deploy", SAM.rules)
    assert deploy.deployable and get_recipe("w8a8-hessian", SAM.rules).deployable
    for name in (fc2, lin2):
        spec = deploy.spec_for(name)
        assert spec.shifted and not spec.symmetric and spec.observer == "hessian"
    # retargeting leaves the shifted inputs asymmetric (they already run on TensorRT)
    assert deploy.for_target("onnxruntime").for_target("tensorrt").spec_for(fc2).shifted
    assert deploy.spec_for(softmax).kind == "uniform"
    assert recipe_from_dict(full.to_dict()) == full
    with pytest.raises(RecipeError, match="search observer"):
        QuantizerSpec(kind="twin_softmax", observer="percentile")
    with pytest.raises(RecipeError, match="shifted lowering"):
        QuantizerSpec(shifted=True)
    with pytest.raises(RecipeError, match="rounds"):
        SearchOptions(rounds=0)
