"""Run graphs that hold the `trtq::LogQuant` custom node in onnxruntime.

onnxruntime has no Python custom-op API of its own; onnxruntime-extensions provides one, for
ops in its domain `ai.onnx.contrib`. `prepare(model, options)` registers trtq's LogQuant there
(computed by `trtq.calib.logquant.log_fake_quant_numpy`, the same tables as the PyTorch
quantizer and the decomposed ONNX form), renames the nodes' domain in an in-memory copy and
returns the serialized copy for `InferenceSession`. The file on disk keeps domain `trtq`, which
is what TensorRT's plugin registry looks up.

onnxruntime-extensions hands float attributes to Python rounded to about 5 significant digits
(measured: 0.277589649 arrives as 0.27759), which would shift every level. The copy therefore
carries `scale` as the exact decimal string of the float32 attribute.
"""

from __future__ import annotations

from trtq.calib.logquant_onnx import DOMAIN, OP_TYPE
from trtq.errors import BackendError

_REGISTERED = False


def has_logquant_nodes(model) -> bool:
    return any(n.domain == DOMAIN and n.op_type == OP_TYPE for n in model.graph.node)


def _register():
    global _REGISTERED
    try:
        from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op
    except ImportError:
        raise BackendError("this ONNX holds trtq::LogQuant custom nodes; onnxruntime runs them "
                           "through onnxruntime-extensions (pip install onnxruntime-extensions)"
                           ", or re-export with `--logquant onnx` (standard ops)") from None
    if not _REGISTERED:
        from trtq.calib.logquant import log_fake_quant_numpy

        @onnx_op(op_type=OP_TYPE, inputs=[PyCustomOpDef.dt_float],
                 outputs=[PyCustomOpDef.dt_float],
                 attrs={"bits": PyCustomOpDef.dt_int64, "tau": PyCustomOpDef.dt_int64,
                        "scale": PyCustomOpDef.dt_string})
        def _logquant(x, bits, tau, scale):
            return log_fake_quant_numpy(x, int(bits), int(tau), float(scale))

        _REGISTERED = True
    return get_library_path()


def prepare(model, options) -> bytes:
    """Register the op on `options` and return the model with its LogQuant nodes moved into
    onnxruntime-extensions' domain (an in-memory copy)."""
    import onnx

    options.register_custom_ops_library(_register())
    from onnxruntime_extensions import default_opset_domain

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    contrib = default_opset_domain()
    for node in copy.graph.node:
        if node.domain == DOMAIN:
            node.domain = contrib
            kept = [a for a in node.attribute if not a.name.startswith("plugin_")]  # TensorRT's
            del node.attribute[:]
            node.attribute.extend(kept)
            for attr in node.attribute:
                if attr.name == "scale":
                    exact = repr(float(attr.f))
                    attr.ClearField("f")
                    attr.type = onnx.AttributeProto.STRING
                    attr.s = exact.encode()
    imports = [o for o in copy.opset_import if o.domain != DOMAIN]
    del copy.opset_import[:]
    copy.opset_import.extend(imports)
    copy.opset_import.append(onnx.helper.make_opsetid(contrib, 1))
    return copy.SerializeToString()
