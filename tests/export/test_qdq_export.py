"""INT8 Q/DQ export: TensorRT-legal graphs, the onnxruntime flavour, the lint, the coverage."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from trtq.artifacts import read_sidecar
from trtq.errors import ArtifactError
from trtq.export.onnx_graph import Graph, attribute
from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq, module_path


def _load(folder, part):
    return onnx.load(str(folder / f"{part}.onnx"))


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_tensorrt_target_is_symmetric_int8_and_lint_clean(tiny_qdq, part):
    model = _load(tiny_qdq["tensorrt"], part)
    g = Graph(model)
    report = lint_qdq(model)
    assert report.errors == [] and report.warnings == []
    assert report.quantize_nodes == report.dequantize_nodes > 50
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = g.constant(node.input[2])
            assert zp.dtype == np.int8 and not zp.any()
            assert np.all(g.constant(node.input[1]) > 0)
    meta = read_sidecar(tiny_qdq["tensorrt"] / f"{part}.onnx")
    assert meta["precision"] == "int8" and meta["target"] == "tensorrt" and meta["deployable"]
    assert meta["lint_errors"] == [] and meta["parity_max_rel_diff"] < 0.25


def test_matmul_weights_are_per_channel_on_axis_1_and_within_127(tiny_qdq):
    model = _load(tiny_qdq["tensorrt"], "encoder")
    g = Graph(model)
    matmul_weights = 0
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        dq = g.producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in g.producer:
            continue
        q = g.producer[dq.input[0]]
        weight = g.constant(q.input[0])
        if weight is None:
            continue  # an activation operand (attention matmul)
        scale = g.constant(q.input[1])
        assert attribute(q, "axis") == 1 and attribute(dq, "axis") == 1
        assert scale.shape == (weight.shape[1],)
        assert np.all(np.abs(weight) <= 127 * scale[None, :] * (1 + 1e-6))  # narrow range
        matmul_weights += 1
    assert matmul_weights >= 8
    assert not any(n.op_type == "Transpose" and g.producer.get(n.input[0]) is not None and
                   g.producer[n.input[0]].op_type == "DequantizeLinear" for n in model.graph.node)


def test_coverage_counts_every_quantized_layer(tiny_qdq):
    enc = int8_mac_coverage(_load(tiny_qdq["tensorrt"], "encoder"))
    assert enc.fraction > 0.9
    floats = {name for name, _ in enc.float_layers}
    assert "/patch_embed/seq/seq.0/Conv" in floats  # the image itself stays float
    assert all(n == "/patch_embed/seq/seq.0/Conv" or "/conv2/" in n for n in floats)  # depthwise
    dec = int8_mac_coverage(_load(tiny_qdq["tensorrt"], "decoder"))
    floats = {module_path(name) for name, _ in dec.float_layers}
    heads = ("mask_decoder.output_", "mask_decoder.iou_", "prompt_encoder")
    assert all(p.startswith(heads) or p in ("", "mask_decoder")
               or p.endswith("token_to_image.av_matmul") for p in floats)


def test_onnxruntime_target_ships_integer_kernels_for_a_default_session(tiny_qdq):
    """The onnxruntime target's file is onnxruntime's optimized graph: integer kernels with
    INT8 weights and uint8 activations, no float GEMM on dequantized inputs (what a default
    session made of the Q/DQ graph), convolutions float, and the same outputs in a plain
    default session as in trtq's."""
    import onnxruntime as ort

    from trtq.export.onnxruntime_session import create_session

    path = tiny_qdq["onnxruntime"] / "encoder.onnx"
    model = onnx.load(str(path))
    g = Graph(model)
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulIntegerToFloat" in ops
    assert {"com.microsoft"} <= {o.domain for o in model.opset_import}
    integer = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    weights = [g.constant(n.input[1]) for n in integer if n.input[1] in g.initializers]
    assert len(weights) > 5 and all(w.dtype == np.int8 for w in weights)
    assert all(np.abs(w).max() <= 127 for w in weights)
    activations = {g.constant(n.input[2]).dtype for n in model.graph.node
                   if n.op_type == "QuantizeLinear"}
    assert activations == {np.dtype(np.uint8)}
    fed_by_dq = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul", "FusedGemm")
                 and any(g.producer.get(i) is not None
                         and g.producer[i].op_type == "DequantizeLinear" for i in n.input)]
    assert fed_by_dq == []
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "FusedConv")]
    assert convs and not any(g.producer.get(n.input[1]) for n in convs)  # convs stay float
    record = read_sidecar(path)
    assert record["deployable"] is False
    assert record["onnxruntime_optimized"]["max_rel_diff_vs_qdq"] <= 1e-4
    size = record["preprocess"]["input_size"]
    image = np.random.default_rng(3).random((1, 3, size, size), dtype=np.float32)
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = plain.run(None, {"image": image})[0]
    want = create_session(path).run(None, {"image": image})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_int8_onnx_matches_fake_quant_pytorch(tiny_qdq, tiny_calibrated):
    from trtq.calib.state_dir import load_calibrated
    from trtq.export.onnxruntime_session import create_session
    from trtq.models import load_model
    from trtq.models.sam_adapter import sample_inputs

    for target in ("tensorrt", "onnxruntime"):
        model = load_model("tiny_litemedsam")
        load_calibrated(model, "tiny_litemedsam", tiny_calibrated, target)
        image, _ = sample_inputs(model, seed=7)
        with torch.no_grad():
            want = model.image_encoder(image).numpy()
        session = create_session(tiny_qdq[target] / "encoder.onnx")
        got = session.run(None, {"image": image.numpy()})[0]
        # Identical until a rounding tie flips (float summation order), after which the flip
        # ripples through later quantizers: small on average, never O(1).
        err = np.abs(got - want)
        assert float(np.mean(err)) < 0.05 * float(np.mean(np.abs(want))), target


def _hand_made(zero_point=0, scale=0.1, per_channel_activation=False, int32_bias=False):
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, np.int8), "z"),
             numpy_helper.from_array(np.ones((4, 4), np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
             helper.make_node("MatMul", ["xd", "w"], ["y"], name="mm")]
    if per_channel_activation:
        inits[0] = numpy_helper.from_array(np.full(4, scale, np.float32), "s")
        inits[1] = numpy_helper.from_array(np.zeros(4, np.int8), "z")
        for node in nodes[:2]:
            node.attribute.append(helper.make_attribute("axis", 1))
    if int32_bias:
        inits.append(numpy_helper.from_array(np.ones(4, np.int32), "b32"))
        nodes.append(helper.make_node("DequantizeLinear", ["b32", "s"], ["bd"], name="bias_dq"))
        nodes.append(helper.make_node("Add", ["y", "bd"], ["y2"], name="add"))
    out = "y2" if int32_bias else "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [2, 4])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 4])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lint_rules_on_hand_made_graphs():
    assert lint_qdq(_hand_made()).errors == []
    assert "symmetric" in " ".join(lint_qdq(_hand_made(zero_point=3)).errors)
    assert "scale" in " ".join(lint_qdq(_hand_made(scale=-0.1)).errors)
    assert "weights only" in " ".join(lint_qdq(_hand_made(per_channel_activation=True)).errors)
    assert "INT32" in " ".join(lint_qdq(_hand_made(int32_bias=True)).errors)
    coverage = int8_mac_coverage(_hand_made())
    assert coverage.total_macs == 2 * 4 * 4 and coverage.int8_macs == 0  # weight has no DQ


def test_simulation_only_recipes_are_not_exported(tmp_path):
    from trtq.export.onnx_fp32 import ExportSpec
    from trtq.export.onnx_qdq import export_quantized
    from trtq.models import load_model
    from trtq.recipes import get_recipe

    with pytest.raises(ArtifactError, match="simulation-only"):
        export_quantized(load_model("tiny_litemedsam"), get_recipe("w4a4"),
                         ExportSpec("tiny_litemedsam"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_inspect_json_contract(tiny_qdq, tmp_path):
    from trtq.cli import main

    out = tmp_path / "inspect.json"
    assert main(["inspect", "--onnx", str(tiny_qdq["tensorrt"] / "decoder.onnx"),
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["lint_errors"] == [] and 0.5 < result["int8_mac_coverage"] < 1
    assert result["int8_mac_coverage_of_recipe"] == 1.0
    assert main(["inspect", "--onnx", str(tiny_qdq["onnxruntime"] / "decoder.onnx")]) == 2


def test_tensorrt_target_runs_integer_matmuls_in_a_default_onnxruntime_session(tiny_qdq,
                                                                               tmp_path):
    """Full-rank biases keep onnxruntime's MatMulAddFusion off the Q/DQ MatMuls, so a default
    session runs them as integer kernels; the lint is unchanged."""
    import onnxruntime as ort

    path = tiny_qdq["tensorrt"] / "encoder.onnx"
    model = onnx.load(str(path))
    g = Graph(model)
    biases = [g.constant(b) for n in model.graph.node if n.op_type == "Add"
              for a, b in (n.input, n.input[::-1])
              if g.producer.get(a) is not None and g.producer[a].op_type == "MatMul"
              and b in g.initializers]
    assert biases and all(b.ndim >= 3 and b.shape[:-1] == (1,) * (b.ndim - 1) for b in biases)
    assert lint_qdq(model).errors == []
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(options.optimized_model_filepath)
    ops = [n.op_type for n in optimized.graph.node]
    assert ops.count("MatMulIntegerToFloat") >= len(biases)
    opt = Graph(optimized)
    assert not [n.name for n in optimized.graph.node if n.op_type == "Gemm"
                and any(opt.producer.get(i) is not None
                        and opt.producer[i].op_type == "DequantizeLinear" for i in n.input)]


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_tensorrt_target_has_no_float_gemm_on_dequantized_inputs_in_onnxruntime(tiny_qdq, part,
                                                                               tmp_path):
    """Every Q/DQ pair owns its scale and zero point, so onnxruntime's common-subexpression pass
    cannot merge the Qs of layers reading one tensor (the decoder's q/k/v projections) into a Q
    with several DQs, which its INT8→UINT8 conversion skips: every Q/DQ MatMul becomes an
    integer kernel in a default session, and TensorRT reads the same values."""
    import onnxruntime as ort

    path = tiny_qdq["tensorrt"] / f"{part}.onnx"
    model = onnx.load(str(path))
    g = Graph(model)
    pairs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"
             and not g.is_constant(n.input[0])]
    params = [name for n in pairs for name in n.input[1:]]
    assert pairs and len(params) == len(set(params))
    for q in pairs:
        (dq,) = g.consumers[q.output[0]]
        assert list(dq.input[1:]) == list(q.input[1:])
    assert lint_qdq(model).errors == []
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(options.optimized_model_filepath)
    opt = Graph(optimized)
    float_gemms = [n.name for n in optimized.graph.node
                   if n.op_type in ("MatMul", "Gemm", "FusedMatMul", "FusedGemm")
                   and any(opt.producer.get(i) is not None
                           and opt.producer[i].op_type == "DequantizeLinear" for i in n.input)]
    assert float_gemms == []
    assert [n.op_type for n in optimized.graph.node].count("MatMulIntegerToFloat") >= 4


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_attention_exports_with_the_query_pre_scaled(tiny_calibrated, tmp_path, part):
    """TensorRT's fused attention wants (q·s)·Kᵀ: every attention exports with a Mul by
    1/√d before the query's Q/DQ and no scaling between BMM1 and the softmax; the predictor
    has no pre-scaling note; the query quantizers' scales are restored after the export, and
    the teacher-forced parity (checked by the export) held."""
    from dataclasses import replace

    from trtq.calib.modules import quantizers
    from trtq.calib.state_dir import load_calibrated
    from trtq.export.onnx_fp32 import ExportSpec
    from trtq.export.onnx_qdq import export_quantized
    from trtq.export.trt_predict import predict
    from trtq.models import load_model
    from trtq.models.layers import PrescaledQueryExport

    model = load_model("tiny_litemedsam")
    recipe, record = load_calibrated(model, "tiny_litemedsam", tiny_calibrated, "tensorrt")
    before = {name: q.scale.clone() for name, q in quantizers(model) if q.scale is not None}
    spec = replace(ExportSpec("tiny_litemedsam"), calibration_id=record["calibration_id"])
    export_quantized(model, recipe, spec, tmp_path, "tensorrt")
    after = {name: q.scale for name, q in quantizers(model) if q.scale is not None}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    prefix = "image_encoder." if part == "encoder" else "mask_decoder."
    attentions = [m for name, m in model.named_modules()
                  if isinstance(m, PrescaledQueryExport) and name.startswith(prefix)]
    assert attentions and not any(m.prescale_query for m in attentions)

    graph = _load(tmp_path, part)
    g = Graph(graph)
    blocks = predict(graph).attention
    assert len(blocks) == len(attentions)
    scales = sorted({round(m.query_factor, 6) for m in attentions})
    for block in blocks:
        assert not any("pre-scaled" in note for note in block.notes), block
        bmm1 = next(n for n in graph.graph.node if n.name == block.bmm1)
        dq = g.producer[bmm1.input[0]]
        q = g.producer[dq.input[0]]
        mul = g.producer[q.input[0]]
        assert (dq.op_type, q.op_type, mul.op_type) == ("DequantizeLinear", "QuantizeLinear",
                                                      "Mul")
        factor = next(g.constant(i) for i in mul.input if g.is_constant(i))
        assert round(float(factor), 6) in scales
