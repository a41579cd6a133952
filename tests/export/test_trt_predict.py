"""`trtq.export.trt_predict`: verdicts on hand-built Q/DQ graphs, and agreement with the layer
precisions and fusions of real TensorRT engines (the trt-engine-explorer ResNet-18 engines,
distilled into tests/data/trt_engine_explorer_resnet.json)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtq.cli import main
from trtq.export.trt_predict import FP16, INT8, INT8_FLOAT_OUT, MIXED, predict

ENGINES = Path(__file__).resolve().parents[1] / "data" / "trt_engine_explorer_resnet.json"


class _Builder:
    """A few helpers over onnx.helper. A node is named `names[key]` when given, else `name`,
    else numbered as the PyTorch exporter numbers nodes (`Conv_0`, `Relu_1`, ...)."""

    def __init__(self, names: dict | None = None) -> None:
        self.nodes, self.inits, self.names = [], [], names or {}
        self.counter = itertools.count()
        self.rng = np.random.default_rng(0)

    def const(self, name: str, array) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], name=None, key=None, **attrs) -> str:
        number = next(self.counter)
        name = self.names.get(key) or name or f"{op_type}_{number}"
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}:0"], name=name, **attrs))
        return f"{name}:0"

    def qdq(self, x: str, module: str, kind: str = "act") -> str:
        scale = self.const(f"{module}/{kind}/scale", np.float32(0.05))
        zero = self.const(f"{module}/{kind}/zero", np.int8(0))
        q = self.op("QuantizeLinear", [x, scale, zero], f"{module}/{kind}_q",
                    key=("QuantizeLinear", kind, module))
        return self.op("DequantizeLinear", [q, scale, zero], f"{module}/{kind}_dq",
                       key=("DequantizeLinear", kind, module))

    def weight(self, module: str, shape: tuple[int, ...], quantized: bool, axis: int = 0) -> str:
        """A float weight, per-channel Q → DQ on `axis` (its output channels) if `quantized`."""
        w = self.const(f"{module}.weight", self.rng.normal(0, 0.1, shape).astype(np.float32))
        if not quantized:
            return w
        channels = shape[axis]
        scale = self.const(f"{module}/w/scale", np.full(channels, 0.01, np.float32))
        zero = self.const(f"{module}/w/zero", np.zeros(channels, np.int8))
        q = self.op("QuantizeLinear", [w, scale, zero], f"{module}/w_q", axis=axis)
        return self.op("DequantizeLinear", [q, scale, zero], f"{module}/w_dq", axis=axis)

    def model(self, inputs: dict[str, list[int]], outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model = onnx.shape_inference.infer_shapes(model)  # gives the outputs their shapes
        onnx.checker.check_model(model)
        return model


# -- hand-built graphs ------------------------------------------------------------------------
def _attention(tokens: int = 196, head: int = 32, softmax_out: str = "qdq",
               bmm2_out_qdq: bool = True) -> onnx.ModelProto:
    """q, k, v [1, 2 heads, tokens, head] → Q/DQ → MatMul(q, kᵀ) → Mul(scale) → Softmax →
    (Q/DQ | a Log-based stand-in for the log2 quantizer | nothing) → MatMul(·, v) →
    Transpose/Reshape → (Q/DQ) →
    proj MatMul (INT8 weight)."""
    b = _Builder()
    q = b.qdq("q", "bmm1.q")
    k = b.qdq(b.op("Transpose", ["k"], "kT", perm=[0, 1, 3, 2]), "bmm1.k")
    scores = b.op("MatMul", [q, k], "bmm1")
    scores = b.op("Mul", [scores, b.const("scale", np.float32(head ** -0.5))], "scale")
    probs = b.op("Softmax", [scores], "softmax", axis=-1)
    if softmax_out == "qdq":
        probs = b.qdq(probs, "bmm2.p")
    elif softmax_out == "log2":
        log = b.op("Log", [b.op("Max", [probs, b.const("eps", np.float32(1e-30))], "max")],
                   "log")
        probs = b.op("Exp", [b.op("Round", [log], "round")], "exp")
    out = b.op("MatMul", [probs, b.qdq("v", "bmm2.v")], "bmm2")
    out = b.op("Reshape", [b.op("Transpose", [out], "merge", perm=[0, 2, 1, 3]),
                           b.const("shape", np.array([1, tokens, 2 * head]))], "flat")
    if bmm2_out_qdq:
        out = b.qdq(out, "proj")
    out = b.op("MatMul", [out, b.weight("proj", (2 * head, 2 * head), True, axis=1)], "proj")
    shape = [1, 2, tokens, head]
    return b.model({"q": shape, "k": shape, "v": shape}, [out])


def test_fully_quantized_attention_with_196_tokens_and_head_32_is_int8_mha():
    block, = predict(_attention()).attention
    assert (block.head_size, block.s_q, block.s_kv) == (32, 196, 196)
    assert block.int8_mha and block.fp16_mha and block.reasons == []
    assert block.notes == ["scaled after BMM1 (current TensorRT docs want Q pre-scaled)"]


def test_4096_tokens_are_too_many_for_int8_mha():
    block, = predict(_attention(tokens=4096)).attention
    assert not block.int8_mha and block.fp16_mha
    assert block.reasons == ["4096 tokens > 512 (S_q)", "4096 tokens > 512 (S_kv)"]


def test_head_size_80_is_not_int8_mha_but_fp16_mha():
    block, = predict(_attention(head=80)).attention
    assert block.reasons == ["head size 80 (INT8 MHA needs 16, 32 or 64)"]
    assert not block.int8_mha and block.fp16_mha


@pytest.mark.parametrize("form", ["log2", "float"])
def test_unquantized_softmax_output_blocks_int8_mha(form):
    prediction = predict(_attention(softmax_out=form))
    block, = prediction.attention
    assert block.reasons == [f"softmax output not quantized ({form})"]
    # BMM2 then has a float input and a dequantized V: it runs in float and V's DQ is a
    # standalone dequantize
    assert prediction.layer("bmm2").verdict == MIXED
    assert [(s.node, s.kind) for s in prediction.standalone if s.avoidable] == \
        [("bmm2.v/act_dq", "mixed-mac")]


def test_missing_qdq_after_bmm2_blocks_int8_mha():
    prediction = predict(_attention(bmm2_out_qdq=False))
    assert prediction.attention[0].reasons == ["no Q/DQ after BMM2"]
    assert prediction.layer("bmm2").verdict == INT8_FLOAT_OUT
    assert prediction.layer("proj").verdict == FP16  # weight-only Q/DQ


def test_inspect_predict_prints_the_summary_and_writes_the_detail(tmp_path, capsys):
    onnx.save(_attention(), str(tmp_path / "attn.onnx"))
    out = tmp_path / "inspect.json"
    assert main(["inspect", "--onnx", str(tmp_path / "attn.onnx"), "--predict",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # BMM1 feeds the float softmax; proj feeds the graph output
    assert "predicted TensorRT execution: 3 Conv/MatMul layers: int8-in/float-out 2 (57.0% of " \
        "MACs), int8 1 (43.0% of MACs)" in printed
    assert "attention: fusable as INT8 MHA 1 of 1, FP16 MHA head size fits 1 of 1" in printed
    assert ["softmax", "32", "196", "196", "yes"] in [line.split() for line in printed.splitlines()]
    # the q, k, v inputs' Qs; the Q after softmax is inside the fused MHA kernel
    assert "standalone Q/DQ reformats: 3 (0 avoidable by placement)" in printed
    prediction = json.loads(out.read_text())["prediction"]
    assert prediction["summary"]["int8_mha"] == 1
    assert {row["node"]: row["verdict"] for row in prediction["layers"]} == \
        {"bmm1": INT8_FLOAT_OUT, "bmm2": INT8, "proj": INT8_FLOAT_OUT}


def test_inspect_predict_needs_an_onnx_graph(capsys):
    assert main(["inspect", "--recipe", "w8a8", "--predict"]) == 2
    assert "--onnx FILE --predict" in capsys.readouterr().err


def _conv(act_qdq: bool, weight_qdq: bool, out_qdq: bool) -> onnx.ModelProto:
    b = _Builder()
    x = b.qdq("x", "conv") if act_qdq else "x"
    y = b.op("Conv", [x, b.weight("conv", (8, 4, 3, 3), weight_qdq)], "conv", pads=[1] * 4)
    y = b.op("Relu", [y], "relu")
    if out_qdq:
        y = b.qdq(y, "next")
    return b.model({"x": [1, 4, 16, 16]}, [y])


def test_conv_with_dq_on_both_inputs_is_int8_and_macs_are_counted():
    prediction = predict(_conv(True, True, True))
    layer = prediction.layer("conv")
    assert (layer.verdict, layer.output, layer.fused) == (INT8, "int8", ["relu"])
    assert layer.macs == 8 * 16 * 16 * 4 * 9
    assert prediction.summary()["mac_share"] == {INT8: 1.0}
    # the graph input's Q is a reformat; the output's Q fuses into the conv
    assert [(s.kind, s.avoidable) for s in prediction.standalone] == [("input", False)]


def test_conv_output_to_a_float_consumer_is_int8_in_float_out():
    layer = predict(_conv(True, True, False)).layer("conv")
    assert (layer.verdict, layer.output) == (INT8_FLOAT_OUT, "float")


def test_unquantized_and_pinned_convs():
    assert predict(_conv(False, False, False)).layer("conv").verdict == FP16
    assert predict(_conv(False, True, False)).layer("conv").reason.startswith("weight-only")
    pinned = predict(_conv(True, True, True), float_layers={"conv"})
    assert pinned.layer("conv").verdict == "float-forced"
    assert [s.kind for s in pinned.standalone] == ["input", "mixed-mac", "float-producer"]


def test_matmul_with_one_dequantized_input_is_reported_as_a_reformat():
    b = _Builder()
    y = b.op("MatMul", [b.qdq("a", "mm.a"), "b"], "mm")
    prediction = predict(b.model({"a": [1, 8, 16], "b": [1, 16, 8]}, [y]))
    assert prediction.layer("mm").verdict == MIXED
    issue, = prediction.summary()["unfusable"]
    assert (issue["node"], issue["kind"]) == ("mm.a/act_dq", "mixed-mac")
    assert "input 1 is float" in issue["reason"]


def test_dq_feeding_only_layernorm_is_a_round_trip():
    b = _Builder()
    y = b.op("LayerNormalization", [b.qdq("x", "ln"), b.const("g", np.ones(8, np.float32))],
             "ln")
    issue, = predict(b.model({"x": [1, 4, 8]}, [y])).summary()["unfusable"]
    assert issue["kind"] == "dq-float-consumer" and "LayerNormalization" in issue["reason"]


def test_qdq_on_one_branch_of_an_add():
    b = _Builder()
    y = b.op("Add", [b.qdq("x", "add"), b.op("Relu", ["z"], "relu")], "add")
    issue, = predict(b.model({"x": [1, 8], "z": [1, 8]}, [y])).summary()["unfusable"]
    assert issue["kind"] == "one-branch"


# -- the real engines: trt-engine-explorer's ResNet-18 on an A100 -------------------------------
STAGES = (("layer1", 8, 1), ("layer2", 16, 2), ("layer3", 16, 2), ("layer4", 16, 2))


def _block_of(module: str) -> str:
    return ".".join(module.split(".")[:2])  # layer2.0.downsample.0 → layer2.0


def _engine_names(layers: list[dict]) -> dict:
    """Names of the ONNX nodes behind the engine's layers, by role: ("Conv", module),
    ("Add"/"Relu", block), and (op, "act"/"residual", module) for the Q/DQ layers that run as
    standalone reformats (found by following their output tensor to the layer it feeds)."""
    names, feeds = {}, {}
    for layer in layers:
        for index, (tensor, _) in enumerate(layer["inputs"]):
            feeds.setdefault(tensor, (layer, index))  # the first layer reading it
    for layer in layers:
        fused = layer["fused"]
        if not fused[0].endswith(".weight"):
            continue
        module = fused[0].removesuffix(".weight")
        for item in fused:
            op = item.split("_")[0]
            if op in ("Conv", "Gemm"):
                names[("Conv", module)] = item
            elif op in ("Add", "Relu") and "Add" in " ".join(fused):
                names[(op, _block_of(module))] = item
    for layer in layers:
        op = layer["name"].split("_")[0]
        if layer["type"] != "Reformat" or op not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        target, index = feeds[layer["outputs"][0][0]]
        while target["type"] in ("NoOp", "Reformat"):  # copy nodes in between
            target, index = feeds[target["outputs"][0][0]]
        module = target["fused"][0].removesuffix(".weight")
        key = (op, "act", module) if index == 0 else (op, "residual", _block_of(module))
        names[key] = layer["name"]
    return names


def _resnet18(variant: str, names: dict) -> onnx.ModelProto:
    """ResNet-18 (BasicBlocks [2, 2, 2, 2], narrow) with the Q/DQ placement of the engine
    explorer's variants: fp16 (none; BatchNorm folded), qat (pytorch-quantization QuantConv2d
    and QuantLinear: Q/DQ on each weighted layer's input and weight), qat-residual (plus a
    quantizer on each block's identity branch), qat-residual-qgap (plus one before
    GlobalAveragePool)."""
    b, quant = _Builder(names), variant != "fp16"

    def label(text):  # fp16's nodes are numbered as in its engine; the others are named
        return text if quant else None

    def conv(x, module, cin, cout, kernel=3, stride=1):
        x = b.qdq(x, module) if quant else x
        y = b.op("Conv", [x, b.weight(module, (cout, cin, kernel, kernel), quant),
                          b.const(f"{module}.bias", np.zeros(cout, np.float32))],
                 label(f"{module}/Conv"), key=("Conv", module), pads=[kernel // 2] * 4,
                 strides=[stride] * 2, kernel_shape=[kernel] * 2)
        if quant:  # BatchNorm stays in the QAT exports (TensorRT fuses it)
            stats = [b.const(f"{module}.bn.{k}", np.full(cout, v, np.float32))
                     for k, v in (("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0))]
            y = b.op("BatchNormalization", [y, *stats], f"{module}/bn")
        return y

    x = b.op("Relu", [conv("input.1", "conv1", 3, 8, kernel=7, stride=2)], label("conv1/relu"))
    x = b.op("MaxPool", [x], label("maxpool"), kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    cin = 8
    for stage, cout, stride in STAGES:
        for i in range(2):
            block, s = f"{stage}.{i}", stride if i == 0 else 1
            h = b.op("Relu", [conv(x, f"{block}.conv1", cin, cout, stride=s)],
                     label(f"{block}/relu1"))
            h = conv(h, f"{block}.conv2", cout, cout)
            identity = x
            if s != 1 or cin != cout:
                identity = conv(x, f"{block}.downsample.0", cin, cout, kernel=1, stride=s)
            if variant.startswith("qat-residual"):
                identity = b.qdq(identity, block, "residual")
            x = b.op("Add", [h, identity], label(f"{block}/add"), key=("Add", block))
            x = b.op("Relu", [x], label(f"{block}/relu2"), key=("Relu", block))
            cin = cout
    if variant == "qat-residual-qgap":
        x = b.qdq(x, "gap")
    x = b.op("GlobalAveragePool", [x], label("gap"))
    x = b.op("Flatten", [x], label("flatten"))
    x = b.qdq(x, "fc") if quant else x
    y = b.op("Gemm", [x, b.weight("fc", (10, cin), quant), b.const("fc.bias", np.zeros(10,
              np.float32))], label("fc/Gemm"), key=("Conv", "fc"), transB=1)
    return b.model({"input.1": [1, 3, 64, 64]}, [y])


def _engine_facts(layers: list[dict]) -> tuple[dict, set[str]]:
    """Per weighted engine layer (by its ONNX Conv/Gemm node): (compute, output, residual
    input precision, fused Add); and the Q/DQ nodes that run as standalone reformats."""
    facts, standalone = {}, set()
    kind = {"int8": "int8", "fp16": "float", "fp32": "float"}
    for layer in layers:
        macs = [f for f in layer["fused"] if f.startswith(("Conv_", "Gemm_"))]
        if macs and layer["type"] in ("CaskConvolution", "ConvActPool"):
            add = next((f for f in layer["fused"] if f.startswith("Add_")), None)
            ins = layer["inputs"]
            facts[macs[0]] = (kind[ins[0][1]], kind[layer["outputs"][0][1]],
                              kind[ins[1][1]] if add else None, add)
        elif layer["type"] == "Reformat" and layer["name"].startswith(("QuantizeLinear_",
                                                                         "DequantizeLinear_")):
            standalone.add(layer["name"])
    return facts, standalone


def _agreement(variant: str, layers: list[dict]) -> tuple[int, int, list[str]]:
    """(agreeing, comparable, disagreements) between the prediction and the engine."""
    prediction = predict(_resnet18(variant, _engine_names(layers)))
    facts, standalone = _engine_facts(layers)
    disagree = []
    for node, engine in facts.items():
        layer = prediction.layer(node)
        add = next((f for f in layer.fused if f.startswith("Add_")), None)
        mine = ("int8" if layer.verdict in (INT8, INT8_FLOAT_OUT) else "float", layer.output,
                layer.residual, add)
        if mine != engine:
            disagree.append(f"{node}: predicted {mine}, engine {engine}")
    predicted = {s.node for s in prediction.standalone}
    disagree += [f"{n}: standalone in {'prediction' if n in predicted else 'engine'} only"
                 for n in sorted(predicted ^ standalone)]
    total = len(facts) + len(predicted | standalone)
    return total - len(disagree), total, disagree


@pytest.fixture(scope="module")
def engines() -> dict:
    return json.loads(ENGINES.read_text())


@pytest.mark.parametrize("variant, comparable",
                         [("fp16", 21), ("qat", 31), ("qat-residual", 24),
                          ("qat-residual-qgap", 22)])
def test_prediction_agrees_with_the_real_engine(engines, variant, comparable, capsys):
    agree, total, disagree = _agreement(variant, engines["variants"][variant]["layers"])
    with capsys.disabled():
        print(f"\n{variant}: {agree} of {total} comparable layers agree with TensorRT's engine")
    assert total == comparable and disagree == []


def test_engine_facts_show_the_documented_residual_rule(engines):
    """What the fixture holds: in qat (residual Add not quantized) every block's fused
    conv+Add outputs float and the next block's Q is a reformat; with the residual quantized
    the fused conv+Add outputs INT8."""
    qat, _ = _engine_facts(engines["variants"]["qat"]["layers"])
    res, _ = _engine_facts(engines["variants"]["qat-residual"]["layers"])
    assert [f[1:3] for f in qat.values() if f[3]] == [("float", "float")] * 8
    assert [f[1:3] for f in res.values() if f[3]] == [("int8", "int8")] * 7 + [("float", "float")]
