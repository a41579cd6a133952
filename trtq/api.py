"""trtq's Python API for any `nn.Module`: quantize, save and load the quant state, export ONNX.

    import trtq
    trtq.quantize(model, "w8a8", forward_loop)      # in place; forward_loop(model) runs data
    trtq.save(model, "quant_state.pt")
    trtq.load(fresh_model, "quant_state.pt")          # the same quantizers and scales
    trtq.export_onnx(model, (example,), "model.onnx", target="tensorrt")

What gets quantized: `nn.Linear`, `nn.Conv2d` and their subclasses that keep their `forward`,
`nn.MultiheadAttention`, trtq's `MatMul` modules, and attention written with functions
(`torch.matmul`, `@`, `torch.bmm` of two activations, `F.scaled_dot_product_attention`;
`trtq.calib.functional`). The recipe's rules match quantizer names: `<module>.input_quantizer`
/ `.weight_quantizer`; `<matmul>.input_quantizer` / `.other_quantizer`; for
`nn.MultiheadAttention` `<mha>.q_proj.input_quantizer` (likewise `k_proj`, `v_proj`,
`out_proj`, `qk_matmul`, `av_matmul`); for function calls `<module>.func_matmul_<i>.*` and
`<module>.func_sdpa_<i>.qk_matmul.*` / `.av_matmul.*`, i counting the calls in that module's
forward.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trtq.errors import TrtqError

log = logging.getLogger("trtq.calib")


def _recipe(recipe, model):
    """A QuantRecipe as is; a preset name resolved with the rules of `model`'s adapter (none
    for a model trtq does not ship: `trtq.models.adapters.adapter_for_module`), or a file."""
    from trtq.models.adapters import adapter_for_module
    from trtq.recipes import QuantRecipe, load_recipe

    if isinstance(recipe, QuantRecipe):
        return recipe
    return load_recipe(str(recipe), adapter_for_module(model).rules)


def _recipe_of(model):
    recipe = getattr(model, "trtq_recipe", None)
    if recipe is None:
        raise TrtqError("this model has no quant state: run trtq.quantize(model, recipe, "
                        "forward_loop) or trtq.load(model, path) first")
    return recipe


def quantize(model, recipe="w8a8", forward_loop: Callable | None = None, *,
             inplace: bool = True):
    """Quantize `model` with `recipe` (a preset name, a recipe .json file or a `QuantRecipe`),
    calibrated by `forward_loop(model)`, which runs calibration data through the model (its
    return value, if an int, is the number of samples it ran). Returns the quantized model:
    `model` itself, or a copy with `inplace=False`."""
    from trtq.calib.calibrate import calibrate
    from trtq.calib.functional import FunctionalQuantizer
    from trtq.calib.modules import install_quant_modules

    if forward_loop is None or not callable(forward_loop):
        raise TrtqError("trtq.quantize needs forward_loop(model), a function that runs "
                        "calibration data through the model")
    recipe = _recipe(recipe, model)
    if not inplace:
        model = copy.deepcopy(model)

    def loop(m) -> int:
        seen = forward_loop(m)
        return seen if isinstance(seen, int) else 1

    install_quant_modules(model)  # first, so the router hooks the modules that stay
    router = FunctionalQuantizer.install(model, _calibrating(recipe, model))
    calibrate(model, recipe, loop)
    router.configure = _left_float
    model.trtq_recipe = recipe
    return model


def _calibrating(recipe, model):
    """Set up a function-call attention's quantizers created during calibration."""
    from trtq.calib.modules import module_type_names

    def configure(name: str, quantizer) -> None:
        owner = model.get_submodule(name.rpartition(".")[0])
        quantizer.configure(recipe.spec_for(name, module_type_names(owner)))
        quantizer.name = name
        quantizer.start_calibration()
    return configure


def _left_float(name: str, quantizer) -> None:
    log.warning("%s: an attention product first seen after calibration stays float", name)
    quantizer.configure(None)


def save(model, path: str | os.PathLike) -> None:
    """Write the quant state (recipe and scales, plain tensors) of a quantized `model`."""
    from trtq.calib.calibrate import save_quant_state

    save_quant_state(model, _recipe_of(model), path)


def load(model, path: str | os.PathLike):
    """Quantize the float `model` as the state at `path` says and load its scales; returns it."""
    from trtq.calib.calibrate import load_quant_state, read_quant_state
    from trtq.calib.functional import FunctionalQuantizer
    from trtq.calib.modules import install_quant_modules

    _, states, _ = read_quant_state(path)
    install_quant_modules(model)  # first, so the router hooks the modules that stay
    router = FunctionalQuantizer.install(model, _loaded_next)
    router.create_for(states)
    router.configure = _left_float
    model.trtq_recipe = load_quant_state(model, path)
    return model


def _loaded_next(name: str, quantizer) -> None:
    """A saved function-call quantizer, created to receive its state (`load_quant_state`
    configures it from the saved recipe)."""
    quantizer.configure(None)


def export_onnx(model, example_inputs, path: str | os.PathLike, *, target: str = "tensorrt",
                input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None, dynamic_axes: dict | None = None,
                opset: int = 17, force: bool = False,
                provenance: Mapping[str, Any] | None = None) -> dict:
    """Export a quantized `model` as Q/DQ ONNX for `target` ("tensorrt": symmetric INT8, must
    pass the TensorRT lint; "onnxruntime": uint8 activations, onnxruntime's optimized graph).
    Checked like `trtq export`: teacher-forced parity with the fake-quantized model on
    `example_inputs`, free-running parity, INT8 MAC coverage, a sidecar `<path>.json`.
    Exporting for the other target re-targets the model's quantizers (no recalibration).
    `provenance`: fields the sidecar records about where the model came from (its name, the
    calibration id, ...); its `inputs` entry maps input files (checkpoint, quant state) to
    their SHA-256. Returns the export record (coverage, parity, lint)."""
    import torch

    from trtq.artifacts import write_sidecar
    from trtq.calib.calibrate import retarget
    from trtq.export.onnx_fp32 import OnnxPart, exact_inputs
    from trtq.export.onnx_qdq import check_exportable, export_mode, export_qdq_part
    from trtq.models.adapters import adapter_for_module

    recipe = _recipe_of(model)
    check_exportable(recipe)
    if target not in ("tensorrt", "onnxruntime"):
        raise TrtqError(f"target {target!r}: use tensorrt or onnxruntime")
    if target != recipe.target:
        rules = adapter_for_module(model).rules
        model.trtq_recipe = recipe = retarget(model, recipe, target, model_rules=rules)
    args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) \
        else tuple(example_inputs)
    model.eval()
    with torch.inference_mode():
        outputs = model(*args)
    count = 1 if isinstance(outputs, torch.Tensor) else len(outputs)
    inputs = tuple(input_names or (f"input_{i}" for i in range(len(args))))
    outputs = tuple(output_names or (f"output_{i}" for i in range(count)))
    if len(inputs) != len(args) or len(outputs) != count:
        raise TrtqError(f"{len(inputs)} input names for {len(args)} inputs or {len(outputs)} "
                        f"output names for {count} outputs")
    path = Path(path)
    feeds = {name: t.detach().cpu().numpy() for name, t in zip(inputs, args, strict=True)}
    part = OnnxPart(path.stem, exact_inputs(model, len(args)), args, inputs, outputs, (feeds,),
                    dynamic_axes)
    with export_mode(model):
        record = export_qdq_part(part, path, opset, target, force=force)
    extra = dict(provenance or {})
    write_sidecar(path, "onnx", extra.pop("inputs", None),
                  {"model": type(model).__name__, "precision": "int8", "target": target,
                   "recipe": recipe.to_dict(), "recipe_sha256": recipe.sha256(),
                   "deployable": recipe.deployable and target == "tensorrt", "opset": opset,
                   **record, **extra}, force=True,
                  companions=tuple(filter(None, [record["external_data"]])))
    return record
