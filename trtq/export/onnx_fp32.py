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
            path = stage / f"{part.name}.onnx"
            log.info("exporting the %s to %s", part.name, out / path.name)
            parity = export_part(part, path, spec.opset)
            write_sidecar(path, "onnx", inputs, {**common, **part_record(part), **parity},
                          companions=tuple(filter(None, [parity["external_data"]])))
            result[part.name] = str(out / path.name)
            result[f"{part.name}_parity"] = parity["parity_max_rel_diff"]
    return result
