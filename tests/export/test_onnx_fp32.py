"""FP32 ONNX export: graph form, dynamic boxes, parity, sidecars, no silent overwrite."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from trtq.artifacts import read_sidecar, sha256_file
from trtq.errors import ArtifactError
from trtq.export.onnx_fp32 import ExportSpec, export_fp32
from trtq.models import load_model


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_graph_form(tiny_onnx):
    for name in ("encoder.onnx", "decoder.onnx"):
        model = onnx.load(str(tiny_onnx / name))
        assert model.opset_import[0].version >= 17
        onnx.checker.check_model(model)
    enc_ops = _ops(tiny_onnx / "encoder.onnx")
    # every LayerNorm (token and 2-D) is one LayerNormalization op, never a ReduceMean chain
    assert enc_ops["LayerNormalization"] > 0 and enc_ops["ReduceMean"] == 0 and enc_ops["Pow"] == 0
    assert enc_ops["MatMul"] >= 2 and enc_ops["Softmax"] > 0
    assert enc_ops["BatchNormalization"] == 0  # folded into the convolutions
    dec = onnx.load(str(tiny_onnx / "decoder.onnx"))
    names = [i.name for i in dec.graph.input]
    assert names == ["image_embeddings", "boxes"]
    boxes = dec.graph.input[1].type.tensor_type.shape.dim
    assert boxes[0].dim_param == "num_boxes" and boxes[1].dim_value == 4


@pytest.mark.parametrize("n", [1, 2, 7])
def test_dynamic_number_of_boxes_matches_pytorch(tiny_onnx, n):
    import onnxruntime as ort

    model = load_model("tiny_litemedsam")
    rng = np.random.default_rng(n)
    emb = rng.normal(size=(1, 32, 16, 16)).astype(np.float32)
    corners = np.sort(rng.uniform(0, 63, (n, 2, 2)), axis=1).reshape(n, 4).astype(np.float32)
    session = ort.InferenceSession(str(tiny_onnx / "decoder.onnx"))
    masks, iou = session.run(None, {"image_embeddings": emb, "boxes": corners})
    with torch.inference_mode():
        ref_masks, ref_iou = model.box_decoder()(torch.from_numpy(emb), torch.from_numpy(corners))
    assert masks.shape == (n, 1, 64, 64) and iou.shape == (n, 1)
    assert np.abs(masks - ref_masks.numpy()).max() < 1e-4
    assert np.abs(iou - ref_iou.numpy()).max() < 1e-4


def test_sidecars(tiny_onnx):
    enc = read_sidecar(tiny_onnx / "encoder.onnx")
    assert enc["model"] == "tiny_litemedsam" and enc["part"] == "encoder"
    assert enc["sha256"] == sha256_file(tiny_onnx / "encoder.onnx")
    assert enc["preprocess"]["input_size"] == 64 and enc["preprocess"]["resize"] == "area"
    assert enc["parity_max_rel_diff"] < 1e-4 and enc["versions"]["torch"].startswith("2.")
    assert enc["input_shapes"] == {"image": [1, 3, 64, 64]}
    assert enc["output_names"] == ["image_embeddings"] and enc["inputs"] == {}
    dec = read_sidecar(tiny_onnx / "decoder.onnx")
    assert dec["part"] == "decoder" and dec["parity_cases"] == 2
    assert dec["dynamic_axes"]["boxes"] == {"0": "num_boxes"}


def test_refuses_to_overwrite_then_force(tmp_path):
    model = load_model("tiny_litemedsam")
    export_fp32(model, ExportSpec("tiny_litemedsam"), tmp_path)
    first = sha256_file(tmp_path / "encoder.onnx")
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        export_fp32(model, ExportSpec("tiny_litemedsam"), tmp_path)
    assert sha256_file(tmp_path / "encoder.onnx") == first
    export_fp32(model, ExportSpec("tiny_litemedsam"), tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "decoder.onnx", "decoder.onnx.json", "encoder.onnx", "encoder.onnx.json"]


def test_tampered_onnx_is_detected_by_its_sidecar(tmp_path, tiny_onnx):
    import shutil

    for name in ("encoder.onnx", "encoder.onnx.json"):
        shutil.copy(tiny_onnx / name, tmp_path / name)
    data = bytearray((tmp_path / "encoder.onnx").read_bytes())
    data[-1] ^= 0x01
    (tmp_path / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        read_sidecar(tmp_path / "encoder.onnx")
    (tmp_path / "encoder.onnx.json").write_text(json.dumps({"sha256": "x"})[:5])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_sidecar(tmp_path / "encoder.onnx")


@pytest.mark.parametrize("name", ["tiny_mobile_sam", "tiny_sam_vit"])
def test_other_architectures_export(tmp_path, name):
    result = export_fp32(load_model(name), ExportSpec(name), tmp_path)
    assert result["encoder_parity"] < 1e-4 and result["decoder_parity"] < 1e-4


def test_shape_inference_leaves_the_working_directory_alone(tmp_path, monkeypatch):
    """onnxruntime's symbolic inference saves its partial model into the working directory
    where it cannot finish (here: an op it does not know); trtq gives it a private one."""
    from onnx import TensorProto, helper

    from trtq.export.onnx_graph import resolved_shapes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Foo", ["r"], ["y"], domain="custom")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17),
                                             helper.make_opsetid("custom", 1)])
    monkeypatch.chdir(tmp_path)
    shapes = resolved_shapes(model)
    assert shapes["r"] == (1, 4)
    assert list(tmp_path.iterdir()) == []
