"""`trtq export`: encoder/decoder ONNX with sidecars, FP32 or (with --calibrated) INT8 Q/DQ."""

from __future__ import annotations

import logging
from dataclasses import replace

from trtq.errors import TrtqError

log = logging.getLogger("trtq.export")


def _print_part(name: str, record: dict) -> None:
    logq = f", {record['logquant_nodes']} LogQuant nodes" if record.get("logquant_nodes") else ""
    print(f"{name}: {record['path']} (INT8 MAC coverage {record['int8_mac_coverage']:.1%}{logq}, "
          f"lint {'passed' if not record['lint_errors'] else 'failed'}, max rel. diff vs "
          f"fake-quant PyTorch {record['parity_max_rel_diff']:.1e})")


def _check_inputs(args) -> None:
    """Everything that can be refused before a model loads."""
    from trtq.commands._common import require_sam_model
    from trtq.export.onnx_fp32 import output_names
    from trtq.models import adapter_for
    from trtq.staging import check_folder_outputs

    require_sam_model(args.model, "export")  # classifier export is not written yet
    if args.opset < 17:
        raise TrtqError(f"--opset {args.opset} is too old: LayerNormalization needs opset >= 17")
    if not args.calibrated and (args.target != "tensorrt" or args.float_attention
                                or args.logquant not in ("auto", "onnx")):
        raise TrtqError("--target, --float-attention and --logquant shape INT8 exports; pass "
                        "--calibrated")
    if args.calibrated:
        from trtq.calib.state_dir import state_path

        state_path(args.calibrated)
    check_folder_outputs(args.out, output_names(adapter_for(args.model).part_names),
                         args.force)


def run(args) -> int:
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.models import checkpoint_provenance, load_model

    _check_inputs(args)
    record = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, record["checkpoint"])
    spec = ExportSpec(args.model, record["checkpoint_sha256"], args.opset)
    if args.calibrated:
        from trtq.calib.state_dir import load_calibrated
        from trtq.export.onnx_qdq import export_quantized
        from trtq.plugins import resolve_logquant_form

        recipe, calib = load_calibrated(model, args.model, args.calibrated, args.target,
                                        args.float_attention)
        spec = replace(spec, calibration_id=calib["calibration_id"])
        result = export_quantized(model, recipe, spec, args.out, args.target,
                                  inputs={"quant_state": calib["sha256"]}, force=args.force,
                                  logquant=resolve_logquant_form(args.logquant, args.target))
        for name in ("encoder", "decoder"):
            _print_part(name, result[name])
        print(f"calibration {spec.calibration_id}")
        return 0
    result = export_fp32(model, spec, args.out, force=args.force)
    print(f"encoder: {result['encoder']} (max rel. diff vs PyTorch {result['encoder_parity']:.1e})")
    print(f"decoder: {result['decoder']} (max rel. diff vs PyTorch {result['decoder_parity']:.1e})")
    return 0
