"""`trtq quantize-onnx` on a small float ONNX model with what real vision transformers hold:
a patch-embedding Conv with BatchNorm, LayerNorm, attention written as two activation MatMuls
around a Softmax, a GELU MLP, a ConvTranspose upsampling head; real images as calibration data.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from trtq.cli import main
from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq
from trtq.onnx_ptq.collect import macs_at_run_time
from trtq.onnx_ptq.sites import find_sites

SIZE = 32


class TinySaliency(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.bn = nn.BatchNorm2d(dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.up = nn.ConvTranspose2d(dim, 8, 4, 2, 1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, image):
        x = torch.relu(self.bn(self.patch(image)))
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(self.norm1(t)).reshape(b, h * w, 3, self.heads, -1).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        attn = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        t = t + self.proj((attn @ v).transpose(1, 2).reshape(b, h * w, c))
        t = t + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(t))))
        x = t.transpose(1, 2).reshape(b, c, h, w)
        return torch.sigmoid(self.head(torch.relu(self.up(x))))


def _export(path, external: bool = False) -> None:
    torch.manual_seed(0)
    net = TinySaliency().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(net, (torch.randn(1, 3, SIZE, SIZE),), str(path), opset_version=17,
                      input_names=["image"], output_names=["saliency"],
                      dynamic_axes={"image": {0: "batch"}, "saliency": {0: "batch"}},
                      dynamo=False)
    if external:
        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=True,
                        location=path.name + ".data", size_threshold=0)


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("qonnx") / "tiny.onnx"
    _export(path)
    return path


@pytest.fixture(scope="module")
def calib_images(tiny_coco):
    return tiny_coco / "train2017"


def _quantize(src, data, out, *extra) -> int:
    return main(["-q", "quantize-onnx", "--onnx", str(src), "--calib-data", str(data),
                 "--num-images", "4", "--mean", "0.485", "0.456", "0.406", "--std", "0.229",
                 "0.224", "0.225", "--out", str(out), *extra])


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def _images(tiny_coco, n: int = 3) -> np.ndarray:
    from trtq.data.images import load_rgb
    from trtq.onnx_ptq.feeds import ImageOptions, image_tensor

    options = ImageOptions(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    files = sorted((tiny_coco / "val2017").glob("*.jpg"))[:n]
    return np.concatenate([image_tensor(load_rgb(f), SIZE, SIZE, options) for f in files])


def test_sites_follow_tensorrt_placement(float_onnx):
    model = onnx.load(str(float_onnx))
    sites = find_sites(model)
    by_op = {}
    for site in sites:
        by_op.setdefault(site.op_type, []).append(site)
    weights = {s.op_type: s.axis for s in sites if s.weight}
    assert weights["Conv"] == 0 and weights["ConvTranspose"] == 1 and weights["MatMul"] == 1
    activation_matmuls = [s for s in by_op["MatMul"] if not s.weight
                          and s.quantizer.endswith("other_quantizer")]
    assert len(activation_matmuls) == 2  # Q·Kᵀ and A·V: both operands quantized
    names = {s.quantizer for s in sites}
    assert "qkv.input_quantizer" in names and "qkv.weight_quantizer" in names
    assert len(names) == len(sites)  # one quantizer per site


def test_tensorrt_target_is_lint_clean_fully_covered_and_close(float_onnx, calib_images,
                                                                tiny_coco, tmp_path):
    out = tmp_path / "q.onnx"
    assert _quantize(float_onnx, calib_images, out) == 0
    model = onnx.load(str(out))
    assert lint_qdq(model).errors == []
    macs = macs_at_run_time(onnx.load(str(float_onnx)), float_onnx,
                            {"image": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    coverage = int8_mac_coverage(model, macs)
    assert coverage.fraction == 1.0 and coverage.total_macs == sum(macs.values()) > 0
    ops = [n.op_type for n in model.graph.node]
    # LayerNorm, Softmax, GELU stay float: no Q/DQ reads their outputs except the GEMM inputs
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear")
    zero_points = [i for i in model.graph.initializer if i.name.endswith(".zero_point")]
    assert {onnx.helper.tensor_dtype_to_np_dtype(z.data_type) for z in zero_points} \
        == {np.dtype(np.int8)}
    x = _images(tiny_coco)
    want, got = _run(float_onnx, x), _run(out, x)
    assert got.shape == want.shape == (3, 1, SIZE // 2, SIZE // 2)
    assert np.abs(got - want).max() < 0.05
    assert ((got > 0.5) == (want > 0.5)).mean() > 0.97
    record = json.loads((tmp_path / "q.onnx.json").read_text())
    assert record["int8_mac_coverage"] == 1.0 and record["lint_errors"] == []
    assert record["calibration"]["samples"] == 4 and record["deployable"] is True


def test_onnxruntime_target_ships_integer_kernels_with_convolutions_float(float_onnx,
                                                                           calib_images,
                                                                           tiny_coco, tmp_path):
    out = tmp_path / "ort.onnx"
    assert _quantize(float_onnx, calib_images, out, "--target", "onnxruntime") == 0
    record = json.loads((tmp_path / "ort.onnx.json").read_text())
    assert record["float_by_target"] == 6  # 2 Conv + 1 ConvTranspose: input and weight each
    assert record["onnxruntime_optimized"]["max_rel_diff_vs_qdq"] <= 1e-4
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulIntegerToFloat" in ops or "QLinearMatMul" in ops
    x = _images(tiny_coco)
    assert ((_run(out, x) > 0.5) == (_run(float_onnx, x) > 0.5)).mean() > 0.97


def test_npz_calibration_data_keyed_by_input_name(float_onnx, tmp_path):
    data = tmp_path / "npz"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # without the batch axis: added
        np.savez(data / f"{i}.npz", image=rng.standard_normal((3, SIZE, SIZE)).astype(np.float32))
    assert _quantize(float_onnx, data, tmp_path / "q.onnx") == 0
    record = json.loads((tmp_path / "q.onnx.json").read_text())
    assert record["calibration"]["kind"] == "npz" and record["calibration"]["samples"] == 3
    np.savez(data / "3.npz", pixels=np.zeros((3, SIZE, SIZE), np.float32))
    assert _quantize(float_onnx, data, tmp_path / "q2.onnx", "--num-images", "8") == 2


def test_external_data_in_and_out(calib_images, tmp_path):
    src = tmp_path / "ext.onnx"
    _export(src, external=True)
    out = tmp_path / "out" / "q.onnx"
    assert _quantize(src, calib_images, out) == 0
    assert (out.parent / "q.onnx.data").is_file()
    record = json.loads((out.parent / "q.onnx.json").read_text())
    assert record["external_data"] == "q.onnx.data" and "q.onnx.data" in record["companions"]
    assert not list(tmp_path.glob(".ext.calib-*"))  # the temporary calibration graph is gone
    assert lint_qdq(onnx.load(str(out))).errors == []


def test_refusals_lose_nothing(float_onnx, calib_images, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    out.write_bytes(b"keep me")
    assert _quantize(float_onnx, calib_images, out) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert _quantize(float_onnx, calib_images, out, "--force") == 0
    assert _quantize(out, calib_images, tmp_path / "again.onnx") == 2  # already quantized
    assert "already quantized" in capsys.readouterr().err
    assert _quantize(float_onnx, calib_images, tmp_path / "x.onnx", "--recipe",
                     "w8a8-agq") == 2
    assert "log2" in capsys.readouterr().err
    # BIG needs attentions a model adapter names; an ONNX file's generic rules name none
    assert _quantize(float_onnx, calib_images, tmp_path / "x.onnx", "--recipe",
                     "w8a8-ptq4sam") == 2
    assert "folds BIG" in capsys.readouterr().err
    assert _quantize(float_onnx, tmp_path / "missing", tmp_path / "y.onnx") == 2
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()


def test_tensorrt_parses_and_builds_the_quantized_onnx(trt, float_onnx, calib_images,
                                                       tmp_path):
    from trtq.engines.tensorrt_api import build_serialized, parse_onnx

    out = tmp_path / "q.onnx"
    assert _quantize(float_onnx, calib_images, out) == 0
    plan = build_serialized(parse_onnx(out, trt))
    assert isinstance(plan, bytes) and len(plan) > 10_000


def test_unnamed_and_repeated_node_names_get_unique_names():
    from trtq.onnx_ptq.insert import name_nodes

    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [onnx.helper.make_node("Relu", ["x"], ["a"], name="n"),
             onnx.helper.make_node("Relu", ["a"], ["b"], name="n"),
             onnx.helper.make_node("Relu", ["b"], ["y"])]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [y]))
    name_nodes(model)
    assert [n.name for n in model.graph.node] == ["n", "Relu_1", "Relu_2"]


def test_recipe_rules_select_sites_by_op_type(float_onnx, calib_images, tmp_path):
    """A recipe file whose last rule keeps every ConvTranspose float (`module_type`), the rest
    w8a8: exactly the transposed convolution stays float."""
    from dataclasses import replace

    from trtq.recipes import QuantRule, get_recipe, save_recipe

    recipe = get_recipe("w8a8")
    recipe = replace(recipe, name="w8a8-float-upsampling",
                     rules=(*recipe.rules, QuantRule("*", None, module_type="ConvTranspose2d")))
    path = tmp_path / "recipe.json"
    save_recipe(recipe, str(path))
    out = tmp_path / "q.onnx"
    assert _quantize(float_onnx, calib_images, out, "--recipe", str(path)) == 0
    record = json.loads((tmp_path / "q.onnx.json").read_text())
    floats = [name for name, _ in record["largest_float_layers"]]
    assert len(floats) == 1 and floats[0].endswith("ConvTranspose")
    assert record["float_sites"] == ["up.input_quantizer", "up.weight_quantizer"]
    sites = find_sites(onnx.load(str(float_onnx)))
    types = {s.quantizer: s.module_types for s in sites}
    assert types["up.weight_quantizer"] == ("ConvTranspose", "ConvTranspose2d")
    assert types["qkv.input_quantizer"] == ("MatMul", "Linear")
    assert all(t == ("MatMul",) for q, t in types.items() if "matmul" in q)
