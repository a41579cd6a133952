"""`trtq export`: encoder/decoder ONNX with sidecars, FP32 or (with --calibrated) INT8 Q/DQ."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from trtq.errors import TrtqError

log = logging.getLogger("trtq.export")


def _print_part(name: str, record: dict) -> None:
    logq = f", {record['logquant_nodes']} LogQuant nodes" if record.get("logquant_nodes") else ""
    print(f"{name}: {record['path']} (INT8 MAC coverage {record['int8_mac_coverage']:.1%}{logq}, "
          f"lint {'passed' if not record['lint_errors'] else 'failed'}, max rel. diff vs "
          f"fake-quant PyTorch {record['parity_max_rel_diff']:.1e})")


def _check_inputs(args, names) -> None:
    """Everything that can be refused before a model loads; `names`: the files to write."""
    from trtq.staging import check_folder_outputs

    if args.opset < 17:
        raise TrtqError(f"--opset {args.opset} is too old: LayerNormalization needs opset >= 17")
    if not args.calibrated and (args.target != "tensorrt" or args.float_attention
                                or args.logquant not in ("auto", "onnx")):
        raise TrtqError("--target, --float-attention and --logquant shape INT8 exports; pass "
                        "--calibrated")
    if args.calibrated:
        from trtq.calib.state_dir import state_path

        state_path(args.calibrated)
    check_folder_outputs(args.out, names, args.force)


def run(args) -> int:
    from trtq.commands._network import is_single_graph
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32, output_names
    from trtq.models import adapter_for, checkpoint_provenance, load_model

    if is_single_graph(args.model):
        return export_network(args)
    if args.images or args.calib_data:
        raise TrtqError("--images and --calib-data give a classifier or a user's model its "
                        "example inputs; a SAM-family export makes its own")
    _check_inputs(args, output_names(adapter_for(args.model).part_names))
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


def _export_int8(args, net, part, common: dict) -> dict:
    """Q/DQ through `trtq.api.export_onnx`, staged with its sidecar."""
    import trtq
    from trtq.commands._network import load_calibration
    from trtq.export.onnx_fp32 import MODEL_FILES
    from trtq.export.onnx_qdq import quantized_layers
    from trtq.staging import staged_folder

    calib = load_calibration(net, args.calibrated)
    provenance = {**common, "calibration_id": calib["calibration_id"],
                  "quantized_layers": quantized_layers(part.module),  # its graph's names
                  "inputs": {**net.inputs, "quant_state": calib["sha256"]}}
    with staged_folder(args.out, MODEL_FILES, args.force) as stage:
        record = trtq.export_onnx(net.module, part.example_args, stage / MODEL_FILES[0],
                                  target=args.target, input_names=part.inputs,
                                  output_names=part.outputs, dynamic_axes=part.dynamic_axes,
                                  opset=args.opset, provenance=provenance)
    _print_part("model", {**record, "path": str(Path(args.out) / MODEL_FILES[0])})
    print(f"calibration {calib['calibration_id']}")
    return record


def export_network(args) -> int:
    """A classifier or a user's model as one graph: DIR/model.onnx + sidecar, its batch axis
    dynamic; FP32 checked against PyTorch in onnxruntime, or INT8 Q/DQ with --calibrated."""
    from trtq.commands._network import example_part, load_network, open_data
    from trtq.export.onnx_fp32 import MODEL_FILES, export_model_fp32, part_record

    if args.float_attention or args.logquant not in ("auto", "onnx"):
        raise TrtqError("--float-attention and --logquant apply to SAM-family exports")
    _check_inputs(args, MODEL_FILES)
    folder = open_data(args.images, args.calib_data, limit=2)
    net = load_network(args.model, args.checkpoint)
    part = example_part(net, folder)
    common = {"model": net.name, **net.sidecar, **part_record(part)}
    if args.calibrated:
        _export_int8(args, net, part, common)
        return 0
    result = export_model_fp32(part, args.out, common, net.inputs, args.opset, args.force)
    print(f"model: {result['path']} (max rel. diff vs PyTorch "
          f"{result['parity_max_rel_diff']:.1e})")
    return 0
