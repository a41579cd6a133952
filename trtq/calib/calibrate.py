"""`quantize`, `calibrate` and the quant state: the calibration entry points.

    model = load_model("litemedsam")
    recipe = get_recipe("w8a8", adapter_for("litemedsam").rules)   # the model's presets
    calibrate(model, recipe, samples)                   # samples: CalibSample iterable
    save_quant_state(model, recipe, "out/quant_state.pt")

`calibrate` installs the quantized modules, applies the recipe's rules to every quantizer, runs
the data through the model with observers recording, fixes each quantizer's scale and turns the
quantizers on. Data loading stays with the caller: `data` is an iterable of `CalibSample`s for
SAM-family models, or any callable `forward_loop(model)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch
from torch import nn

from trtq.calib.modules import (
    install_quant_modules,
    module_type_names,
    quantizers,
    weight_owners,
)
from trtq.calib.tasks import as_task
from trtq.data.calibration import CalibSample
from trtq.errors import CalibrationError
from trtq.recipes import GENERIC_RULES, ModelRules, QuantRecipe, recipe_from_dict

__all__ = ["CalibSample", "calibrate", "load_quant_state", "quantize", "read_quant_state",
           "save_quant_state", "set_enabled"]

log = logging.getLogger("trtq.calib")

STATE_VERSION = 1


def quantize(model: nn.Module, recipe: QuantRecipe) -> dict[str, str]:
    """Install quantized modules and configure every quantizer from `recipe` (all left off;
    rules with a `module_type` matched against the quantizer's owning module).
    Returns {quantizer name: description} for the quantizers the recipe turns on."""
    install_quant_modules(model)
    table = {}
    convs = set(_float_conv_names(model)) if recipe.target == "onnxruntime" else set()
    modules = dict(model.named_modules())
    for name, q in quantizers(model):
        owner = name.rpartition(".")[0]
        spec = None if owner in convs else recipe.spec_for(
            name, module_type_names(modules[owner]))
        q.configure(spec)
        q.name = name
        if spec is not None:
            table[name] = spec.describe()
    return table


def set_enabled(model: nn.Module, enabled: bool) -> None:
    """Turn every configured quantizer on or off (off reproduces the float model exactly)."""
    for _, q in quantizers(model):
        q.enabled = enabled and q.spec is not None and q.scale is not None


def _big_probe(task) -> Callable:
    """BIG's probe: the task's one-sample run (or the whole forward loop)."""
    if callable(task):
        return task
    probe = task.probe()
    if probe is None:
        raise CalibrationError("BIG needs a calibration sample it can probe the decoder's "
                               "attentions with (SAM: an image with boxes)")
    return probe


def search_ranges(model: nn.Module, recipe: QuantRecipe, task, progress=None) -> dict:
    """PTQ4ViT's search for every quantizer whose observer is "hessian" or "output_mse": record
    each layer's inputs and loss gradient with the model in full precision, then search layer
    by layer (`trtq.calib.search`). Returns the report (also `model.trtq_search_report`)."""
    from dataclasses import asdict

    from trtq.calib.capture import Recorder
    from trtq.calib.search import search_layer
    from trtq.recipes import SearchOptions

    options = recipe.search or SearchOptions()
    owners = sorted({name.rsplit(".", 1)[0] for name, q in quantizers(model)
                     if q.spec is not None and q.spec.searched})
    if not owners:
        return {}
    if callable(task):
        raise CalibrationError("the Hessian/output-MSE search needs a calibration task with a "
                               "loss (CalibSamples for SAM, trtq.calib.tasks.ClassifierTask), "
                               "not a bare forward loop")
    recorder = Recorder(model, owners, options.rows)
    seen = recorder.run(task, progress)
    if seen == 0:
        raise CalibrationError("the search needs calibration samples that produce a loss "
                               "(SAM: images with annotation boxes)")
    modules = dict(model.named_modules())
    layers = []
    with torch.no_grad():
        for name in owners:
            try:
                layers.append(search_layer(name, modules[name], recorder.records.pop(name),
                                           options))
            except ValueError as exc:
                raise CalibrationError(f"{name}: {exc}; keep it float in the recipe or give "
                                       "calibration data that runs it") from exc
            log.debug("searched %s", name)
    report = {"options": asdict(options), "samples": seen, "layers": layers}
    model.trtq_search_report = report
    return report


def calibrate(model: nn.Module, recipe: QuantRecipe, data, *, progress: Callable | None = None):
    """Quantize `model` in place with `recipe`, calibrated on `data`; returns the model.

    `data`: CalibSamples (SAM), a task (`trtq.calib.tasks`), or a callable forward loop
    (streaming observers only). Calibration runs where the model and its inputs are (put both
    on the device first); the scales are buffers on the model's device."""
    model.eval()
    task = data if callable(data) else as_task(data, model)
    if recipe.big is not None:
        from trtq.calib.big import apply_big

        with torch.no_grad():
            report = apply_big(model, recipe.big, _big_probe(task), bits=max(recipe.bits))
        model.trtq_big_report = report
        log.info("BIG folded into %d decoder attentions (outputs changed by %.2e)",
                 sum(r["folded"] for r in report["layers"]), report["decoder_max_abs_change"] or 0)
    quantize(model, recipe)
    forward_loop = task if callable(task) else task.forward_loop(progress)
    active = [(n, q) for n, q in quantizers(model) if q.spec is not None]
    weight_names = {f"{n}.weight_quantizer" for n, _ in weight_owners(model)}
    streamed = [(n, q) for n, q in active if n not in weight_names and not q.spec.searched]
    for _name, q in streamed:
        q.start_calibration()
    with torch.no_grad():
        seen = forward_loop(model)
    if seen == 0:
        raise CalibrationError("no calibration images were given")
    # quantizers created during the pass (function-call attention, `trtq.calib.functional`)
    known = {id(q) for _, q in streamed}
    late = [(n, q) for n, q in quantizers(model) if q.calibrating and id(q) not in known]
    unseen = [name for name, q in streamed + late if not q.finish_calibration()]
    with torch.no_grad():
        for _name, owner in weight_owners(model):
            spec = owner.weight_quantizer.spec
            if spec is not None and not spec.searched:
                owner.weight_quantizer.calibrate_weight(owner.quant_weight())
    search_ranges(model, recipe, task, progress)
    if unseen:
        log.warning("%d quantizers saw no calibration data and stay float: %s", len(unseen),
                    ", ".join(unseen[:5]) + (" ..." if len(unseen) > 5 else ""))
    set_enabled(model, True)
    return model


def quant_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """{quantizer: its calibrated tensors} (CPU copies; the same keys as its buffers)."""
    return {name: q.state() for name, q in quantizers(model) if q.scale is not None}


def save_quant_state(model: nn.Module, recipe: QuantRecipe, path: str | os.PathLike) -> None:
    """Recipe + per-quantizer tensors (no modules, loads with `weights_only=True`), on the CPU
    whatever device the model calibrated on."""
    from trtq.calib.big import ATTR

    big = {layer: {key: t.cpu() for key, t in fold.items()}
           for layer, fold in (getattr(model, ATTR, None) or {}).items()}
    torch.save({"version": STATE_VERSION, "recipe": recipe.to_dict(),
                "quantizers": quant_state(model), "big": big}, path)


def read_quant_state(path: str | os.PathLike) -> tuple[QuantRecipe, dict, dict]:
    """(recipe, per-quantizer tensors, BIG fold per attention)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CalibrationError(f"{path} is not a trtq quant state (torch.load: "
                               f"{type(exc).__name__}); re-run `trtq calibrate`") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise CalibrationError(f"{path} is not a trtq quant state (version {STATE_VERSION})")
    return recipe_from_dict(data["recipe"]), data["quantizers"], data.get("big") or {}


def load_quant_state(model: nn.Module, path: str | os.PathLike) -> QuantRecipe:
    """Re-apply the saved BIG fold to the float `model`, quantize it with the saved recipe and
    load the saved scales; returns the recipe."""
    from trtq.calib.big import reapply

    recipe, states, big = read_quant_state(path)
    if big:
        try:
            reapply(model, big)
        except ValueError as exc:
            raise CalibrationError(f"{path}: {exc}; it was calibrated for another model") from exc
    quantize(model.eval(), recipe)
    known = dict(quantizers(model))
    missing = sorted(set(states) - set(known))
    if missing:
        raise CalibrationError(f"{path} has quantizers this model lacks ({missing[0]}, ...): "
                               "it was calibrated for another model")
    for name, state in states.items():
        known[name].load_state(state, name)
    set_enabled(model, True)
    return recipe


def _float_conv_names(model: nn.Module) -> list[str]:
    from trtq.calib.modules import QuantConv2d, QuantConvBN

    return [name for name, m in model.named_modules() if isinstance(m, QuantConv2d | QuantConvBN)]


def _has_log2(model: nn.Module) -> bool:
    return any(q.spec is not None and q.is_log2 for _, q in quantizers(model))


def retarget(model: nn.Module, recipe: QuantRecipe, target: str,
             float_attention: bool = False, *,
             model_rules: ModelRules = GENERIC_RULES) -> QuantRecipe:
    """Switch a calibrated model between the TensorRT target (symmetric int8 activations) and
    the onnxruntime target (asymmetric uint8 activations) without recalibrating; optionally
    turn the attention-matmul quantizers off. Returns the recipe that now describes it.

    The onnxruntime target also keeps convolutions float: onnxruntime has no integer kernel
    for a Conv whose output stays float (it runs DequantizeLinear, then the float Conv, which
    is slower than plain FP32), while Linear layers become integer MatMulIntegerToFloat. Its
    log2 quantizers are lowered as `QuantRecipe.for_target` says: uniform uint8 over [0, the
    log2 quantizer's calibrated top level], or float where `model_rules.onnxruntime_float`
    (the model adapter's) says.
    """
    import fnmatch

    from trtq.recipes import QuantRule, lower_log2_for_onnxruntime, replace_rules

    want_symmetric = target == "tensorrt"
    convs = _float_conv_names(model) if target == "onnxruntime" else []
    lowers_log2 = target == "onnxruntime" and _has_log2(model)
    for name, q in quantizers(model):
        if q.spec is None:
            continue
        owner, _, leaf = name.rpartition(".")
        log2_float = lowers_log2 and any(fnmatch.fnmatchcase(name, p)
                                         for p in model_rules.onnxruntime_float)
        if owner in convs or log2_float or (float_attention and owner.endswith("_matmul")):
            q.configure(None)
        elif q.is_log2 and target == "onnxruntime":
            top = q.scale
            q.configure(lower_log2_for_onnxruntime(q.spec))
            q.set_range(torch.zeros((), device=top.device), top.clone())
        elif q.spec.axis is None and q.spec.symmetric != want_symmetric:
            q.flip_symmetry()
    new = recipe.for_target(target, model_rules)
    extra = tuple(QuantRule(f"{name}.*", None) for name in convs)
    if float_attention:
        extra += (QuantRule("*_matmul.*", None),)
    return replace_rules(new, new.rules + extra) if extra else new
