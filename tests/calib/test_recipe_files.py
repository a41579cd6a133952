"""Recipe files (JSON and YAML) as a serialization of the recipe dataclasses, and rules narrowed
to a module type, resolved when quantizers are inserted."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from trtq.calib import quantize, quantizers
from trtq.models.layers import ConvBN, MatMul
from trtq.models.sam_adapter import SAM
from trtq.recipes import (
    QuantizerSpec,
    QuantRecipe,
    QuantRule,
    RecipeError,
    get_recipe,
    load_recipe,
    recipe_from_dict,
    save_recipe,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "quantization.md"


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
@pytest.mark.parametrize("preset", ["w8a8", "w8a8-ptq4sam", "w6a6-ptq4vit", "w8a8-ptq4vit-deploy"])
def test_preset_file_round_trip_keeps_the_hash(tmp_path, suffix, preset):
    for recipe in (get_recipe(preset, SAM.rules),
                   get_recipe(preset, SAM.rules).for_target("onnxruntime", SAM.rules)):
        path = tmp_path / f"{recipe.name}-{recipe.target}{suffix}"
        save_recipe(recipe, path)
        again = load_recipe(str(path))
        assert again == recipe and again.sha256() == recipe.sha256()


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.block = ConvBN(8, 8)
        self.fc = nn.Linear(8, 8)
        self.mm = MatMul()
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        t = self.block(self.stem(x)).flatten(2).transpose(1, 2)
        t = self.fc(t)
        return self.head(self.mm(t, t.transpose(1, 2)) @ t)


def _specs(model) -> dict[str, QuantizerSpec | None]:
    return {name: q.spec for name, q in quantizers(model)}


def test_the_documented_yaml_example_loads_and_resolves_module_types(tmp_path):
    text = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)[0]
    (tmp_path / "r.yaml").write_text(text)
    recipe = load_recipe(str(tmp_path / "r.yaml"))
    assert recipe.rules[3] == QuantRule("*", None, "Conv2d")
    model = _Net()
    quantize(model, recipe)
    specs = _specs(model)
    # convolutions float (the ConvBN's twin counts as a ConvBN, not a Conv2d), head float
    assert specs["stem.input_quantizer"] is None and specs["stem.weight_quantizer"] is None
    assert specs["block.weight_quantizer"].axis == 0
    assert specs["fc.weight_quantizer"].axis == 0 and specs["fc.input_quantizer"].axis is None
    assert specs["mm.other_quantizer"].bits == 8
    assert specs["head.input_quantizer"] is None
    # without the owning module the type-narrowed rule cannot match
    assert recipe.spec_for("stem.input_quantizer") is not None
    assert recipe.spec_for("stem.input_quantizer", {"Conv2d"}) is None


def test_module_type_rules_serialize_and_leave_plain_rules_unchanged(tmp_path):
    spec = QuantizerSpec(bits=8, axis=0, narrow=True)
    recipe = QuantRecipe("r", (QuantRule("*.weight_quantizer", spec),
                               QuantRule("*", None, "ConvBN"), QuantRule("*", None, "MatMul")))
    data = recipe.to_dict()
    assert "module_type" not in data["rules"][0] and data["rules"][1]["module_type"] == "ConvBN"
    assert recipe_from_dict(data) == recipe
    save_recipe(recipe, tmp_path / "r.yaml")
    assert load_recipe(str(tmp_path / "r.yaml")).sha256() == recipe.sha256()
    model = _Net()
    quantize(model, recipe)
    specs = _specs(model)
    assert specs["block.weight_quantizer"] is None and specs["mm.input_quantizer"] is None
    assert specs["stem.weight_quantizer"] == spec and specs["fc.weight_quantizer"] == spec
    with pytest.raises(RecipeError, match="class name"):
        QuantRule("*", None, "nn.Linear*")


def test_the_api_resolves_module_types_of_function_call_products():
    import trtq

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return torch.softmax(q @ k.transpose(1, 2), -1) @ v

    act = QuantizerSpec(bits=8)
    recipe = QuantRecipe("r", (QuantRule("*", act), QuantRule("*.weight_quantizer", None),
                               QuantRule("*", None, "MatMul")))
    model = trtq.quantize(Attn(), recipe, lambda m: m(torch.randn(2, 5, 8)))
    specs = _specs(model)
    assert specs["qkv.input_quantizer"] == act
    assert {n for n, s in specs.items() if n.startswith("func_matmul")} == {
        "func_matmul_0.input_quantizer", "func_matmul_0.other_quantizer",
        "func_matmul_1.input_quantizer", "func_matmul_1.other_quantizer"}
    assert all(s is None for n, s in specs.items() if n.startswith("func_matmul"))


def test_bad_recipe_files_say_what_to_fix(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: r\nrules: [{pattern: '*', spec: null, colour: red}]\n")
    with pytest.raises(RecipeError, match=r"unknown keys \['colour'\].*docs/quantization.md"):
        load_recipe(str(bad))
    bad.write_text("name: r\nrules: [{pattern: '*'}]\n")
    with pytest.raises(RecipeError, match="spec"):
        load_recipe(str(bad))
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not readable YAML"):
        load_recipe(str(bad))
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.yml"))
    with pytest.raises(RecipeError, match=r"\.json, \.yaml or \.yml"):
        save_recipe(get_recipe("w8a8"), tmp_path / "r.toml")
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed
    with pytest.raises(RecipeError, match="pip install pyyaml"):
        load_recipe(str(bad))
    with pytest.raises(RecipeError, match="pip install pyyaml"):
        save_recipe(get_recipe("w8a8"), tmp_path / "r.yaml")
    save_recipe(get_recipe("w8a8"), tmp_path / "r.json")  # JSON needs no PyYAML
    assert load_recipe(str(tmp_path / "r.json")) == get_recipe("w8a8")
