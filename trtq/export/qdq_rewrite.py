"""Rewrites that make torch's Q/DQ export deployable.

torch writes every fake-quantized weight as `W → QuantizeLinear → DequantizeLinear`, with a
`Transpose` after the DQ for Linear layers exported as MatMul. This pass:

* folds that Transpose into the weight, so DQ feeds MatMul directly and the per-channel axis
  becomes 1 (the output-channel axis of an ONNX MatMul weight [K, N]);
* stores each weight as its simulated codes times its scale: the codes are those of the narrow
  [-127, 127] weight quantizer, computed with the simulation's arithmetic
  (`weight_codes`: x / scale, round half to even, saturate), so QuantizeLinear's [-128, 127]
  maps the stored weight back onto exactly the simulated codes, and a bias folded from the
  simulated weight (the shifted lowering) matches the exported weight;
* for the onnxruntime target, stores weights as INT8 initializers feeding DequantizeLinear
  (no QuantizeLinear on constants), the form onnxruntime fuses into integer kernels;
* gives the bias of each quantized MatMul the rank of the MatMul's output ([N] → [1, 1, N]),
  the same broadcast Add. onnxruntime's MatMulAddFusion turns a MatMul + 1-D bias Add into a
  float Gemm before its Q/DQ fusions run, leaving the integer kernel unused (measured: the
  TensorRT-target LiteMedSAM encoder at 0.80x FP32 in a default session); a full-rank bias is
  not fused, so the MatMul becomes MatMulIntegerToFloat in any onnxruntime session;
* for the TensorRT target (INT8 activations), gives each activation Q/DQ pair its own scale
  and zero-point initializers. torch shares one
  constant among every quantizer with the same value, so onnxruntime's common-subexpression pass
  merges the Q nodes of layers that read the same tensor (a decoder attention's q/k/v
  projections) into one Q feeding several DQs; its INT8→UINT8 activation conversion only
  handles a Q with one DQ, and on CPUs without INT8×INT8 kernels those MatMuls then stay float
  (measured: the TensorRT-target LiteMedSAM decoder ran 18 of 47 Q/DQ MatMuls in float, 1.06x
  FP32; with unshared constants all fuse, 1.24x). TensorRT reads the same values either way.
  The onnxruntime target's activations are UINT8 already: there the merged Q is one Q less
  (unshared, its decoder ran 8 more QuantizeLinear nodes and measured slower).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtq.export.onnx_graph import Graph, attribute


def weight_codes(weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The narrow INT8 codes of a weight, as `trtq.calib.qdq` computes them (float32)."""
    quotient = weight.astype(np.float32) / scale.astype(np.float32)
    return np.clip(np.round(quotient), -127, 127)


def _set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for index, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(value, name))
            return
    model.graph.initializer.append(numpy_helper.from_array(value, name))


def _set_axis(node: onnx.NodeProto, axis: int) -> None:
    for attr in node.attribute:
        if attr.name == "axis":
            attr.i = axis
            return
    node.attribute.append(helper.make_attribute("axis", axis))


def broadcast_scale(scale: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A scale shaped to multiply a rank-`ndim` weight quantized along `axis`."""
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis] = scale.size
    return scale.reshape(shape)


def _fold_transpose(model, g: Graph, q, dq, weight: np.ndarray) -> np.ndarray:
    """DQ → Transpose(1,0) → MatMul becomes DQ → MatMul on the transposed weight."""
    users = g.consumers.get(dq.output[0], [])
    if len(users) != 1 or users[0].op_type != "Transpose" or weight.ndim != 2:
        return weight
    transpose = users[0]
    if list(attribute(transpose, "perm", [1, 0])) != [1, 0]:
        return weight
    for user in g.consumers.get(transpose.output[0], []):
        for i, name in enumerate(user.input):
            if name == transpose.output[0]:
                user.input[i] = dq.output[0]
    model.graph.node.remove(transpose)
    axis = attribute(q, "axis", 1)
    if np.asarray(g.constant(q.input[1])).size > 1:
        _set_axis(q, 1 - axis)
        _set_axis(dq, 1 - axis)
    return weight.T.copy()


def rewrite_weights(model: onnx.ModelProto, target: str) -> int:
    """Apply the rewrites above in place; returns how many weights were rewritten."""
    count = 0
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        g = Graph(model)
        weight = g.constant(q.input[0])
        if weight is None or q.input[0] not in g.initializers:
            continue
        dqs = g.consumers.get(q.output[0], [])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
            continue
        dq = dqs[0]
        weight = _fold_transpose(model, g, q, dq, weight)
        scale = np.asarray(g.constant(q.input[1]), dtype=np.float32)
        axis = attribute(q, "axis", 1) if scale.size > 1 else 0
        axis = axis + weight.ndim if axis < 0 else axis
        s = broadcast_scale(scale, weight.ndim, axis)
        new_name = q.input[0] + "_qdq" if len(g.consumers[q.input[0]]) > 1 else q.input[0]
        codes = weight_codes(weight, s)
        if target == "onnxruntime":
            _set_initializer(model, new_name + "_int8", codes.astype(np.int8))
            dq.input[0] = new_name + "_int8"
            model.graph.node.remove(q)
        else:
            _set_initializer(model, new_name, (codes * s).astype(np.float32))
            q.input[0] = new_name
        count += 1
    if target == "tensorrt":
        unshare_activation_qparams(model)
    drop_unused_initializers(model)
    full_rank_biases(model)
    return count


def unshare_activation_qparams(model: onnx.ModelProto) -> int:
    """Give every activation Q → DQ pair private copies of its scale and zero point (see the
    module docstring); returns how many pairs were given copies."""
    g = Graph(model)
    count = 0
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        if g.is_constant(q.input[0]):
            continue
        dqs = g.consumers.get(q.output[0], [])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
            continue
        dq = dqs[0]
        if list(dq.input[1:]) != list(q.input[1:3]):
            continue
        shared = [name for name in q.input[1:3]
                  if name and len({id(n) for n in g.consumers[name]} - {id(q), id(dq)}) > 0]
        if not shared:
            continue
        for position, name in enumerate(q.input[1:3], start=1):
            if not name:
                continue
            private = f"{q.output[0]}_{'scale' if position == 1 else 'zero_point'}"
            _set_initializer(model, private, np.asarray(g.constant(name)))
            q.input[position] = private
            dq.input[position] = private
        count += 1
    _drop_unused_constants(model)
    return count


def _drop_unused_constants(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    for node in [n for n in model.graph.node if n.op_type == "Constant"]:
        if node.output[0] not in used:
            model.graph.node.remove(node)


def full_rank_biases(model: onnx.ModelProto) -> int:
    """Reshape each 1-D constant bias added to a Q/DQ MatMul's output to that output's rank
    (see the module docstring); returns how many were reshaped."""
    from trtq.export.onnx_graph import static_shapes

    g = Graph(model)
    try:
        ranks = {name: len(shape) for name, shape in static_shapes(model).items()}
    except ValueError:  # a model over protobuf's 2 GB limit has no in-memory shape inference
        return 0
    count = 0
    for add in [n for n in model.graph.node if n.op_type == "Add"]:
        for position, name in enumerate(add.input):
            other = add.input[1 - position]
            matmul = g.producer.get(other)
            if matmul is None or matmul.op_type != "MatMul" or name not in g.initializers:
                continue
            if not all(g.producer.get(i) is not None
                       and g.producer[i].op_type == "DequantizeLinear" for i in matmul.input):
                continue
            bias = g.constant(name)
            rank = ranks.get(other, 0)
            if bias.ndim != 1 or rank < 3 or len(g.consumers[name]) != 1:
                continue
            _set_initializer(model, name, bias.reshape((1,) * (rank - 1) + bias.shape))
            count += 1
            break
    return count


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove initializers no node reads (and their entries among the graph inputs, where
    older exporters list initializers)."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    dropped = {i.name for i in model.graph.initializer if i.name not in used}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    inputs = [v for v in model.graph.input if v.name not in dropped]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
