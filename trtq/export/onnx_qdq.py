"""INT8 Q/DQ ONNX export of a calibrated model, one graph per export part (+ sidecars).

The calibrated quantizers export as QuantizeLinear/DequantizeLinear pairs; `qdq_rewrite` makes
the weights deployable for the chosen target; for the TensorRT target the result must pass the
explicit-quantization lint, or nothing is written. Parity with the fake-quantized PyTorch model
is checked in onnxruntime with every quantizer cut and fed PyTorch's codes
(`trtq.export.qdq_parity`): each layer must then agree to float rounding, or nothing is
written. The free-running difference, which a quantized network amplifies from single rounding
flips, is recorded alongside.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict
from pathlib import Path

import onnx

from trtq.artifacts import atomic_output, write_sidecar
from trtq.calib.logquant_onnx import DOMAIN, DOMAIN_VERSION, check_form
from trtq.calib.modules import logquant_params, quantizers
from trtq.errors import ArtifactError
from trtq.export import onnx_files
from trtq.export.onnx_fp32 import (
    ExportSpec,
    _parity,
    _torch_export,
    check_part_outputs,
    model_parts,
    output_names,
    part_record,
)
from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq
from trtq.export.qdq_parity import forced_parity
from trtq.export.qdq_rewrite import rewrite_weights
from trtq.staging import staged_folder

log = logging.getLogger("trtq.export")



@contextlib.contextmanager
def export_mode(model, logquant: str = "onnx"):
    qs = [q for _, q in quantizers(model)]
    for q in qs:
        q.export_mode, q.logquant_form = True, check_form(logquant)
    lowered = [m for m in model.modules() if hasattr(m, "prepare_export")]
    for module in lowered:
        module.prepare_export()
    try:
        yield
    finally:
        for q in qs:
            q.export_mode, q.logquant_form = False, "onnx"
        for module in lowered:
            if hasattr(module, "finish_export"):
                module.finish_export()
            else:
                module.export_bias = None


def count_logquant(model: onnx.ModelProto) -> int:
    """LogQuant sites: trtq::LogQuant nodes, or the one Log of each decomposed form (SAM-family
    graphs have no other Log)."""
    return sum(n.domain == DOMAIN or (n.op_type == "Log" and n.domain in ("", "ai.onnx"))
               for n in model.graph.node)


def check_exportable(recipe) -> None:
    if recipe.bits - {8}:
        raise ArtifactError(f"recipe {recipe.name!r} uses {sorted(recipe.bits)}-bit quantizers: "
                            "it is simulation-only; ONNX Q/DQ export needs 8-bit recipes")
    wide = sorted({r.pattern for r in recipe.rules if r.spec is not None
                   and r.spec.axis is not None and not r.spec.narrow})
    if wide:
        raise ArtifactError(f"recipe {recipe.name!r} quantizes weights ({wide[0]}) to the full "
                            "[-128, 127] range; TensorRT's INT8 weights are symmetric [-127, "
                            "127]: use narrow=True weight quantizers")
    twins = sorted({r.spec.kind for r in recipe.rules if r.spec is not None
                    and r.spec.kind.startswith("twin")})
    if twins:
        raise ArtifactError(f"recipe {recipe.name!r} has {', '.join(twins)} quantizers: twin "
                            "ranges are simulation-only (TensorRT has no twin-range INT8); "
                            "export its deployable subset, e.g. w8a8-ptq4vit-deploy")


def check_forced_parity(part, model: onnx.ModelProto, name: str,
                        base_dir: str | None = None) -> dict:
    """Teacher-forced parity (`trtq.export.qdq_parity`) on every parity input; the worst
    figures, or an ArtifactError naming the first problem."""
    results = [forced_parity(part, model, feeds, base_dir) for feeds in part.parity_feeds]
    for result in results:
        problems = result.problems()
        if problems:
            raise ArtifactError(f"{name}: the exported graph does not compute what the "
                                f"fake-quantized model does: {problems[0]}; the export is wrong")
    figures = [r.to_dict() for r in results]
    return {key: max(f[key] for f in figures) for key in figures[0]}


def _ship_for_onnxruntime(part, path: Path, graph: onnx.ModelProto, data) -> dict | None:
    """The onnxruntime target ships onnxruntime's optimized graph (`onnxruntime_optimize`),
    fast in a default session; not for files with external data or trtq's custom nodes, which
    stay Q/DQ graphs (logged)."""
    from trtq.export.onnxruntime_optimize import optimize_in_place

    custom = sorted({n.domain for n in graph.graph.node if n.domain not in ("", "ai.onnx")})
    if data or custom:
        log.warning("%s stays a Q/DQ graph (%s): onnxruntime fuses it only with MatMulAddFusion "
                    "disabled", path.name, "external data" if data else f"{custom[0]} nodes")
        return None
    return optimize_in_place(path, list(part.parity_feeds))


def export_qdq_part(part, path: Path, opset: int, target: str, force: bool = False,
                    logquant: str = "onnx") -> dict:
    """Export one part, rewrite its weights, lint (TensorRT target), measure parity."""
    from trtq.export.onnxruntime_session import check_onnx, create_session

    custom = {DOMAIN: DOMAIN_VERSION} if logquant == "plugin" else None
    with atomic_output(path, force) as tmp:
        large = _torch_export(part, tmp, opset, custom) is not None
        model = onnx.load(str(tmp))
        rewritten = rewrite_weights(model, target)
        report = lint_qdq(model)
        if target == "tensorrt" and report.errors:
            raise ArtifactError(f"{path.name} fails the TensorRT Q/DQ lint: "
                                + "; ".join(report.errors[:3]))
        data = onnx_files.save(model, tmp, path.name, external=large or None)
        del model  # saving moved large weights out of it: work on the file's graph from here
        graph = onnx_files.load_graph(tmp)
        coverage = int8_mac_coverage(graph)
        check_onnx(tmp)
        forced = check_forced_parity(part, graph, path.name, str(tmp.parent))
        shipped = _ship_for_onnxruntime(part, tmp, graph, data) if target == "onnxruntime" \
            else None
        worst = _parity(part, create_session(tmp))
    return {"parity_max_rel_diff": worst, "parity_cases": len(part.parity_feeds),
            "forced_parity": forced, "onnxruntime_optimized": shipped, "external_data": data,
            "weights_rewritten": rewritten, "lint_errors": report.errors,
            "lint_warnings": len(report.warnings), "quantize_nodes": report.quantize_nodes,
            "dequantize_nodes": report.dequantize_nodes,
            "logquant_nodes": count_logquant(graph),
            "int8_mac_coverage": coverage.fraction, "total_macs": coverage.total_macs}


def quantized_layers(model) -> list[str]:
    """The layers whose inputs a uniform quantizer quantizes (sidecars list them, so `trtq
    inspect` can tell the INT8 coverage of what the recipe meant to quantize)."""
    return sorted(name.rsplit(".", 1)[0] for name, q in quantizers(model)
                  if q.enabled and not q.is_log2 and name.endswith(".input_quantizer"))


def export_quantized(model, recipe, spec: ExportSpec, out_dir: str | os.PathLike,
                     target: str = "tensorrt", inputs: dict | None = None,
                     force: bool = False, logquant: str = "onnx", parts=None) -> dict:
    """Export a calibrated `model` as Q/DQ ONNX into `out_dir`, one graph per part (`parts`,
    default: its adapter's, `trtq.export.onnx_fp32.model_parts`); returns a summary.
    `logquant` picks how log2 quantizers are written: standard ONNX ops or the `trtq::LogQuant`
    plugin node (`trtq.calib.logquant_onnx`)."""
    check_form(logquant)
    check_exportable(recipe)
    if spec.opset < 13:
        raise ArtifactError("Q/DQ export needs opset >= 13 (per-channel axis)")
    out = Path(out_dir)
    parts = model_parts(model.eval(), spec, parts)
    check_part_outputs(parts, out, force)
    layers = quantized_layers(model)
    log2 = logquant_params(model)
    common = {"model": spec.model_name, "quantized_layers": layers, "precision": "int8",
              "calibration_id": spec.calibration_id,
              "target": target, "logquant_form": logquant if log2 else None,
              "logquant": log2,
              "opset": spec.opset, "recipe": recipe.to_dict(), "recipe_sha256": recipe.sha256(),
              "deployable": recipe.deployable and target == "tensorrt",
              "preprocess": asdict(model.preprocess)}
    if spec.checkpoint_sha256:
        inputs = {"checkpoint": spec.checkpoint_sha256, **(inputs or {})}
    result = {}
    with export_mode(model, logquant), staged_folder(out, output_names(parts), force) as stage:
        for part in parts:
            path = stage / f"{part.name}.onnx"
            log.info("exporting the INT8 %s (%s target) to %s", part.name, target,
                     out / path.name)
            record = export_qdq_part(part, path, spec.opset, target, logquant=logquant)
            write_sidecar(path, "onnx", inputs, {**common, **part_record(part), **record},
                          companions=tuple(filter(None, [record["external_data"]])))
            result[part.name] = {"path": str(out / path.name), **record}
    return result
