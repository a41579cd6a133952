"""`trtq inspect`: the TensorRT Q/DQ lint + INT8 MAC coverage of an ONNX graph (with
`--predict`, how TensorRT will run it: `trtq.export.trt_predict`), or a recipe's resolved
quantizer table on a model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from trtq.errors import TrtqError

log = logging.getLogger("trtq.export")

def _recipe_coverage(record: dict, coverage) -> float | None:
    """Coverage over the MACs of the layers the export quantized (listed in the sidecar)."""
    from trtq.export.qdq_lint import module_path
    from trtq.models import adapter_for

    layers = record.get("quantized_layers")
    if layers is None:
        return None
    prefix = adapter_for(record.get("model")).part_prefix(record.get("part"))
    wanted_float = sum(macs for name, macs in coverage.float_layers
                       if f"{prefix}{module_path(name)}" in set(layers))
    wanted = coverage.int8_macs + wanted_float
    return coverage.int8_macs / wanted if wanted else None


def inspect_onnx(path: str, predict: bool = False) -> dict:
    from trtq.artifacts import sidecar_path
    from trtq.export.onnx_files import load_graph
    from trtq.export.onnxruntime_session import check_onnx
    from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq

    check_onnx(path)
    record = {}
    if sidecar_path(path).is_file():
        from trtq.artifacts import read_sidecar

        record = read_sidecar(path)
        if record.get("target", "tensorrt") != "tensorrt":
            raise TrtqError(f"{path} was exported for the {record['target']} target (uint8 "
                            "activations, INT8 weights without Q); TensorRT's parser rejects "
                            "it. Re-export with `trtq export --target tensorrt`")
    model = load_graph(path)  # without external weights: lint reads single constants on demand
    report = lint_qdq(model, base_dir=str(Path(path).parent))
    coverage = int8_mac_coverage(model)
    result = {"onnx": str(path), "part": record.get("part"), "precision": record.get("precision"),
              "lint_errors": report.errors, "lint_warnings": report.warnings,
              "quantize_nodes": report.quantize_nodes,
              "dequantize_nodes": report.dequantize_nodes,
              "int8_mac_coverage": coverage.fraction,
              "int8_mac_coverage_of_recipe": _recipe_coverage(record, coverage),
              "total_macs": coverage.total_macs, "int8_macs": coverage.int8_macs,
              "float_layers": [{"node": n, "macs": m} for n, m in coverage.float_layers[:20]]}
    if predict:
        from trtq.export.trt_predict import predict as predict_trt

        result["prediction"] = predict_trt(model).to_dict()
    return result


def _print_onnx(result: dict) -> None:
    print(f"{result['onnx']}: {result['quantize_nodes']} QuantizeLinear, "
          f"{result['dequantize_nodes']} DequantizeLinear")
    by_recipe = result["int8_mac_coverage_of_recipe"]
    print(f"INT8 MAC coverage: {result['int8_mac_coverage']:.1%} of all Conv/MatMul MACs"
          + (f", {by_recipe:.1%} of those the recipe quantizes" if by_recipe is not None else ""))
    for row in result["float_layers"][:8]:
        share = row["macs"] / result["total_macs"] if result["total_macs"] else 0
        print(f"  float: {row['node']} ({share:.2%} of MACs)")
    for warning in result["lint_warnings"][:5]:
        print(f"lint warning: {warning}")
    for error in result["lint_errors"]:
        print(f"lint error: {error}")
    print("lint: " + ("passed" if not result["lint_errors"] else
                      f"{len(result['lint_errors'])} errors"))


def _print_prediction(prediction: dict) -> None:
    summary = prediction["summary"]
    shares = ", ".join(f"{verdict} {n} ({summary['mac_share'][verdict]:.1%} of MACs)"
                       for verdict, n in sorted(summary["verdicts"].items(),
                                                key=lambda kv: -summary["mac_share"][kv[0]]))
    print(f"predicted TensorRT execution: {summary['layers']} Conv/MatMul layers: {shares}")
    blocks = prediction["attention"]
    print(f"attention: fusable as INT8 MHA {summary['int8_mha']} of {len(blocks)}, "
          f"FP16 MHA head size fits {summary['fp16_mha']} of {len(blocks)}")
    if blocks:
        print(f"  {'softmax':<40} {'head':>4} {'S_q':>5} {'S_kv':>5}  int8 MHA")
    for block in blocks[:16]:
        why = "yes" if block["int8_mha"] else "no: " + "; ".join(block["reasons"])
        print(f"  {block['softmax'][-40:]:<40} {block['head_size'] or '?':>4} "
              f"{block['s_q'] or '?':>5} {block['s_kv'] or '?':>5}  {why}")
    if len(blocks) > 16:
        print(f"  ... {len(blocks) - 16} more in --out")
    unfusable = summary["unfusable"]
    print(f"standalone Q/DQ reformats: {summary['standalone_qdq']} "
          f"({len(unfusable)} avoidable by placement)")
    if unfusable:
        print(f"  first avoidable: {unfusable[0]['node']}: {unfusable[0]['reason']}")


def _user_quantizers(args, recipe):
    """Your own model quantized as `recipe` says. With a preprocess, one synthetic picture runs
    through it (`trtq.quantize`), so attention written with functions gets its quantizers;
    without one, only the layers' quantizers are listed."""
    import trtq
    from trtq.calib import quantize
    from trtq.commands._network import example_inputs, forward_loop, load_network
    from trtq.commands.calibrate_cmd import check_user_recipe

    check_user_recipe(recipe)
    net = load_network(args.model, None)
    if net.image is None:
        log.warning("%s has no preprocess: quantizers of attention written with functions "
                    "(torch.matmul, SDPA) appear only once data runs; not listed", net.name)
        quantize(net.module, recipe)
    else:
        trtq.quantize(net.module, recipe, forward_loop(net, example_inputs(net, None)))
    return net


def inspect_recipe(args) -> dict:
    from trtq.calib import quantize
    from trtq.calib.modules import quantizers
    from trtq.commands.calibrate_cmd import resolve_recipe
    from trtq.models.registry import get_spec
    from trtq.models.user_model import is_user_reference

    recipe = resolve_recipe(args)
    if is_user_reference(args.model):
        model = _user_quantizers(args, recipe).module
    else:
        model = get_spec(args.model).build()  # architecture only: no weights are needed
        quantize(model, recipe)
    table = {name: (q.spec.describe() if q.spec else "float") for name, q in quantizers(model)}
    return {"recipe": recipe.name, "model": args.model, "deployable": recipe.deployable,
            "target": recipe.target, "description": recipe.description,
            "notes": list(recipe.notes), "rules": recipe.to_dict()["rules"],
            "quantizers": table}


def run(args) -> int:
    from trtq import artifacts

    if args.out:
        artifacts.check_writable(args.out, args.force)
    if args.predict and not args.onnx:
        raise TrtqError("--predict reads an ONNX graph: use `trtq inspect --onnx FILE --predict`")
    if args.onnx:
        result = inspect_onnx(args.onnx, predict=args.predict)
        _print_onnx(result)
        if args.predict:
            _print_prediction(result["prediction"])
    else:
        result = inspect_recipe(args)
        on = sum(1 for v in result["quantizers"].values() if v != "float")
        print(f"recipe {result['recipe']} on {result['model']}: {on} of "
              f"{len(result['quantizers'])} quantizers on; deployable to TensorRT: "
              f"{'yes' if result['deployable'] else 'no'}")
        for note in result["notes"]:
            print(f"note: {note}")
        width = max(len(n) for n in result["quantizers"])
        for name, desc in result["quantizers"].items():
            print(f"{name:<{width}}  {desc}")
    if args.out:
        artifacts.write_text(args.out, json.dumps(result, indent=2) + "\n", force=args.force)
    return 1 if args.onnx and result["lint_errors"] else 0
