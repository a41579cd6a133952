"""Parse and build the FP32 exports and hand-made Q/DQ graphs with TensorRT or TensorRT-RTX.

TensorRT-RTX (pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings) builds plans ahead
of time without a GPU, so these run on CPU-only CI; without either module they are skipped.
"""

from __future__ import annotations

import sys

import onnx
import pytest

from trtq.engines.tensorrt_api import (
    build_serialized,
    import_tensorrt,
    network_layers,
    parse_onnx,
    summarize_layers,
)
from trtq.errors import BackendError


def test_missing_modules_say_what_to_install(monkeypatch):
    for name in ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    with pytest.raises(BackendError) as info:
        import_tensorrt()
    message = str(info.value)
    assert "pip install tensorrt " in message and "python3-libnvinfer" in message
    assert "pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings" in message


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_tiny_fp32_parses_and_builds(trt, tiny_onnx, part):
    parsed = parse_onnx(tiny_onnx / f"{part}.onnx", trt)
    layers = network_layers(parsed)
    summary = summarize_layers(layers)
    assert len(layers) == parsed.network.num_layers > 100
    assert sum(summary.values()) == len(layers)
    assert summary["QUANTIZE"] == summary["DEQUANTIZE"] == 0
    assert summary["MATRIX_MULTIPLY"] > 0 and summary["NORMALIZATION"] > 0  # LayerNormalization
    plan = build_serialized(parsed)
    assert isinstance(plan, bytes) and len(plan) > 100_000
    if parsed.flavour == "tensorrt_rtx":
        assert parsed.strongly_typed  # RTX networks are always strongly typed


def test_dynamic_boxes_take_the_given_profile(trt, tiny_onnx):
    parsed = parse_onnx(tiny_onnx / "decoder.onnx", trt)
    boxes = next(parsed.network.get_input(i) for i in range(parsed.network.num_inputs)
                 if parsed.network.get_input(i).name == "boxes")
    assert tuple(boxes.shape) == (-1, 4)
    assert len(build_serialized(parsed, shapes={"boxes": [(1, 4), (3, 4), (8, 4)]})) > 100_000
    with pytest.raises(BackendError, match=r"\['box'\].*not inputs"):
        build_serialized(parsed, shapes={"box": [(1, 4)] * 3})


def test_qdq_conv_parses_builds_and_counts_qdq_layers(trt, tmp_path, qdq_conv):
    parsed = parse_onnx(qdq_conv(tmp_path / "qdq.onnx"), trt)
    layers = {layer.name: layer for layer in network_layers(parsed)}
    summary = summarize_layers(parsed)
    assert summary["QUANTIZE"] == 2 and summary["DEQUANTIZE"] == 2
    assert summary["CONVOLUTION"] == 1
    assert layers["x_q"].type == "QUANTIZE" and layers["x_q"].output_dtypes == ("INT8",)
    assert layers["w_dq"].type == "DEQUANTIZE" and layers["w_dq"].output_dtypes == ("FLOAT",)
    assert len(build_serialized(parsed, precision="int8")) > 10_000


def test_non_zero_zero_point_is_refused(trt, tmp_path, qdq_conv):
    path = qdq_conv(tmp_path / "asymmetric.onnx", activation_zero_point=3)
    with pytest.raises(BackendError) as info:
        parse_onnx(path, trt)
    message = str(info.value)
    assert str(path) in message and "x_q" in message and "QuantizeLinear" in message
    assert "zero point" in message.lower() and "shiftIsAllZeros" in message


def test_unknown_precision_and_missing_file_are_refused(trt, tmp_path, qdq_conv):
    from trtq.errors import ArtifactError

    with pytest.raises(BackendError, match="precision 'int4'"):
        build_serialized(qdq_conv(tmp_path / "qdq.onnx"), precision="int4", trt=trt)
    with pytest.raises(ArtifactError, match="trtq export"):
        parse_onnx(tmp_path / "absent.onnx", trt)


@pytest.mark.parametrize("part, inputs", [("encoder", 1), ("decoder", 2)])
def test_litemedsam_fp32_parses_and_builds(trt, litemedsam_onnx, part, inputs):
    # About 4 s per part with TensorRT-RTX on 2 CPU cores (parse 0.1-0.3 s).
    parsed = parse_onnx(litemedsam_onnx / f"{part}.onnx", trt)
    summary = summarize_layers(parsed)
    assert parsed.network.num_inputs == inputs
    assert parsed.network.num_layers > 1000 and summary["QUANTIZE"] == 0
    assert summary["MATRIX_MULTIPLY"] >= 60
    # The weights alone are 16-23 MB of FP32; the plan carries them.
    assert len(build_serialized(parsed)) > 15_000_000


def _qdq_counts(path) -> tuple[int, int]:
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_tiny_int8_qdq_parses_and_builds(trt, tiny_qdq, part):
    path = tiny_qdq["tensorrt"] / f"{part}.onnx"
    parsed = parse_onnx(path, trt)
    summary = summarize_layers(parsed)
    q, dq = _qdq_counts(path)
    assert summary["QUANTIZE"] == q > 50 and summary["DEQUANTIZE"] == dq
    assert len(build_serialized(parsed, precision="int8")) > 100_000


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_litemedsam_int8_qdq_parses_and_builds(trt, litemedsam_qdq, part):
    path = litemedsam_qdq / f"{part}.onnx"
    parsed = parse_onnx(path, trt)
    summary = summarize_layers(parsed)
    q, dq = _qdq_counts(path)
    assert summary["QUANTIZE"] == q >= 60 and summary["DEQUANTIZE"] == dq
    assert len(build_serialized(parsed, precision="int8")) > 5_000_000


def _logquant_layers(parsed) -> dict[str, int]:
    """Layer types TensorRT made of the decomposed LogQuant sites."""
    counts: dict[str, int] = {}
    for layer in network_layers(parsed):
        if "/av_matmul/input_quantizer/" in layer.name:
            counts[layer.type] = counts.get(layer.type, 0) + 1
    return counts


@pytest.mark.parametrize("part, sites", [("encoder", 4), ("decoder", 7)])
def test_tiny_ptq4sam_decomposed_logquant_parses_and_builds(trt, tiny_ptq4sam_qdq, part, sites):
    parsed = parse_onnx(tiny_ptq4sam_qdq["onnx"] / f"{part}.onnx", trt)
    counts = _logquant_layers(parsed)
    assert counts.get("GATHER", 0) == 3 * sites  # two bound lookups and the level lookup
    assert counts.get("UNARY", 0) >= 2 * sites  # Log and Round
    assert len(build_serialized(parsed, precision="int8")) > 100_000


@pytest.mark.parametrize("part, sites", [("encoder", 10), ("decoder", 7)])
def test_litemedsam_ptq4sam_parses_and_builds(trt, litemedsam_ptq4sam_qdq, part, sites):
    path = litemedsam_ptq4sam_qdq / f"{part}.onnx"
    parsed = parse_onnx(path, trt)
    summary = summarize_layers(parsed)
    q, dq = _qdq_counts(path)
    assert summary["QUANTIZE"] == q >= 60 and summary["DEQUANTIZE"] == dq
    assert _logquant_layers(parsed).get("GATHER", 0) == 3 * sites
    assert len(build_serialized(parsed, precision="int8")) > 5_000_000


def test_plugin_form_needs_the_logquant_plugin(trt, tiny_ptq4sam_qdq):
    # Until trtq's LogQuant plugin is registered, the parser names every LogQuant node.
    with pytest.raises(BackendError) as info:
        parse_onnx(tiny_ptq4sam_qdq["plugin"] / "decoder.onnx", trt)
    message = str(info.value)
    assert "7 parser error(s)" in message and message.count("op LogQuant") == 7
    assert "Plugin not found" in message


@pytest.mark.parametrize("part, sites", [("encoder", 4), ("decoder", 2)])
def test_tiny_ptq4vit_shifted_inputs_parse_and_build(trt, tiny_ptq4vit_deploy_qdq, part, sites):
    # The asymmetric post-GELU/ReLU inputs, lowered to Sub → symmetric Q/DQ, pass TensorRT's
    # importer (it rejects any non-zero zero point) and build as INT8.
    path = tiny_ptq4vit_deploy_qdq / f"{part}.onnx"
    parsed = parse_onnx(path, trt)
    summary = summarize_layers(parsed)
    q, dq = _qdq_counts(path)
    assert summary["QUANTIZE"] == q and summary["DEQUANTIZE"] == dq
    shifted = [layer for layer in network_layers(parsed)
               if "/mlp/" in layer.name and layer.name.endswith("/Sub")]
    assert len(shifted) == sites
    assert len(build_serialized(parsed, precision="int8")) > 100_000
