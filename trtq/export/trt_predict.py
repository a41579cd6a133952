"""Predict how TensorRT will execute a Q/DQ ONNX graph, from its documented fusion rules.

No TensorRT is needed: the prediction reads the graph's Q/DQ placement and applies the rules
below, each a table or a small function with its source. It is conservative: where the rules
do not say what TensorRT does, the layer is predicted to run in float, and the reasons say why.

Sources: the TensorRT developer guide, "Explicit Quantization" (Q/DQ fusion, Q/DQ propagation
and "Q/DQ Layer-Placement Recommendations"); TENSORRT.md §1.5 (placement), §1.6 (fused MHA)
and §10 (INT8 slower than FP16); the engine graphs of the Q/DQ ResNets in TensorRT's
trt-engine-explorer examples (A100, tags ≤ v10.8.0), which tests/export/test_trt_predict.py
checks the prediction against.

Per Conv/ConvTranspose/MatMul/Gemm (`LayerVerdict`):
- `int8`: both inputs come from DequantizeLinear (the DQs fuse into the layer) and its output,
  after the pointwise epilogue TensorRT fuses into it (`EPILOGUE_OPS`, a bias or scale with a
  constant operand, one residual Add), feeds QuantizeLinear only: the Q fuses too.
- `int8-in/float-out`: INT8 inputs, float output: the output (or the fused epilogue) has a
  float consumer, or the fused residual Add's other input is float (developer guide: the
  precision of the Add's other input limits the fused output to float).
- `mixed`: one activation input dequantized, the other float: the layer runs in float and the
  INT8 input costs a standalone dequantize.
- `fp16`: no Q/DQ on the inputs (or on the weight only): the builder's float precision.
- `float-forced`: named in the caller's set of layers pinned to FP32.

A residual Add fed straight by two weighted layers fuses into the later one (seen in every
ResNet engine of the engine explorer: the downsample conv takes the Add).

Standalone Q/DQ (`StandaloneQdq`): a Q fuses into the layer producing its input when that
layer's output is INT8, or into an INT8 quantizable op (`QUANTIZABLE_OPS` with all inputs
dequantized); Q/DQ move through `COMMUTING_OPS`. Every other Q or DQ is a reformat layer of its
own; `kind` says which rule made it so and `avoidable` whether a placement change removes it.

Attention (`AttentionBlock`): MatMul(Q, Kᵀ) → pointwise (scale, bias) → Softmax → MatMul(·, V),
checked against TENSORRT.md §1.6 by `INT8_MHA_RULES`, and the FP16 head-size rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import onnx

from trtq.export.onnx_graph import Graph, resolved_shapes
from trtq.export.qdq_lint import MAC_OPS, node_macs

Q, DQ = "QuantizeLinear", "DequantizeLinear"
INT8, INT8_FLOAT_OUT, MIXED, FP16, FORCED = (
    "int8", "int8-in/float-out", "mixed", "fp16", "float-forced")

# Pointwise ops TensorRT fuses into the output of a convolution or GEMM (developer guide:
# BatchNorm and ReLU fuse, "do not simulate" them; the engine explorer fuses Conv+BN+ReLU).
EPILOGUE_OPS = ("Relu", "Clip", "LeakyRelu", "BatchNormalization")
# These fuse into the epilogue when their other operand is a constant (bias, scale).
CONSTANT_OPERAND_OPS = ("Add", "Sub", "Mul", "Div")
# Layers Q/DQ propagate through ("commuting" layers of the developer guide's Q/DQ
# propagation: DQ moves forward, Q backward; the engine explorer fuses MaxPool into an INT8
# conv when every consumer of its output is a Q).
COMMUTING_OPS = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool")
# Ops with INT8 implementations when every input is dequantized (developer guide figures:
# AveragePool and element-wise Add fused with their input DQs and output Q; the engine
# explorer's qat-residual-qgap runs GlobalAveragePool in INT8).
QUANTIZABLE_OPS = ("Add", "AveragePool", "GlobalAveragePool")
# Kinds of standalone Q/DQ that a different Q/DQ placement removes.
AVOIDABLE_KINDS = ("float-output", "residual-dq", "mixed-mac", "one-branch", "dq-float-consumer")

# Fused MHA (TENSORRT.md §1.6, TensorRT developer guide "MHA fusion").
INT8_MHA_HEAD_SIZES = (16, 32, 64)
INT8_MHA_MAX_TOKENS = 512
FP16_MHA_HEAD_RANGE = (16, 256)
ATTENTION_WALK = 64  # nodes searched between Softmax and the MatMuls around it


@dataclass
class LayerVerdict:
    node: str
    op_type: str
    verdict: str
    output: str  # "int8" or "float"
    reason: str
    macs: int = 0
    fused: list[str] = field(default_factory=list)  # epilogue nodes TensorRT fuses into it
    residual: str | None = None  # precision of a fused residual Add's other input


@dataclass
class StandaloneQdq:
    node: str
    op_type: str
    kind: str
    reason: str

    @property
    def avoidable(self) -> bool:
        return self.kind in AVOIDABLE_KINDS


@dataclass
class AttentionBlock:
    softmax: str
    bmm1: str
    bmm2: str
    head_size: int | None
    s_q: int | None
    s_kv: int | None
    int8_mha: bool
    fp16_mha: bool
    reasons: list[str] = field(default_factory=list)  # why not INT8 fused MHA
    notes: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    layers: list[LayerVerdict]
    standalone: list[StandaloneQdq]
    attention: list[AttentionBlock]

    def layer(self, node: str) -> LayerVerdict:
        return next(v for v in self.layers if v.node == node)

    def summary(self) -> dict:
        total = sum(v.macs for v in self.layers)
        counts = Counter(v.verdict for v in self.layers)
        macs = Counter()
        for v in self.layers:
            macs[v.verdict] += v.macs
        avoidable = [s for s in self.standalone if s.avoidable]
        return {"layers": len(self.layers), "verdicts": dict(counts),
                "mac_share": {k: (macs[k] / total if total else 0.0) for k in counts},
                "attention_blocks": len(self.attention),
                "int8_mha": sum(b.int8_mha for b in self.attention),
                "fp16_mha": sum(b.fp16_mha for b in self.attention),
                "standalone_qdq": len(self.standalone),
                "standalone_by_kind": dict(Counter(s.kind for s in self.standalone)),
                "unfusable": [{"node": s.node, "kind": s.kind, "reason": s.reason}
                              for s in avoidable]}

    def to_dict(self) -> dict:
        return {"summary": self.summary(),
                "layers": [asdict(v) for v in self.layers],
                "standalone_qdq": [asdict(s) | {"avoidable": s.avoidable}
                                   for s in self.standalone],
                "attention": [asdict(b) for b in self.attention]}


# -- graph walks ------------------------------------------------------------------------------
class _Graph(Graph):
    """A `Graph` that also knows which tensors TensorRT folds to constants at build time:
    initializers, Constant outputs, and the outputs of any node but Q/DQ whose inputs all
    fold (e.g. the Gather of a relative-position bias table). Weights are never loaded."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__(model)
        self.folded = set(self.initializers)
        for node in self.graph.node:
            inputs = [i for i in node.input if i]
            if node.op_type == "Constant" or (node.op_type not in (Q, DQ) and inputs
                                              and all(i in self.folded for i in inputs)):
                self.folded.update(node.output)


def _is_const(g: _Graph, name: str) -> bool:
    return name in g.folded


def _base(g: _Graph, name: str) -> str:
    """`name` traced back through commuting ops to the tensor they reshape or pool."""
    node = g.producer.get(name)
    while node is not None and node.op_type in COMMUTING_OPS:
        name = node.input[0]
        node = g.producer.get(name)
    return name


def _from_dq(g: _Graph, name: str) -> bool:
    producer = g.producer.get(_base(g, name))
    return producer is not None and producer.op_type == DQ


def _users(g: _Graph, name: str) -> list[onnx.NodeProto]:
    """Consumers of `name`, looking through commuting ops; Shape nodes read no data (TensorRT
    computes shapes apart) and are not consumers here."""
    found = []
    for user in g.consumers.get(name, []):
        if user.op_type in ("Shape", "Size"):
            continue
        if user.op_type in COMMUTING_OPS and user.input[0] == name:
            found += _users(g, user.output[0])
        else:
            found.append(user)
    return found


def _all_q(users: list[onnx.NodeProto]) -> bool:
    return bool(users) and all(u.op_type == Q for u in users)


def _others(g: _Graph, node: onnx.NodeProto, name: str) -> list[str]:
    """The non-constant inputs of `node` other than `name`."""
    rest = [i for i in node.input if i and i != name]
    return [i for i in rest if not _is_const(g, i)]


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _dq_of_constant(g: _Graph, name: str) -> bool:
    """`name` dequantizes a constant: an INT8 weight, or a float weight through Q → DQ."""
    dq = g.producer.get(_base(g, name))
    if dq is None or dq.op_type != DQ:
        return False
    source = dq.input[0]
    q = g.producer.get(source)
    return _is_const(g, source) or (q is not None and q.op_type == Q and _is_const(g, q.input[0]))


def _is_weight_qdq(g: _Graph, node: onnx.NodeProto) -> bool:
    if node.op_type == Q:
        return _is_const(g, node.input[0])
    return _dq_of_constant(g, node.output[0])


# -- weighted layers and their epilogues ------------------------------------------------------
@dataclass
class _Chain:
    """A weighted layer's output chain: the nodes TensorRT fuses into it, the tensor the chain
    ends in, and a fused residual Add with its other input."""
    fused: list[onnx.NodeProto]
    end: str
    add: onnx.NodeProto | None = None
    residual_input: str | None = None


def _epilogue(g: _Graph, node: onnx.NodeProto, owners: dict[str, str] | None) -> _Chain:
    """The output chain of `node`. With `owners` None, stop at the first residual Add (a
    candidate for fusion); else cross the Add only if `owners` gives it to `node`."""
    chain = _Chain([], node.output[0])
    while len(users := _users(g, chain.end)) == 1:
        user = users[0]
        others = _others(g, user, chain.end)
        if user.op_type in EPILOGUE_OPS or (user.op_type in CONSTANT_OPERAND_OPS and not others):
            pass
        elif user.op_type == "Add" and chain.add is None and len(others) == 1:
            if owners is None:
                chain.add = user
                return chain
            if owners.get(_name(user)) != _name(node):
                break
            chain.add, chain.residual_input = user, others[0]
        else:
            break
        chain.fused.append(user)
        chain.end = user.output[0]
    return chain


def _add_owners(g: _Graph, macs: list[onnx.NodeProto]) -> dict[str, str]:
    """Residual Add → the weighted layer it fuses into: the last one (in graph order) that
    feeds it through its epilogue."""
    owners = {}
    for node in macs:
        add = _epilogue(g, node, None).add
        if add is not None:
            owners[_name(add)] = _name(node)
    return owners


def _classify(g: _Graph, node, chain: _Chain, residual: str | None, pinned) -> tuple:
    """(verdict, output precision, reason) of one weighted layer."""
    dq = [_from_dq(g, name) for name in node.input[:2]]
    users = _users(g, chain.end)
    if _name(node) in pinned:
        return FORCED, "float", "pinned to FP32 by the caller"
    if all(dq):
        if residual == "float":
            return INT8_FLOAT_OUT, "float", (
                f"INT8 inputs; the other input of the fused {_name(chain.add)} is float, so "
                "the fused output stays float")
        if not _all_q(users):
            floats = sorted({u.op_type for u in users if u.op_type != Q}) or ["a graph output"]
            return INT8_FLOAT_OUT, "float", f"INT8 inputs; the output feeds {', '.join(floats)}"
        return INT8, "int8", "both inputs dequantized and the output quantized: the DQs and the Q "\
            "fuse into the layer"
    if any(dq):
        i = dq.index(True)
        if _dq_of_constant(g, node.input[i]):
            return FP16, "float", "weight-only Q/DQ: the weight is dequantized at build time and "\
                "the layer runs in float"
        return MIXED, "float", f"input {i} is dequantized but input {1 - i} is float: runs in "\
            "float; the INT8 input costs a standalone dequantize"
    return FP16, "float", "no Q/DQ on its inputs: runs in the builder's float precision (FP16 "\
        "with --fp16)"


def _layer(g: _Graph, node, owners: dict[str, str], pinned, shapes) -> tuple[LayerVerdict, _Chain]:
    chain = _epilogue(g, node, owners)
    residual = None
    if chain.add is not None:
        residual = "int8" if _from_dq(g, chain.residual_input) else "float"
    verdict, output, reason = _classify(g, node, chain, residual, pinned)
    if residual == "int8" and output == "float":
        residual = "float"  # the residual DQ runs on its own: the Add gets it in float
    return LayerVerdict(_name(node), node.op_type, verdict, output, reason,
                        node_macs(node, shapes), [_name(n) for n in chain.fused],
                        residual), chain


# -- standalone Q/DQ --------------------------------------------------------------------------
def _q_issue(g: _Graph, base: str, ends: dict[str, LayerVerdict]) -> tuple[str, str] | None:
    """(kind, reason) when the Qs of tensor `base` cannot fuse into its producer, else None."""
    producer = g.producer.get(base)
    if producer is None:
        return "input", f"quantizes the network input {base}: a standalone quantize"
    if base in ends:
        layer = ends[base]
        if layer.output == "int8":
            return None
        if layer.verdict == INT8_FLOAT_OUT:
            return "float-output", (f"{layer.node} runs in INT8 but its output stays float "
                                    f"({layer.reason.split('; ', 1)[1]}); this Q requantizes it "
                                    "in a standalone layer")
        return "float-producer", f"its input comes from {layer.node}, which runs in float"
    if producer.op_type in QUANTIZABLE_OPS and _all_q(_users(g, base)) and \
            all(_from_dq(g, i) for i in _others(g, producer, "")):
        return None  # an INT8 pooling or element-wise layer
    return "float-producer", (f"its input comes from {producer.op_type} {_name(producer)}, which "
                              "runs in float: a standalone quantize unless TensorRT fuses it into "
                              "that op's kernel")


def _dq_user_issue(g: _Graph, user, layers: dict[str, LayerVerdict],
                   add_owner: dict[str, LayerVerdict]) -> tuple[str, str] | None:
    """(kind, reason) when a DQ cannot fuse into `user`, one of its consumers."""
    if user.op_type in MAC_OPS:
        layer = layers[_name(user)]
        if layer.verdict in (INT8, INT8_FLOAT_OUT):
            return None
        return "mixed-mac", f"feeds {user.op_type} {layer.node}, {layer.verdict}: {layer.reason}"
    if _name(user) in add_owner:
        layer = add_owner[_name(user)]
        if layer.output == "int8":
            return None
        return "residual-dq", (f"residual input of {_name(user)}, fused into {layer.node} whose "
                               "output stays float: dequantized in a standalone layer")
    if user.op_type == Q:
        return None  # a requantization
    if user.op_type in QUANTIZABLE_OPS:
        if all(_from_dq(g, i) for i in _others(g, user, "")):
            return None
        return "one-branch", (f"Q/DQ on one input of {user.op_type} {_name(user)} only: the other "
                              "is float, so it runs in float and this DQ is a standalone "
                              "dequantize")
    return "dq-float-consumer", (f"feeds {user.op_type} {_name(user)}, which has no INT8 "
                                 "implementation: the Q/DQ pair is a quantize-dequantize round "
                                 "trip")


def _standalone(g: _Graph, layers: dict[str, tuple[LayerVerdict, _Chain]]) -> list[StandaloneQdq]:
    ends = {chain.end: layer for layer, chain in layers.values()}
    add_owner = {_name(chain.add): layer for layer, chain in layers.values() if chain.add}
    verdicts = {name: layer for name, (layer, _) in layers.items()}
    found, quantized = [], set()
    for node in g.graph.node:
        if node.op_type not in (Q, DQ) or _is_weight_qdq(g, node):
            continue
        if node.op_type == Q:
            base = _base(g, node.input[0])
            if base in quantized:
                continue  # TensorRT merges the Qs of one tensor
            quantized.add(base)
            issue = _q_issue(g, base, ends)
        else:
            issues = [i for u in _users(g, node.output[0])
                      if (i := _dq_user_issue(g, u, verdicts, add_owner))]
            issue = issues[0] if issues else None
        if issue is not None:
            found.append(StandaloneQdq(_name(node), node.op_type, *issue))
    return found


# -- attention --------------------------------------------------------------------------------
def _bmm1(g: _Graph, name: str) -> tuple[onnx.NodeProto | None, list[onnx.NodeProto]]:
    """The activation×activation MatMul upstream of a Softmax input, and the nodes between."""
    stack, between = [name], []
    while stack and len(between) < ATTENTION_WALK:
        node = g.producer.get(stack.pop())
        if node is None or node.op_type in ("Softmax", "Conv", "ConvTranspose", "Gemm"):
            continue
        if node.op_type == "MatMul":
            if not any(_is_const(g, i) or _dq_of_constant(g, i) for i in node.input):
                return node, between
            continue
        between.append(node)
        stack += [i for i in node.input if i and not _is_const(g, i)]
    return None, between


def _bmm2(g: _Graph, name: str) -> tuple[onnx.NodeProto | None, list[onnx.NodeProto]]:
    """The MatMul downstream of a Softmax output taking it as its first input, and the nodes
    between (a Q/DQ pair, or a log2 quantizer)."""
    queue, between = [name], []
    while queue and len(between) < ATTENTION_WALK:
        tensor = queue.pop(0)
        for user in g.consumers.get(tensor, []):
            if user.op_type == "MatMul" and user.input[0] == tensor:
                return user, between
            if user.op_type not in ("Softmax", *MAC_OPS):
                between.append(user)
                queue += list(user.output)
    return None, between


def _dim(shape: tuple[int, ...] | None, axis: int) -> int | None:
    """A known dimension, else None (`predict` infers unknown dimensions as 0)."""
    return shape[axis] or None if shape is not None and len(shape) >= 2 else None


def _tokens(n: int | None, which: str) -> str:
    return f"{which} unknown" if n is None else f"{n} tokens > {INT8_MHA_MAX_TOKENS} ({which})"


# (passes, reason when it does not) over an attention block's facts; TENSORRT.md §1.6.
INT8_MHA_RULES = (
    (lambda f: f["head_size"] in INT8_MHA_HEAD_SIZES,
     lambda f: f"head size {f['head_size'] or 'unknown'} (INT8 MHA needs 16, 32 or 64)"),
    (lambda f: f["s_q"] is not None and f["s_q"] <= INT8_MHA_MAX_TOKENS,
     lambda f: _tokens(f["s_q"], "S_q")),
    (lambda f: f["s_kv"] is not None and f["s_kv"] <= INT8_MHA_MAX_TOKENS,
     lambda f: _tokens(f["s_kv"], "S_kv")),
    (lambda f: f["bmm1_qdq"], lambda f: "Q and K are not both Q/DQ before BMM1"),
    (lambda f: f["softmax_output"] == "qdq",
     lambda f: f"softmax output not quantized ({f['softmax_output']})"),
    (lambda f: f["v_qdq"], lambda f: "V is not Q/DQ before BMM2"),
    (lambda f: f["bmm2_output_qdq"], lambda f: "no Q/DQ after BMM2"),
)


def _block(g: _Graph, shapes, softmax, bmm1, before, bmm2, after) -> AttentionBlock:
    q_shape, v_shape = shapes.get(bmm1.input[0]), shapes.get(bmm2.input[1])
    log2 = any(n.op_type in ("Log", "LogQuant") for n in after)
    facts = {"head_size": _dim(q_shape, -1), "s_q": _dim(q_shape, -2),
             "s_kv": _dim(v_shape, -2),
             "bmm1_qdq": all(_from_dq(g, i) for i in bmm1.input),
             "softmax_output": "log2" if log2 else
             ("qdq" if _from_dq(g, bmm2.input[0]) else "float"),
             "v_qdq": _from_dq(g, bmm2.input[1]),
             "bmm2_output_qdq": _all_q(_users(g, bmm2.output[0]))}
    reasons = [why(facts) for ok, why in INT8_MHA_RULES if not ok(facts)]
    head = facts["head_size"]
    low, high = FP16_MHA_HEAD_RANGE
    notes = []
    if any(n.op_type in ("Mul", "Div") and any(_is_const(g, i) for i in n.input)
           for n in before):
        notes.append("scaled after BMM1 (current TensorRT docs want Q pre-scaled)")
    notes += [f"{_name(n)} adds a bias or mask before softmax: look for an _mha kernel in the "
              "engine" for n in before if n.op_type == "Add"]
    return AttentionBlock(_name(softmax), _name(bmm1), _name(bmm2), head, facts["s_q"],
                          facts["s_kv"], not reasons,
                          head is not None and low <= head <= high and head % 8 == 0,
                          reasons, notes)


def _attention(g: _Graph, shapes) -> tuple[list[AttentionBlock], set[str]]:
    """The attention blocks, and the Q/DQ nodes that an INT8 fused MHA kernel absorbs (those
    between its softmax and BMM2)."""
    blocks, absorbed = [], set()
    for softmax in (n for n in g.graph.node if n.op_type == "Softmax"):
        bmm1, before = _bmm1(g, softmax.input[0])
        bmm2, after = _bmm2(g, softmax.output[0])
        if bmm1 is not None and bmm2 is not None:
            blocks.append(_block(g, shapes, softmax, bmm1, before, bmm2, after))
            if blocks[-1].int8_mha:
                absorbed |= {_name(n) for n in after if n.op_type in (Q, DQ)}
    return blocks, absorbed


def predict(model: onnx.ModelProto, float_layers: set[str] | frozenset[str] = frozenset()
            ) -> Prediction:
    """TensorRT's predicted execution of `model`; `float_layers`: names of nodes the build
    pins to FP32 (e.g. `trtq.engines.float_plan`'s), predicted `float-forced`."""
    g = _Graph(model)
    shapes = resolved_shapes(model, unknown=0)
    mac_shapes = {name: tuple(d or 1 for d in shape) for name, shape in shapes.items()}
    macs = [n for n in model.graph.node if n.op_type in MAC_OPS]
    owners = _add_owners(g, macs)
    layers = {_name(n): _layer(g, n, owners, float_layers, mac_shapes) for n in macs}
    attention, absorbed = _attention(g, shapes)
    standalone = [s for s in _standalone(g, layers) if s.node not in absorbed]
    return Prediction([layer for layer, _ in layers.values()], standalone, attention)
