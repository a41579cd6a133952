"""Model adapters: registered models name theirs, anything else gets the generic one, and each
adapter's data (recipe rules, export boundaries) is what the core receives."""

from __future__ import annotations

import pytest
from torch import nn

from trtq.calib import quantize, quantizers
from trtq.errors import TrtqError
from trtq.models import (
    GENERIC,
    adapter_for,
    adapter_for_module,
    get_spec,
    load_model,
    model_names,
)
from trtq.models.classifiers import CLASSIFIERS, VIT_CLASSIFIER
from trtq.models.sam_adapter import SAM
from trtq.recipes import RecipeError, get_recipe, variant_names


def test_registered_models_name_their_adapter_and_others_get_the_generic_one():
    for name in ("litemedsam", "sam_vit_h", "mobile_sam", "tiny_sam_vit"):
        assert get_spec(name).adapter == "sam" and adapter_for(name) is SAM
    for name in CLASSIFIERS:
        assert adapter_for(name) is VIT_CLASSIFIER
    assert adapter_for("my_package.models:build") is GENERIC
    assert {adapter_for(name).name for name in model_names()} == {"sam", "vit_classifier"}
    assert adapter_for_module(load_model("tiny_litemedsam")) is SAM
    assert adapter_for_module(load_model("vit_test")) is VIT_CLASSIFIER
    assert adapter_for_module(nn.Linear(2, 2)) is GENERIC


def test_generic_presets_are_generic_rules_only():
    recipe = get_recipe("w8a8")
    assert [r.pattern for r in recipe.rules] == [
        "*.weight_quantizer", "*.input_quantizer", "*.other_quantizer"]
    agq = get_recipe("w8a8-agq")
    assert agq.rules[-1].pattern == "*.av_matmul.input_quantizer" and agq.big is None
    deploy = get_recipe("w8a8-ptq4vit-deploy")
    assert deploy.rules[-1].pattern == "*.mlp.fc2.input_quantizer" and deploy.rules[-1].spec.shifted
    assert get_recipe("w8a8-agq").for_target("onnxruntime").rules[-1].pattern == \
        "*.av_matmul.input_quantizer"  # lowered to uint8, nothing kept float
    with pytest.raises(RecipeError, match="w8a8-agq"):
        get_recipe("w8a8-ptq4sam")  # BIG needs attentions the model's adapter names


def test_classifier_presets_quantize_what_they_did_before_adapters():
    """Before adapters every model got the SAM rules; on a classifier only the patch-embedding
    rule among them matched. The classifier's own rules resolve every quantizer the same."""
    model = load_model("vit_test")
    quantize(model, get_recipe("w8a8"))
    names = [name for name, _ in quantizers(model)]
    big = ("ptq4sam", "big", "flip", "center")  # refused for classifiers (no BIG attentions)
    for preset in variant_names(8) + variant_names(4):
        if preset.partition("-")[2] in big:
            continue
        old = get_recipe(preset, SAM.rules)
        new = get_recipe(preset, VIT_CLASSIFIER.rules)
        for target in ("tensorrt", "onnxruntime"):
            a = old.for_target(target, SAM.rules)
            b = new.for_target(target, VIT_CLASSIFIER.rules)
            assert a.resolve(names) == b.resolve(names), (preset, target)
    assert new.spec_for("patch_embed.proj.input_quantizer") is None


def test_export_boundaries_are_adapter_data():
    assert SAM.part_names == ("encoder", "decoder")
    assert SAM.part_prefixes == {"encoder": "image_encoder.", "decoder": ""}
    assert SAM.part_prefix("unknown") == ""
    parts = SAM.export_parts(load_model("tiny_litemedsam"))
    assert [p.name for p in parts] == ["encoder", "decoder"]
    assert parts[1].dynamic_axes["boxes"] == {0: "num_boxes"}
    with pytest.raises(TrtqError, match="trtq.export_onnx"):
        GENERIC.export_parts(nn.Linear(2, 2))
