"""Quantization recipes: which quantizer gets which format, as ordered wildcard rules.

A recipe is a tuple of `QuantRule`s over fully qualified quantizer names such as
`image_encoder.layers.1.blocks.0.attn.qkv.input_quantizer`; rules are matched with fnmatch (and,
optionally, on the type of the module owning the quantizer) and the **last** match wins. A rule
whose `spec` is None keeps that quantizer off (float). Recipes are data: `save_recipe` /
`load_recipe` write and read them as JSON or YAML (docs/quantization.md).

A preset is generic rules (every Linear/Conv weight per channel, every layer input and matmul
operand per tensor, post-softmax / post-GELU inputs by the naming convention of trtq's
attention and MLP modules) followed by the model's own `ModelRules` (the float layers, BIG's
attentions, extra post-GELU sites, the onnxruntime hot spots), which a model adapter supplies
(`trtq.models.adapters`); `get_recipe(name)` without rules is the generic recipe of any model.

Presets:

* `fp16`: no quantizers (the FP16 engine baseline; the ONNX stays FP32 and TensorRT runs FP16).
* `w8a8`: deployable TensorRT INT8: symmetric, per-channel weights on the output-channel axis,
  per-tensor activations, every Linear/Conv and both attention matmuls quantized; LayerNorm,
  softmax, GELU and residual adds stay float, and so does what the model's rules keep float
  (SAM: the patch-embed input, the prompt encoder and the mask decoder's output heads;
  ALGORITHMS.md §1).
* `w{N}a{N}` (e.g. `w6a6`, `w4a4`, N in 2..8): the same placement at other bit widths, for
  simulation only (TensorRT has no 2–7-bit activations).
* `w{N}a{N}-ptq4sam` (`w8a8-ptq4sam` is deployable): PTQ4SAM's BIG and AGQ on top (§2–§3);
  `-big`, `-flip`, `-center` and `-agq` are the ablation's single components. BIG needs the
  attentions a model's rules name (`ModelRules.big_layers`).
* `w{N}a{N}-ptq4vit` (simulation only): PTQ4ViT (§5–§6): twin-uniform post-softmax and
  post-GELU inputs, and every range chosen by the Hessian-guided search. Its parts: `-hessian`
  (the search on the uniform placement, deployable at 8 bits) and `-twin` (twin quantizers,
  searched by output MSE). `w{N}a{N}-ptq4vit-deploy` is the deployable subset: the Hessian
  search, with post-GELU/ReLU Linear inputs asymmetric and lowered to Sub(x, c) + symmetric
  Q/DQ with W·c folded into the bias.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from trtq.errors import TrtqError

# "hessian" and "output_mse" are the PTQ4ViT candidate search (trtq.calib.search), scored by
# the gradient-weighted or the plain error of the quantized layer's output
SEARCH_OBSERVERS = ("hessian", "output_mse")
OBSERVERS = ("minmax", "avg_minmax", "percentile", "entropy", "mse", "agq", *SEARCH_OBSERVERS)
WEIGHT_OBSERVERS = ("minmax", "mse", *SEARCH_OBSERVERS)
TWIN_KINDS = ("twin_softmax", "twin_gelu")
KINDS = ("uniform", "log2", *TWIN_KINDS)


class RecipeError(TrtqError):
    """A recipe that cannot be used as given."""


@dataclass(frozen=True)
class QuantizerSpec:
    """How one tensor is fake-quantized and how its range is chosen.

    `axis` None is per-tensor; an int is per-channel along that axis (weights only). `narrow`
    uses [-(2^(b-1)-1), 2^(b-1)-1] (TensorRT's weight range, [-127, 127] at 8 bits).

    `kind` "log2" is AGQ's log2 quantizer for post-softmax tensors (`trtq.calib.logquant`): it
    takes the observer "agq", which searches τ among `taus` and the scale that minimise the
    attention output's |error|^`mse_p`.

    `kind` "twin_softmax" / "twin_gelu" are PTQ4ViT's twin-uniform quantizers
    (`trtq.calib.twin`, simulation only); they are calibrated by a search observer. `twin_tie`
    rounds the post-GELU positive scale to the negative one times a power of two.

    `shifted` (asymmetric per-tensor inputs of Linear layers only) runs the asymmetric range as
    Sub(x, c) → symmetric Q/DQ → MatMul with W·c folded into the bias (ALGORITHMS.md §5), which
    TensorRT accepts; it is the same grid as the asymmetric quantizer.
    """

    bits: int = 8
    symmetric: bool = True
    axis: int | None = None
    narrow: bool = False
    observer: str = "minmax"
    percentile: float = 99.99
    mse_p: float = 2.4
    mse_candidates: int = 100
    histogram_bins: int = 2048
    kind: str = "uniform"
    taus: tuple[int, ...] = (1, 2, 4)
    twin_tie: bool = True
    shifted: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "taus", tuple(int(t) for t in self.taus))
        if self.kind not in KINDS:
            raise RecipeError(f"quantizer kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.kind in TWIN_KINDS and (self.observer not in SEARCH_OBSERVERS
                                        or self.axis is not None):
            raise RecipeError(f"a {self.kind} quantizer is per-tensor and calibrated by a "
                              f"search observer ({' or '.join(SEARCH_OBSERVERS)})")
        if self.shifted and (self.symmetric or self.axis is not None or self.kind != "uniform"):
            raise RecipeError("shifted lowering applies to asymmetric per-tensor uniform "
                              "quantizers (symmetric=False, axis=None)")
        if (self.kind == "log2") != (self.observer == "agq"):
            raise RecipeError("the log2 quantizer is calibrated by the observer agq, and agq "
                              "calibrates only log2 quantizers")
        if self.kind == "log2" and (self.axis is not None or not self.taus
                                    or set(self.taus) - {1, 2, 4}):
            raise RecipeError("a log2 quantizer is per-tensor with taus from {1, 2, 4}")
        if not 2 <= self.bits <= 8:
            raise RecipeError(f"bits={self.bits}: trtq quantizes to 2..8 bits")
        if self.observer not in OBSERVERS:
            raise RecipeError(f"observer {self.observer!r} is unknown; use one of "
                              f"{', '.join(OBSERVERS)}")
        if self.axis is not None and self.observer not in WEIGHT_OBSERVERS:
            raise RecipeError(f"per-channel (axis={self.axis}) quantizers take the observer "
                              f"{', '.join(WEIGHT_OBSERVERS)}, not {self.observer!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise RecipeError(f"percentile={self.percentile}: give a value in (50, 100]")
        if self.mse_p <= 0 or self.mse_candidates < 2:
            raise RecipeError("mse search needs mse_p > 0 and at least 2 candidates")
        if self.histogram_bins < 128:
            raise RecipeError("histogram_bins must be at least 128")

    @property
    def searched(self) -> bool:
        """Calibrated by the PTQ4ViT candidate search rather than a streaming observer."""
        return self.observer in SEARCH_OBSERVERS

    @property
    def qmin(self) -> int:
        if not self.symmetric:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2 ** self.bits - 1 if not self.symmetric else 2 ** (self.bits - 1) - 1

    def describe(self) -> str:
        if self.kind == "log2":
            taus = ",".join(map(str, self.taus))
            return f"log2 {self.bits}-bit per-tensor (zero code) tau∈{{{taus}}} agq"
        if self.kind in TWIN_KINDS:
            return f"{self.kind} {self.bits}-bit per-tensor (2×{self.bits - 1}-bit) {self.observer}"
        kind = "sym" if self.symmetric else ("asym→shift" if self.shifted else "asym")
        gran = "per-tensor" if self.axis is None else f"per-channel(axis={self.axis})"
        obs = self.observer + (f"({self.percentile})" if self.observer == "percentile" else "")
        return f"int{self.bits} {kind} {gran} [{self.qmin},{self.qmax}] {obs}"


@dataclass(frozen=True)
class QuantRule:
    """`pattern` (fnmatch over quantizer names) → `spec`, or None to keep the tensor float.

    `module_type` (optional) narrows the rule to quantizers whose owning module is of that
    class (by class name, through its base classes: `Linear` matches `nn.Linear` and its
    subclasses, `Conv2d`, `ConvBN`, `MatMul`; a quantized twin counts as the float class it
    replaced). It is resolved where the module is known, when quantizers are inserted
    (`trtq.calib.quantize`); `spec_for(name)` without module types skips such rules."""

    pattern: str
    spec: QuantizerSpec | None
    module_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise RecipeError(f"rule pattern {self.pattern!r}: give an fnmatch pattern over "
                              "quantizer names, e.g. '*.input_quantizer'")
        if self.module_type is not None and not str(self.module_type).isidentifier():
            raise RecipeError(f"module_type {self.module_type!r}: give a module class name, "
                              "e.g. Linear, Conv2d or MatMul")

    def matches(self, name: str, module_types=()) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern) and (
            self.module_type is None or self.module_type in module_types)


@dataclass(frozen=True)
class BigOptions:
    """PTQ4SAM's bimodal integration (ALGORITHMS.md §2), folded before calibration.

    On the attentions whose module name matches `layers` (in the presets the model's
    `ModelRules.big_layers`; the default: every attention BIG probes): detect a bimodal K on
    the first calibration image (Gaussian KDE, Scott bandwidth, `grid` points, peaks ≥
    `min_height` of the summed density and ≥ `min_distance` points apart; bimodal iff exactly
    two peaks); if bimodal and `flip`, fold the per-channel sign of K into q_proj/k_proj; if
    `center`, fold −μ (each K channel's mid-range, after the flip) into k_proj's bias (trtq's
    extension for symmetric INT8; exact because softmax over keys ignores a per-query
    constant)."""

    flip: bool = True
    center: bool = True
    layers: str = "*"
    grid: int = 128
    min_height: float = 0.01
    min_distance: int = 32

    def __post_init__(self) -> None:
        if self.grid < 8 or not 0 <= self.min_height < 1 or self.min_distance < 1:
            raise RecipeError("BIG detection needs grid >= 8, 0 <= min_height < 1, "
                              "min_distance >= 1")


@dataclass(frozen=True)
class SearchOptions:
    """PTQ4ViT's alternating candidate search (ALGORITHMS.md §6), for quantizers whose observer
    is "hessian" or "output_mse".

    Candidates Δ_i = Δ0·(alpha + i·(beta − alpha)/candidates), Δ0 = max|x| / (2^(b−1) − 0.5);
    the quantizers of one layer (weight and input, or the two matmul operands) are searched in
    turn for `rounds` rounds. The layer's inputs, outputs and loss gradients are recorded on
    `rows` evenly spaced output rows per calibration image (CPU time and memory). The gradient
    comes from `loss`: "auto" is the mask loss (BCE + Dice against the FP model's own mask)
    for SAM and cross-entropy against the FP top-1 (or the labels) for classifiers.
    """

    candidates: int = 100
    alpha: float = 0.01
    beta: float = 1.2
    rounds: int = 3
    rows: int = 256
    loss: str = "auto"

    def __post_init__(self) -> None:
        if self.candidates < 2 or not 0 < self.alpha < self.beta or self.rounds < 1 \
                or self.rows < 1:
            raise RecipeError("search needs candidates >= 2, 0 < alpha < beta, rounds >= 1 "
                              "and rows >= 1")
        if self.loss not in ("auto", "mask", "cross_entropy"):
            raise RecipeError(f"search loss {self.loss!r}: use auto, mask or cross_entropy")


@dataclass(frozen=True)
class ModelRules:
    """What the presets need to know about one model family, as quantizer-name patterns: a
    model adapter's data (`trtq.models.adapters`); the default is a model with no specifics.

    * `float_patterns`: kept float by every preset (layers that see raw pixels, prompt
      encodings, output heads, measured hot spots), after the generic rules.
    * `big_layers`: the attentions (module names) PTQ4SAM's BIG folds; None: BIG presets are
      refused for the model.
    * `post_gelu_inputs` / `shifted_inputs`: input quantizers that read a GELU (PTQ4ViT's twin
      sites) / a GELU or ReLU (the shifted Linear inputs), besides the generic `*.mlp.fc2`.
    * `float_attn_values`: the V operands (`other_quantizer`) of attn·v products that
      `float_patterns` keeps float; the presets with a softmax-aware quantizer (AGQ's log2,
      PTQ4ViT's twin) quantize them uniformly again.
    * `onnxruntime_float` (with `onnxruntime_float_reason` for the recipe's note): where a
      log2 quantizer lowered for the onnxruntime target stays float instead of uniform uint8.
    """

    float_patterns: tuple[str, ...] = ()
    big_layers: str | None = None
    post_gelu_inputs: tuple[str, ...] = ()
    shifted_inputs: tuple[str, ...] = ()
    float_attn_values: tuple[str, ...] = ()
    onnxruntime_float: tuple[str, ...] = ()
    onnxruntime_float_reason: str = ""

    def __post_init__(self) -> None:
        for name in ("float_patterns", "post_gelu_inputs", "shifted_inputs",
                     "float_attn_values", "onnxruntime_float"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise RecipeError(f"ModelRules.{name} is a tuple of patterns, not one string")
            object.__setattr__(self, name, tuple(value))


GENERIC_RULES = ModelRules()


@dataclass(frozen=True)
class QuantRecipe:
    name: str
    rules: tuple[QuantRule, ...] = ()
    deployable: bool = False
    target: str = "tensorrt"
    description: str = ""
    notes: tuple[str, ...] = field(default=())
    big: BigOptions | None = None
    search: SearchOptions | None = None

    def __post_init__(self) -> None:
        if self.target not in ("tensorrt", "onnxruntime"):
            raise RecipeError(f"target {self.target!r}: use tensorrt or onnxruntime")

    def spec_for(self, name: str, module_types=()) -> QuantizerSpec | None:
        """The spec of quantizer `name` (None: float); `module_types`: the class names of the
        module that owns it, which rules with a `module_type` need to match."""
        found = None
        for rule in self.rules:
            if rule.matches(name, module_types):
                found = rule.spec
        return found

    def resolve(self, names) -> dict[str, QuantizerSpec | None]:
        return {name: self.spec_for(name) for name in names}

    def with_activation_observer(self, observer: str, percentile: float | None = None):
        """The same recipe with every per-tensor activation quantizer on `observer`."""
        rules = []
        for rule in self.rules:
            spec = rule.spec
            if spec is not None and spec.axis is None and spec.kind == "uniform" \
                    and not spec.searched:
                extra = {"percentile": percentile} if percentile is not None else {}
                spec = replace(spec, observer=observer, **extra)
            rules.append(replace(rule, spec=spec))
        return replace(self, rules=tuple(rules))

    def for_target(self, target: str, model_rules: ModelRules = GENERIC_RULES):
        """The recipe lowered for `target`. onnxruntime takes asymmetric (uint8) activations,
        and AGQ's log2 quantizers become what it runs fast (`lower_log2_for_onnxruntime`),
        or float where `model_rules.onnxruntime_float` says. Lowering to onnxruntime is
        one-way: a lowered recipe cannot get its log2 rules back."""
        if target == self.target:
            return self
        rules, lowered = [], False
        for rule in self.rules:
            spec = rule.spec
            if spec is not None and spec.kind == "log2" and target == "onnxruntime":
                spec, lowered = lower_log2_for_onnxruntime(spec), True
            elif spec is not None and spec.axis is None and spec.kind == "uniform" \
                    and not spec.shifted:
                spec = replace(spec, symmetric=target == "tensorrt")
            rules.append(replace(rule, spec=spec))
        notes = self.notes
        if lowered:
            rules += [QuantRule(p, None) for p in model_rules.onnxruntime_float]
            notes = (*notes, onnxruntime_log2_note(model_rules))
        return replace(self, rules=tuple(rules), target=target, notes=notes)

    @property
    def bits(self) -> set[int]:
        return {r.spec.bits for r in self.rules if r.spec is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML); a rule without a module type has no `module_type` key, so
        recipes written before the key existed keep their hash."""
        data = asdict(self)
        for rule in data["rules"]:
            if rule["module_type"] is None:
                del rule["module_type"]
        return data

    def sha256(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def replace_rules(recipe: QuantRecipe, rules: tuple[QuantRule, ...]) -> QuantRecipe:
    return replace(recipe, rules=tuple(rules))


def recipe_from_dict(data: dict[str, Any],
                     fix: str = "re-run `trtq calibrate`") -> QuantRecipe:
    """The recipe `to_dict` wrote (a quant state's, a recipe file's); `fix` ends the message
    of a RecipeError for a record that is not one."""
    try:
        rules = tuple(_rule_from_dict(r) for r in data["rules"])
        return QuantRecipe(name=data["name"], rules=rules,
                           deployable=bool(data.get("deployable", False)),
                           target=data.get("target", "tensorrt"),
                           description=data.get("description", ""),
                           notes=tuple(data.get("notes", ())),
                           big=BigOptions(**data["big"]) if data.get("big") else None,
                           search=(SearchOptions(**data["search"]) if data.get("search")
                                   else None))
    except (KeyError, TypeError, AttributeError) as exc:
        raise RecipeError(f"not a trtq recipe record ({type(exc).__name__}: {exc}); "
                          f"{fix}") from exc


def _rule_from_dict(rule: dict) -> QuantRule:
    unknown = set(rule) - {"pattern", "spec", "module_type"}
    if unknown:
        raise TypeError(f"rule {rule.get('pattern')!r} has unknown keys {sorted(unknown)}")
    spec = rule["spec"]  # required: `spec: null` keeps the quantizer float
    return QuantRule(rule["pattern"], None if spec is None else QuantizerSpec(**spec),
                     rule.get("module_type"))


def onnxruntime_log2_note(model_rules: ModelRules) -> str:
    reason = model_rules.onnxruntime_float_reason
    return ("onnxruntime target: AGQ's log2 post-softmax quantizers are lowered to uniform uint8"
            + (f" ({reason})" if reason else "")
            + ", as w8a8 places them; onnxruntime has no log2 kernel")


# onnxruntime has no log2 kernel: a log2 quantizer exported as standard ops is a chain of
# Log/Round/Pow/Gather over the whole attention matrix (measured: the LiteMedSAM encoder at
# 0.57x FP32 speed). On the onnxruntime target each post-softmax log2 quantizer takes the uniform
# preset's treatment instead: uniform uint8 where w8a8 quantizes uniformly, float where the
# model's rules say uniform INT8 erases the signal (`ModelRules.onnxruntime_float`).
def lower_log2_for_onnxruntime(spec: QuantizerSpec) -> QuantizerSpec:
    """The uniform uint8 activation quantizer that stands in for a log2 one on onnxruntime."""
    return QuantizerSpec(bits=spec.bits, symmetric=False, observer="percentile")


# The generic rules, by the quantizer naming of trtq's quantized modules (trtq.calib.modules):
# every weight per output channel, every layer input and matmul operand per tensor.
WEIGHTS, INPUTS, OTHERS = "*.weight_quantizer", "*.input_quantizer", "*.other_quantizer"


def uniform_recipe(bits: int, observer: str = "percentile", name: str | None = None, *,
                   model_rules: ModelRules = GENERIC_RULES) -> QuantRecipe:
    """Weights int`bits` symmetric per-channel (min/max), activations int`bits` per-tensor;
    then the model's float patterns."""
    weight = QuantizerSpec(bits=bits, axis=0, narrow=True, observer="minmax")
    act = QuantizerSpec(bits=bits, observer=observer)
    rules = [QuantRule(WEIGHTS, weight), QuantRule(INPUTS, act), QuantRule(OTHERS, act)]
    rules += [QuantRule(p, None) for p in model_rules.float_patterns]
    deployable = bits == 8
    return QuantRecipe(
        name=name or f"w{bits}a{bits}", rules=tuple(rules), deployable=deployable,
        description=(f"uniform symmetric INT{bits}: per-channel weights, per-tensor activations "
                     f"({observer}); Linear/Conv and both attention matmuls"),
        notes=() if deployable else ("simulation only: TensorRT has no "
                                     f"{bits}-bit activations",))


FP16 = QuantRecipe("fp16", (), deployable=True,
                   description="no quantizers: the FP16 TensorRT baseline (ONNX stays FP32)")

_PRESET_RE = re.compile(
    r"w(\d)a(\d)(?:-(ptq4sam|big|flip|center|agq|ptq4vit-deploy|ptq4vit|hessian|twin))?")

# PTQ4SAM variants: (BIG's flip/center switches, or None without BIG; AGQ on)
_PTQ4SAM_VARIANTS = {
    "ptq4sam": ({}, True),
    "big": ({}, False),
    "flip": ({"center": False}, False),
    "center": ({"flip": False}, False),
    "agq": (None, True),
}


def big_options(model_rules: ModelRules, name: str, **switches) -> BigOptions:
    """BIG on the model's attentions (`model_rules.big_layers`), or a RecipeError saying what
    to use instead when the model names none."""
    if model_rules.big_layers is None:
        bits = name.split("-")[0]
        raise RecipeError(f"recipe {name!r} folds BIG into the attentions a model's adapter "
                          "names (ModelRules.big_layers: SAM's decoder token→image attentions) "
                          f"and this model names none; use {bits}-agq (AGQ alone) or {bits}")
    return BigOptions(layers=model_rules.big_layers, **switches)


# the softmax operand of every attn·v product (trtq's attention modules name it av_matmul)
POST_SOFTMAX = ("*.av_matmul.input_quantizer",)


def ptq4sam_recipe(bits: int, big: BigOptions | None = None, agq: bool = True,
                   observer: str = "percentile", name: str | None = None, *,
                   model_rules: ModelRules = GENERIC_RULES) -> QuantRecipe:
    """The uniform w{bits}a{bits} recipe plus PTQ4SAM: `big` folded into the attentions it
    names, and AGQ's log2 quantizer on every post-softmax tensor (the first operand of each
    attn·v matmul; those the model's float patterns keep float are quantized here, their V
    operand, `model_rules.float_attn_values`, uniformly)."""
    base = uniform_recipe(bits, observer, model_rules=model_rules)
    rules = list(base.rules)
    parts = []
    if big is not None:
        parts.append("BIG (" + "+".join(s for s, on in (("sign flip", big.flip),
                                                          ("centring", big.center)) if on) + ")")
    if agq:
        log2 = QuantizerSpec(bits=bits, kind="log2", observer="agq")
        act = QuantizerSpec(bits=bits, observer=observer)
        rules += [QuantRule(p, log2) for p in POST_SOFTMAX]
        rules += [QuantRule(p, act) for p in model_rules.float_attn_values]
        parts.append(f"AGQ (log2 {bits}-bit post-softmax)")
    notes = list(base.notes)
    if agq and bits == 8:
        notes.append("TensorRT runs the log2 quantizer as standard ops (or trtq's LogQuant "
                     "plugin) and the attn·v matmul it feeds in float")
    return QuantRecipe(
        name=name or f"w{bits}a{bits}-ptq4sam", rules=tuple(rules), deployable=bits == 8,
        description=base.description + "; " + " + ".join(parts), notes=tuple(notes), big=big)


# PTQ4ViT sites (ALGORITHMS.md §5): inputs that follow a softmax or a GELU; generic ones by the
# naming of timm-style MLPs (fc1 → GELU → fc2), then the model's (`ModelRules`).
POST_GELU = ("*.mlp.fc2.input_quantizer",)
# Linear inputs after a GELU or ReLU: asymmetric and lowered by shifting in the deployable
# subset (a symmetric range wastes half its codes on a non-negative input)
SHIFTED_INPUTS = ("*.mlp.fc2.input_quantizer",)

# PTQ4ViT variants: (Hessian search, twin quantizers, shifted asymmetric Linear inputs)
_PTQ4VIT_VARIANTS = {
    "ptq4vit": (True, True, False),
    "ptq4vit-deploy": (True, False, True),
    "hessian": (True, False, False),
    "twin": (False, True, False),
}


def ptq4vit_recipe(bits: int, hessian: bool = True, twin: bool = True, shifted: bool = False,
                   observer: str = "percentile", search: SearchOptions = SearchOptions(),
                   name: str | None = None, *,
                   model_rules: ModelRules = GENERIC_RULES) -> QuantRecipe:
    """The uniform w{bits}a{bits} placement plus PTQ4ViT (ALGORITHMS.md §5–§6).

    `hessian`: every weight and activation range is chosen by the Hessian-guided search.
    `twin`: post-softmax and post-GELU inputs get twin-uniform quantizers (the attn·v products
    the model keeps float too; their V uniformly), searched by the Hessian metric or, without
    `hessian`, by output MSE. Simulation only.
    `shifted`: post-GELU/ReLU Linear inputs asymmetric, lowered for TensorRT by shifting.
    """
    base = uniform_recipe(bits, observer, model_rules=model_rules)
    act_observer = "hessian" if hessian else observer
    rules = []
    for rule in base.rules:
        spec = rule.spec
        if spec is not None and hessian:
            spec = replace(spec, observer="hessian")
        rules.append(replace(rule, spec=spec))
    parts = ["Hessian-guided search"] if hessian else []
    if twin:
        metric = "hessian" if hessian else "output_mse"
        softmax = QuantizerSpec(bits=bits, kind="twin_softmax", observer=metric)
        gelu = QuantizerSpec(bits=bits, kind="twin_gelu", observer=metric)
        act = QuantizerSpec(bits=bits, observer=act_observer)
        rules += [QuantRule(p, softmax) for p in POST_SOFTMAX]
        rules += [QuantRule(p, gelu) for p in (*POST_GELU, *model_rules.post_gelu_inputs)]
        rules += [QuantRule(p, act) for p in model_rules.float_attn_values]
        parts.append(f"twin-uniform post-softmax/post-GELU ({metric})")
    if shifted:
        asym = QuantizerSpec(bits=bits, symmetric=False, shifted=True, observer=act_observer)
        rules += [QuantRule(p, asym) for p in (*SHIFTED_INPUTS, *model_rules.shifted_inputs)]
        parts.append("asymmetric post-GELU/ReLU Linear inputs, lowered by shifting")
    deployable = bits == 8 and not twin
    notes = list(base.notes)
    if twin:
        notes.append("simulation only: TensorRT has no twin-range INT8 (no plugin implements "
                     "it); use the -ptq4vit-deploy subset to deploy")
    return QuantRecipe(
        name=name or f"w{bits}a{bits}-ptq4vit", rules=tuple(rules), deployable=deployable,
        description=base.description + "; PTQ4ViT: " + " + ".join(parts),
        notes=tuple(dict.fromkeys(notes)), search=search if (hessian or twin) else None)


def preset_names() -> list[str]:
    return ["fp16", "w8a8", "w6a6", "w4a4", "w{N}a{N}", "w8a8-ptq4sam", "w6a6-ptq4sam",
            "w4a4-ptq4sam", "w{N}a{N}-{ptq4sam,big,flip,center,agq}", "w8a8-ptq4vit",
            "w6a6-ptq4vit", "w8a8-ptq4vit-deploy", "w6a6-ptq4vit-deploy",
            "w{N}a{N}-{ptq4vit,ptq4vit-deploy,hessian,twin}"]


def variant_names(bits: int = 8) -> list[str]:
    """Every preset at `bits` bits: the uniform baseline and each PTQ4SAM / PTQ4ViT variant."""
    base = f"w{bits}a{bits}"
    return [base] + [f"{base}-{v}" for v in (*_PTQ4SAM_VARIANTS, *_PTQ4VIT_VARIANTS)]


def deployable_presets(bits: int = 8, model_rules: ModelRules = GENERIC_RULES) -> list[str]:
    """The presets at `bits` bits that export as TensorRT Q/DQ ONNX (no simulation-only part)
    for a model with `model_rules` (BIG variants only where it names BIG's attentions)."""
    def takes(name: str) -> bool:
        variant = name.partition("-")[2]
        return model_rules.big_layers is not None or \
            _PTQ4SAM_VARIANTS.get(variant, (None,))[0] is None

    return [name for name in variant_names(bits)
            if takes(name) and get_recipe(name, model_rules).deployable]


def get_recipe(name: str, model_rules: ModelRules = GENERIC_RULES) -> QuantRecipe:
    """A preset by name for a model with `model_rules` (a model adapter's; the default has no
    model specifics): fp16, w{N}a{N} (N in 2..8), or w{N}a{N}-VARIANT with VARIANT one of
    ptq4sam (BIG + AGQ), big (sign flip + centring), flip, center, agq, ptq4vit (twin +
    Hessian search), ptq4vit-deploy (Hessian search + shifted asymmetric inputs), hessian,
    twin."""
    if name == "fp16":
        return FP16
    match = _PRESET_RE.fullmatch(name)
    if match:
        w, a = int(match.group(1)), int(match.group(2))
        if w != a:
            raise RecipeError(f"recipe {name!r}: trtq presets use the same width for weights and "
                              "activations (w4a4, w6a6, w8a8)")
        if not 2 <= w <= 8:
            raise RecipeError(f"recipe {name!r}: bit widths run from 2 to 8")
        variant = match.group(3)
        if variant in _PTQ4VIT_VARIANTS:
            hessian, twin, shifted = _PTQ4VIT_VARIANTS[variant]
            return ptq4vit_recipe(w, hessian, twin, shifted, name=name, model_rules=model_rules)
        if variant:
            switches, agq = _PTQ4SAM_VARIANTS[variant]
            big = None if switches is None else big_options(model_rules, name, **switches)
            return ptq4sam_recipe(w, big, agq, name=name, model_rules=model_rules)
        return uniform_recipe(w, model_rules=model_rules)
    raise RecipeError(f"unknown recipe {name!r}; presets: {', '.join(preset_names())}")


RECIPE_FILE_SUFFIXES = (".json", ".yaml", ".yml")
_FILE_FIX = "see docs/quantization.md#recipe-files for the format"


def load_recipe(name_or_path: str, model_rules: ModelRules = GENERIC_RULES) -> QuantRecipe:
    """A preset by name (`get_recipe`, resolved with `model_rules`), or a recipe file (.json,
    .yaml or .yml: `save_recipe`'s format; `trtq autoquant` writes one), which holds the
    resolved rules already."""
    import os

    if not name_or_path.lower().endswith(RECIPE_FILE_SUFFIXES):
        return get_recipe(name_or_path, model_rules)
    if not os.path.isfile(name_or_path):
        raise RecipeError(f"recipe file {name_or_path} does not exist; give a preset name "
                          f"({', '.join(preset_names()[:6])}, ...) or a recipe .json/.yaml "
                          "file")
    yaml = _yaml() if name_or_path.lower().endswith((".yaml", ".yml")) else None
    errors = (OSError, ValueError, *((yaml.YAMLError,) if yaml else ()))  # JSON: ValueError
    try:
        with open(name_or_path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) if yaml else json.load(handle)
    except errors as exc:
        raise RecipeError(f"recipe file {name_or_path} is not readable "
                          f"{'YAML' if yaml else 'JSON'} ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe file {name_or_path} holds {type(data).__name__}, not a "
                          "recipe object")
    return recipe_from_dict(data, f"{name_or_path}: {_FILE_FIX}")


def save_recipe(recipe: QuantRecipe, path: str) -> None:
    """Write `recipe` as JSON or YAML (by the suffix); `load_recipe(path)` gives it back with
    the same `sha256()`."""
    from pathlib import Path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in RECIPE_FILE_SUFFIXES:
        raise RecipeError(f"recipe file {path}: name it .json, .yaml or .yml")
    data = json.loads(json.dumps(recipe.to_dict()))  # tuples → lists: plain data for YAML
    if suffix == ".json":
        text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    else:
        text = _yaml().safe_dump(data, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def _yaml():
    """PyYAML, imported when a YAML recipe is read or written (an optional dependency)."""
    try:
        import yaml
    except ImportError:
        raise RecipeError("YAML recipe files need PyYAML: pip install pyyaml (or give the "
                          "recipe as .json)") from None
    return yaml
