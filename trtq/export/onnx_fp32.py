"""FP32 ONNX export of a model as its export parts, one graph each.

The parts come from the model's adapter (`trtq.models.adapters`; SAM's: `DIR/encoder.onnx`,
image (1, 3, S, S) → image_embeddings, and `DIR/decoder.onnx`, image_embeddings + boxes
(num_boxes, 4) → low_res_masks, iou_predictions). Each file is checked with onnx.checker, run
in onnxruntime against PyTorch on the same inputs (the export fails if they disagree), written
atomically, and described by a sidecar JSON holding the model name, the preprocessing, the
parity figures and the input hashes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trtq.artifacts import atomic_output, write_sidecar
from trtq.errors import ArtifactError
from trtq.models.adapters import OnnxPart, adapter_for

log = logging.getLogger("trtq.export")

DEFAULT_OPSET = 17
# Parity bound between onnxruntime and PyTorch, relative to the output's largest magnitude.
PARITY_RTOL = 1e-4


@dataclass(frozen=True)
class ExportSpec:
    """What to export: the model, where it came from, and how."""

    model_name: str
    checkpoint_sha256: str | None = None
    opset: int = DEFAULT_OPSET
    calibration_id: str | None = None  # the quant state's (INT8 exports; see calib.state_dir)


def model_parts(model, spec: ExportSpec, parts=None) -> tuple[OnnxPart, ...]:
    """`parts` (OnnxParts), or the export parts of the adapter `spec.model_name` names."""
    if parts is not None:
        return tuple(parts)
    return adapter_for(spec.model_name).export_parts(model.eval())


def exact_inputs(module, count: int):
    """`module`, or a wrapper whose forward takes exactly `count` inputs when `module.forward`
    has defaulted parameters after them: torch.onnx.export appends those defaults to the traced
    inputs (a Python float becomes a graph input). The wrapper's child is `net`, so its graph
    and quantizer names start with `net.`."""
    import inspect

    from torch import nn

    rest = list(inspect.signature(module.forward).parameters.values())[count:]
    if all(p.default is p.empty for p in rest):
        return module

    class ExactInputs(nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, *args):
            return self.net(*args)

    return ExactInputs(module).train(module.training)


def is_large(part: OnnxPart) -> bool:
    """Whether the part's graph needs external data (`trtq.export.onnx_files`)."""
    from trtq.export import onnx_files

    return onnx_files.module_bytes(part.module) > onnx_files.EXTERNAL_DATA_BYTES


def _torch_export(part: OnnxPart, path: Path, opset: int,
                  custom_opsets: dict[str, int] | None = None) -> str | None:
    """torch.onnx.export of `part` into `path`; a part over the protobuf limit keeps its weights
    in `<part>.onnx.data` beside it. Returns that file's name, or None."""
    import torch

    from trtq.export.onnx_files import torch_export_large

    def export(target: Path) -> None:
        # Without no_grad the tracer keeps every activation for autograd: SAM ViT-H's encoder
        # then needs over 24 GB to export instead of 7.5 GB.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices are expected
            torch.onnx.export(part.module, part.example_args, str(target), dynamo=False,
                              opset_version=opset, input_names=list(part.inputs),
                              output_names=list(part.outputs), dynamic_axes=part.dynamic_axes,
                              do_constant_folding=True, custom_opsets=custom_opsets)

    if is_large(part):
        return torch_export_large(export, path, f"{part.name}.onnx")
    export(path)
    return None


def _parity(part: OnnxPart, session) -> float:
    """Largest |onnxruntime − PyTorch| over the parity inputs, relative to max(1, max|PyTorch|)."""
    import torch

    worst = 0.0
    for feeds in part.parity_feeds:
        with torch.inference_mode():
            expected = part.module(*(torch.from_numpy(feeds[n]) for n in part.inputs))
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        for got, ref in zip(session.run(None, feeds), expected, strict=True):
            ref = ref.numpy()
            if got.shape != ref.shape:
                raise ArtifactError(f"{part.name}: ONNX output shape {got.shape} differs from "
                                    f"PyTorch {ref.shape}; the export is wrong")
            scale = max(float(np.abs(ref).max()), 1.0)
            worst = max(worst, float(np.abs(got - ref).max()) / scale)
    return worst


def export_part(part: OnnxPart, path: Path, opset: int, force: bool = False) -> dict:
    """Export, check with onnx.checker, compare with PyTorch in onnxruntime, then move into
    place; a failed check leaves nothing behind. Returns the parity record."""
    from trtq.export.onnxruntime_session import check_onnx, create_session

    with atomic_output(path, force) as tmp:
        data = _torch_export(part, tmp, opset)
        check_onnx(tmp)
        worst = _parity(part, create_session(tmp))
        if worst > PARITY_RTOL:
            raise ArtifactError(f"{path.name}: onnxruntime differs from PyTorch by {worst:.2e} "
                                f"(relative, bound {PARITY_RTOL:.0e}); the export is wrong")
    return {"parity_max_rel_diff": worst, "parity_cases": len(part.parity_feeds),
            "external_data": data}


def output_names(parts) -> tuple[str, ...]:
    """The files an export writes: each part's ONNX and its sidecar (and its external weights,
    for a part too large for one file)."""
    names = []
    for part in parts:
        name = getattr(part, "name", part)
        names += [f"{name}.onnx", f"{name}.onnx.json"]
        if not isinstance(part, str) and is_large(part):
            names.append(f"{name}.onnx.data")
    return tuple(names)


def check_part_outputs(parts, out: Path, force: bool) -> None:
    """Refuse before any work if an output ONNX file or its sidecar exists (without --force),
    or `out` cannot be a folder."""
    from trtq.staging import check_folder_outputs

    check_folder_outputs(out, output_names(parts), force)


def part_record(part: OnnxPart) -> dict:
    """The sidecar fields describing one exported graph's interface."""
    shapes = {name: list(arg.shape) for name, arg in zip(part.inputs, part.example_args,
                                                         strict=True)}
    return {"part": part.name, "input_shapes": shapes, "output_names": list(part.outputs),
            "dynamic_axes": part.dynamic_axes}


def export_fp32(model, spec: ExportSpec, out_dir: str | os.PathLike, force: bool = False,
                parts=None) -> dict:
    """Export `model` as its parts (`parts`, default: its adapter's; SAM: `out_dir/encoder.onnx`
    and `out_dir/decoder.onnx`) + sidecars, as one transaction (`trtq.staging`): all parts
    appear together or not at all."""
    from trtq.staging import staged_folder

    out = Path(out_dir)
    parts = model_parts(model.eval(), spec, parts)
    check_part_outputs(parts, out, force)
    common = {"model": spec.model_name, "precision": "fp32", "calibration_id": None,
              "opset": spec.opset, "preprocess": asdict(model.preprocess)}
    inputs = {"checkpoint": spec.checkpoint_sha256} if spec.checkpoint_sha256 else {}
    result = {}
    with staged_folder(out, output_names(parts), force) as stage:
        for part in parts:
            log.info("exporting the %s to %s", part.name, out / f"{part.name}.onnx")
            parity = _export_with_sidecar(part, stage, spec.opset, common, inputs)
            result[part.name] = str(out / f"{part.name}.onnx")
            result[f"{part.name}_parity"] = parity["parity_max_rel_diff"]
    return result


def _export_with_sidecar(part: OnnxPart, folder: Path, opset: int, extra: dict,
                         inputs: dict | None) -> dict:
    """`folder/<part>.onnx` (checked by `export_part`) and its sidecar; the parity record."""
    path = folder / f"{part.name}.onnx"
    parity = export_part(part, path, opset)
    write_sidecar(path, "onnx", inputs, {**extra, **part_record(part), **parity},
                  companions=tuple(filter(None, [parity["external_data"]])))
    return parity


MODEL_FILES = ("model.onnx", "model.onnx.json")  # a network exported as one graph


def export_model_fp32(part: OnnxPart, out_dir: str | os.PathLike, extra: dict,
                      inputs: dict | None, opset: int = DEFAULT_OPSET,
                      force: bool = False) -> dict:
    """Export a network as one graph, `out_dir/model.onnx` + sidecar (`extra`: what the sidecar
    records about the model; `inputs`: input files' SHA-256), checked like each SAM part and
    written as one transaction. Returns the parity record and the path."""
    from trtq.staging import staged_folder

    path = Path(out_dir) / f"{part.name}.onnx"
    log.info("exporting %s to %s", extra.get("model", part.name), path)
    with staged_folder(path.parent, output_names((part,)), force) as stage:
        parity = _export_with_sidecar(part, stage, opset, {**extra, "precision": "fp32",
                                                           "calibration_id": None,
                                                           "opset": opset}, inputs)
    return {"path": str(path), **parity}
