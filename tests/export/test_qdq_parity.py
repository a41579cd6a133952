"""Teacher-forced export parity and the per-channel axis lint: a correct export agrees layer by
layer to float rounding; a weight scaled along the wrong axis or a missing Q/DQ pair fails."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from trtq.calib.state_dir import load_calibrated
from trtq.errors import ArtifactError
from trtq.export.onnx_graph import Graph, attribute
from trtq.export.onnx_qdq import export_mode
from trtq.export.qdq_lint import lint_qdq
from trtq.export.qdq_parity import MAX_MISMATCH, MAX_STEP_ERROR, forced_parity
from trtq.models import load_model
from trtq.models.sam_adapter import sam_parts


@pytest.fixture(scope="module")
def encoder(tiny_calibrated, tiny_qdq):
    """(the calibrated tiny encoder part in export mode, its exported TensorRT-target graph)."""
    model = load_model("tiny_litemedsam")
    load_calibrated(model, "tiny_litemedsam", tiny_calibrated, "tensorrt")
    part = sam_parts(model.eval())[0]
    with export_mode(model):
        yield part, onnx.load(str(tiny_qdq["tensorrt"] / "encoder.onnx"))


def _square_matmul_weight_qdq(model: onnx.ModelProto):
    """(Q, DQ) of a per-channel weight that feeds a MatMul as a square [K, K] matrix."""
    g = Graph(model)
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        dq = g.producer.get(node.input[1])
        q = g.producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" \
            else None
        weight = g.constant(q.input[0]) if q is not None else None
        if weight is not None and weight.ndim == 2 and weight.shape[0] == weight.shape[1]:
            return q, dq
    raise AssertionError("the tiny encoder has no square MatMul weight")


def _set_axis(node, axis: int) -> None:
    next(a for a in node.attribute if a.name == "axis").i = axis


def test_a_correct_export_agrees_cut_by_cut(encoder):
    part, model = encoder
    result = forced_parity(part, model, part.parity_feeds[0])
    assert result.cuts > 40
    assert result.max_step_error < MAX_STEP_ERROR / 10
    assert result.code_mismatch < MAX_MISMATCH and result.max_code_diff <= 1
    assert result.output_max_rel_diff < 1e-4
    assert result.problems() == []


def test_a_weight_scaled_along_the_wrong_axis_fails_lint_and_parity(encoder):
    part, model = encoder
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    q, dq = _square_matmul_weight_qdq(broken)
    assert attribute(q, "axis") == 1  # MatMul weight [K, N]: output channels on axis 1
    assert lint_qdq(broken).errors == []
    for node in (q, dq):
        _set_axis(node, 0)  # same length (square), wrong axis: input channels
    errors = lint_qdq(broken).errors
    assert len(errors) == 2 and all("is not the output-channel axis 1 of MatMul" in e
                                    for e in errors)
    problems = forced_parity(part, broken, part.parity_feeds[0]).problems()
    assert problems and "quantization steps" in problems[0]


def test_a_missing_qdq_pair_fails_parity(encoder):
    part, model = encoder
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    g = Graph(broken)
    q = next(n for n in broken.graph.node if n.op_type == "QuantizeLinear"
             and "mlp/fc1/input_quantizer" in n.name)
    (dq,) = g.consumers[q.output[0]]
    for user in g.consumers[dq.output[0]]:  # the layer now reads the float input
        user.input[list(user.input).index(dq.output[0])] = q.input[0]
    broken.graph.node.remove(q)
    broken.graph.node.remove(dq)
    assert lint_qdq(broken).errors == []  # the lint cannot see a pair that is not there
    with pytest.raises(ArtifactError, match="no quantization node for .*mlp.fc1.input_quantizer"):
        forced_parity(part, broken, part.parity_feeds[0])


def test_export_records_the_forced_figures(tiny_qdq):
    import json

    for target in ("tensorrt", "onnxruntime"):
        for part in ("encoder", "decoder"):
            path = tiny_qdq[target] / f"{part}.onnx"
            record = json.loads(path.with_name(path.name + ".json").read_text())
            forced = record["forced_parity"]
            assert forced["cuts"] > 10 and forced["max_step_error"] < MAX_STEP_ERROR
            assert forced["code_mismatch"] < MAX_MISMATCH
            assert np.isfinite(record["parity_max_rel_diff"])


def test_codes_off_for_another_reason_than_a_tie_fail_parity(encoder):
    """A QuantizeLinear that rounds with another scale than its DequantizeLinear (1 % off): the
    codes are not the exact quantization of the graph's own input, so they are not tie flips."""
    from onnx import numpy_helper

    part, model = encoder
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    g = Graph(broken)
    q = next(n for n in broken.graph.node if n.op_type == "QuantizeLinear"
             and "mlp/fc2/input_quantizer" in n.name)
    scale = g.constant(q.input[1])
    broken.graph.initializer.append(numpy_helper.from_array(scale * np.float32(1.01), "q_only"))
    q.input[1] = "q_only"
    result = forced_parity(part, broken, part.parity_feeds[0])
    assert result.code_mismatch > MAX_MISMATCH
    assert "mlp.fc2.input_quantizer" in result.worst_code_site
    assert any("other codes than PyTorch" in p for p in result.problems())
    correct = forced_parity(part, model, part.parity_feeds[0])
    assert correct.code_mismatch + correct.tie_flips < MAX_MISMATCH
