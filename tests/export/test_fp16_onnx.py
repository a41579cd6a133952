"""FP16 ONNX conversion: types, parity with FP32, the overflow guard, refusals, TensorRT-RTX."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from trtq.artifacts import read_sidecar, sha256_file, sidecar_path
from trtq.errors import ArtifactError
from trtq.export.fp16 import KEEP_FP32_OPS, convert_to_fp16, write_fp16
from trtq.export.onnxruntime_session import create_session

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
# Error = max|FP16 - FP32| / max(1, max|FP32|), as the FP32 export's parity check measures it,
# so the random tiny decoder's small outputs (IoU peaks at 0.045) are judged on the scale of its
# order-1 activations. FP16 rounds each stored value by up to 2**-11 ≈ 4.9e-4; measured (seed 0,
# onnxruntime / float16 ReferenceEvaluator): tiny encoder 1.5e-3 / 1.6e-3, tiny decoder masks
# and IoU 2.6e-4, 9e-5 / 5.1e-4, 3.9e-4; LiteMedSAM encoder 4.2e-3 / 5.3e-3, decoder 2.3e-3,
# 3.5e-4. 1e-2 leaves a 2x margin on the real encoder; a wrongly converted weight, constant or
# cast moves outputs by order 1.
RTOL = 1e-2
PARTS = ("encoder", "decoder")


@pytest.fixture(scope="module")
def tiny_fp16(tiny_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_fp16")
    for part in PARTS:
        write_fp16(tiny_onnx / f"{part}.onnx", out / f"{part}.onnx")
    return out


def _types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})
    return types


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _rel_err(got, ref) -> float:
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


def _tiny_feeds(tiny_onnx: Path) -> dict[str, dict[str, np.ndarray]]:
    """A fixed random image (minmax-normalized range) and boxes; the decoder gets the FP32
    encoder's embeddings of that image."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    (emb,) = create_session(tiny_onnx / "encoder.onnx").run(None, {"image": image})
    boxes = np.sort(rng.uniform(0, 63, (3, 2, 2)), axis=1).reshape(3, 4).astype(np.float32)
    return {"encoder": {"image": image},
            "decoder": {"image_embeddings": emb, "boxes": boxes}}


def _only_kept_consumers(model: onnx.ModelProto, name: str) -> bool:
    """Whether `name` feeds kept ops only (through Identity nodes, as torch shares weights)."""
    users = [n for n in model.graph.node if name in n.input]
    return bool(users) and all(
        n.op_type in KEEP_FP32_OPS
        or (n.op_type == "Identity" and _only_kept_consumers(model, n.output[0]))
        for n in users)


@pytest.mark.parametrize("part, kept", [("encoder", 14), ("decoder", 17)])
def test_tiny_types(tiny_onnx, tiny_fp16, part, kept):
    fp32, half = (onnx.load(str(d / f"{part}.onnx")) for d in (tiny_onnx, tiny_fp16))
    onnx.checker.check_model(half, full_check=True)
    before, after = _types(fp32), _types(half)
    interface = [*half.graph.input, *half.graph.output]
    assert [v.name for v in interface] == [v.name for v in (*fp32.graph.input, *fp32.graph.output)]
    assert {v.type.tensor_type.elem_type for v in interface} == {FLOAT}
    kept_nodes = [n for n in half.graph.node if n.op_type in KEEP_FP32_OPS]
    assert Counter(n.op_type for n in kept_nodes) == Counter(
        n.op_type for n in fp32.graph.node if n.op_type in KEEP_FP32_OPS)
    assert len(kept_nodes) == kept  # every LayerNormalization and Softmax
    for node in kept_nodes:  # kept ops compute in FLOAT, weights included
        assert {after[t] for t in (*node.input, *node.output) if t} == {FLOAT}, node.name
    # Every float tensor the FP32 graph computes is FLOAT16 now, except the kept ops' outputs
    # and weights that only kept ops read.
    outputs = {v.name for v in half.graph.output}
    internal = [t for n in fp32.graph.node for t in n.output if before.get(t) == FLOAT
                and t not in outputs]
    still_fp32 = {t for t in internal if after[t] == FLOAT}
    kept_outputs = {t for n in kept_nodes for t in n.output}
    assert {t for t in still_fp32 - kept_outputs if not _only_kept_consumers(half, t)} == set()
    fp16 = [t for t in internal if after[t] == FLOAT16]
    assert len(fp16) == len(internal) - len(still_fp32) >= 250  # 326 and 262 here
    weights = Counter(i.data_type for i in half.graph.initializer)
    assert weights[FLOAT16] > 50 and set(weights) <= {FLOAT, FLOAT16, TensorProto.INT64}
    for init in half.graph.initializer:
        if init.data_type == FLOAT:
            assert _only_kept_consumers(half, init.name), init.name


def test_tiny_matches_fp32(tiny_onnx, tiny_fp16):
    for part, feeds in _tiny_feeds(tiny_onnx).items():
        ref = create_session(tiny_onnx / f"{part}.onnx").run(None, feeds)
        got = create_session(tiny_fp16 / f"{part}.onnx").run(None, feeds)
        # onnxruntime's CPU provider computes most FP16 nodes in FP32 (see trtq.export.fp16);
        # the reference evaluator rounds every op's result to float16.
        emulated = ReferenceEvaluator(onnx.load(str(tiny_fp16 / f"{part}.onnx"))).run(None, feeds)
        for outputs in (got, emulated):
            assert [o.dtype for o in outputs] == [np.float32] * len(ref)
            assert [o.shape for o in outputs] == [r.shape for r in ref]
            errors = [_rel_err(o, r) for o, r in zip(outputs, ref, strict=True)]
            # above 1e-5: the weights and activations really are rounded to FP16
            assert all(1e-5 < e < RTOL for e in errors), (part, errors)


def _layernorm_graph() -> onnx.ModelProto:
    """h = x + 0.5, then LayerNorm decomposed as torch's older exports write it; `std` is a
    second output so the test sees the variance path."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("two", 2.0), ("eps", 1e-5), ("shift", [0.5] * 16), ("gamma", [1.0] * 16),
              ("beta", [0.0] * 16))]
    nodes = [helper.make_node("Add", ["x", "shift"], ["h"]),
             helper.make_node("ReduceMean", ["h"], ["mean"], axes=[-1]),
             helper.make_node("Sub", ["h", "mean"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["var_eps"]),
             helper.make_node("Sqrt", ["var_eps"], ["std"]),
             helper.make_node("Div", ["d", "std"], ["normed"]),
             helper.make_node("Mul", ["normed", "gamma"], ["scaled"]),
             helper.make_node("Add", ["scaled", "beta"], ["y"])]
    graph = helper.make_graph(
        nodes, "layernorm", [helper.make_tensor_value_info("x", FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 16]),
         helper.make_tensor_value_info("std", FLOAT, [2, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_kept_ops_prevent_overflow_in_a_decomposed_layernorm():
    model = _layernorm_graph()
    rng = np.random.default_rng(0)
    # |x - mean| ≈ 400, so (x - mean)² ≈ 160000: past FP16's 65504.
    x = (np.where(np.arange(32).reshape(2, 16) % 2, 400.0, -400.0)
         + rng.normal(0, 20, (2, 16))).astype(np.float32)
    ref_y, ref_std = ReferenceEvaluator(model).run(None, {"x": x})
    assert ref_std.min() > 256  # the squares exceed FP16's range
    half = convert_to_fp16(model)
    types = _types(half)
    assert [types[t] for t in ("sq", "var", "var_eps", "std")] == [FLOAT] * 4  # + eps follows
    assert [types[t] for t in ("h", "d", "normed", "scaled")] == [FLOAT16] * 4
    y, std = ReferenceEvaluator(half).run(None, {"x": x})
    assert np.isfinite(y).all() and np.isfinite(std).all()
    assert _rel_err(y, ref_y) < RTOL and _rel_err(std, ref_std) < RTOL
    ort_y, _ = _session(half).run(None, {"x": x})
    assert _rel_err(ort_y, ref_y) < RTOL
    # Without kept ops the squares overflow: the variance is inf and the output collapses.
    naive_y, naive_std = ReferenceEvaluator(convert_to_fp16(model, ())).run(None, {"x": x})
    assert np.isinf(naive_std).all() and np.abs(naive_y - ref_y).max() > 0.5


def _typed_ops_graph() -> onnx.ModelProto:
    """Resize (float32 `scales` whatever T is), a float ConstantOfShape, Cast(to=FLOAT) from a
    shape, and a Constant given as value_float: y = (resize(x) * W + 0.25) * 0.5."""
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
        helper.make_node("Shape", ["r"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["quarter"],
                         value=numpy_helper.from_array(np.array([0.25], np.float32))),
        helper.make_node("Gather", ["shape", "last"], ["width"]),
        helper.make_node("Cast", ["width"], ["width_f"], to=FLOAT),
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Mul", ["r", "width_f"], ["rw"]),
        helper.make_node("Add", ["rw", "quarter"], ["s"]),
        helper.make_node("Mul", ["s", "half"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([3], np.int64), "last")]
    graph = helper.make_graph(nodes, "typed", [helper.make_tensor_value_info("x", FLOAT,
                                                                             [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", FLOAT, [1, 2, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_spec_typed_inputs_and_float_creating_ops():
    model = _typed_ops_graph()
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    types = _types(half)
    nodes = {n.op_type: n for n in half.graph.node if n.op_type != "Cast" or n.input[0] == "width"}
    assert types[nodes["Resize"].input[0]] == FLOAT16 and nodes["Resize"].input[2] == "scales"
    assert types["scales"] == FLOAT  # the spec fixes Resize scales to float32
    assert [types[t] for t in ("r", "quarter", "width_f", "half", "y/fp16")] == [FLOAT16] * 5
    assert nodes["Cast"].attribute[0].i == FLOAT16
    x = np.random.default_rng(0).normal(size=(1, 2, 4, 4)).astype(np.float32)
    (ref,) = ReferenceEvaluator(model).run(None, {"x": x})
    assert ref.shape == (1, 2, 8, 8)
    for run in (ReferenceEvaluator(half).run, _session(half).run):
        (got,) = run(None, {"x": x})
        assert got.dtype == np.float32 and _rel_err(got, ref) < RTOL


def _qdq_graph() -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
             numpy_helper.from_array(np.array(0, np.int8), "zero")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="x_q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", FLOAT, [4])],
                              [helper.make_tensor_value_info("y", FLOAT, [4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_and_custom_graphs_are_refused():
    with pytest.raises(ArtifactError, match=r"'x_q' \(QuantizeLinear\).*Q/DQ graphs are not"):
        convert_to_fp16(_qdq_graph())
    node = helper.make_node("LogQuant", ["x"], ["y"], domain="trtq")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("x", FLOAT, [4])],
                              [helper.make_tensor_value_info("y", FLOAT, [4])])
    custom = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                     helper.make_opsetid("trtq", 1)])
    with pytest.raises(ArtifactError, match="custom domain 'trtq'"):
        convert_to_fp16(custom)
    with pytest.raises(ArtifactError, match="already has float16"):
        convert_to_fp16(convert_to_fp16(_layernorm_graph()))


def test_write_refuses_overwrite_missing_and_same_path(tmp_path):
    src = tmp_path / "ln.onnx"
    onnx.save(_layernorm_graph(), str(src))
    dst = tmp_path / "out" / "ln_fp16.onnx"
    dst.parent.mkdir()
    dst.write_bytes(b"older")
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        write_fp16(src, dst)
    assert dst.read_bytes() == b"older"
    assert write_fp16(src, dst, force=True) == dst
    assert onnx.load(str(dst)).graph.node[0].op_type == "Cast"
    record = read_sidecar(dst)  # written even without a source sidecar
    assert record["precision"] == "fp16" and record["inputs"] == {"onnx_fp32": sha256_file(src)}
    assert sorted(p.name for p in dst.parent.iterdir()) == ["ln_fp16.onnx", "ln_fp16.onnx.json"]
    with pytest.raises(ArtifactError, match="does not exist"):
        write_fp16(tmp_path / "absent.onnx", tmp_path / "absent_fp16.onnx")
    with pytest.raises(ArtifactError, match="is the source model"):
        write_fp16(src, src, force=True)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        write_fp16(tmp_path / "junk.onnx", tmp_path / "junk_fp16.onnx")
    assert not (tmp_path / "junk_fp16.onnx").exists()


def test_tiny_sidecars_and_folder(tiny_onnx, tiny_fp16):
    assert sorted(p.name for p in tiny_fp16.iterdir()) == [
        "decoder.onnx", "decoder.onnx.json", "encoder.onnx", "encoder.onnx.json"]
    for part in PARTS:
        src, dst = tiny_onnx / f"{part}.onnx", tiny_fp16 / f"{part}.onnx"
        record, source = read_sidecar(dst), read_sidecar(src)
        assert record["precision"] == "fp16" and source["precision"] == "fp32"
        assert record["fp16_keep_fp32_ops"] == list(KEEP_FP32_OPS)
        assert record["inputs"]["onnx_fp32"] == sha256_file(src)
        assert record["model"] == "tiny_litemedsam" and record["part"] == part
        assert record["input_shapes"] == source["input_shapes"]
        assert "parity_max_rel_diff" not in record  # that figure was FP32 vs PyTorch
    assert sidecar_path(dst).name == "decoder.onnx.json"


@pytest.mark.parametrize("part", PARTS)
def test_tiny_fp16_parses_strongly_typed_and_builds(trt, tiny_fp16, part):
    from trtq.engines.tensorrt_api import build_serialized, network_layers, parse_onnx

    parsed = parse_onnx(tiny_fp16 / f"{part}.onnx", trt)
    if parsed.flavour == "tensorrt_rtx":
        assert parsed.strongly_typed
    dtypes: dict[str, set] = {}
    for layer in network_layers(parsed):
        dtypes.setdefault(layer.type, set()).update(layer.output_dtypes)
    convolution = "CONVOLUTION" if part == "encoder" else "DECONVOLUTION"
    assert dtypes["MATRIX_MULTIPLY"] == dtypes[convolution] == {"HALF"}
    assert dtypes["NORMALIZATION"] == dtypes["SOFTMAX"] == {"FLOAT"}
    shapes = {"boxes": [(1, 4), (1, 4), (4, 4)]} if part == "decoder" else None
    assert len(build_serialized(parsed, shapes=shapes)) > 100_000


@pytest.mark.parametrize("part", PARTS)
def test_litemedsam_fp16_matches_and_halves_the_plan(trt, litemedsam, litemedsam_onnx, part,
                                                     tmp_path):
    from trtq.engines.tensorrt_api import build_serialized
    from trtq.models.sam_adapter import sample_inputs

    src = litemedsam_onnx / f"{part}.onnx"
    dst = write_fp16(src, tmp_path / f"{part}.onnx")
    image, boxes = (t.numpy() for t in sample_inputs(litemedsam))
    feeds = {"image": image}
    if part == "decoder":
        (emb,) = create_session(litemedsam_onnx / "encoder.onnx").run(None, feeds)
        feeds = {"image_embeddings": emb, "boxes": boxes}
    ref = create_session(src).run(None, feeds)
    got = create_session(dst).run(None, feeds)
    assert all(_rel_err(g, r) < RTOL for g, r in zip(got, ref, strict=True))
    # The plan carries the weights: 16-23 MB in FP32, half that in FP16.
    fp16_plan, fp32_plan = len(build_serialized(dst, trt=trt)), len(build_serialized(src, trt=trt))
    assert fp16_plan < 0.7 * fp32_plan
