"""onnxruntime inference sessions over validated ONNX files (CPU by default)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trtq.errors import ArtifactError, BackendError

log = logging.getLogger("trtq.engines")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            f"onnxruntime is not importable ({exc}); pip install onnxruntime"
        ) from None
    return onnxruntime


def check_onnx(path: str | os.PathLike) -> Path:
    """Validate an ONNX file (exists, parses, passes onnx.checker) before anything uses it."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {path} does not exist; run `trtq export` first")
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError,
            OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{path} is not a valid ONNX model ({first}); re-export it") from None
    return path


# onnxruntime turns MatMul + 1-D bias Add into Gemm before its Q/DQ fusions run, and a Gemm
# whose output is not re-quantized then stays a float Gemm on dequantized inputs. trtq's exports
# give those biases the MatMul output's rank (`trtq.export.qdq_rewrite.full_rank_biases`), which
# this fusion leaves alone, so every session runs them as MatMulIntegerToFloat; trtq's own
# sessions use onnxruntime's default options, as users do. Only for measuring files written
# before that rewrite (experiments/int8_latency.py --session trtq) is the fusion turned off.
QDQ_DISABLED_OPTIMIZERS = ("MatMulAddFusion",)


def create_session(path: str | os.PathLike, threads: int | None = None,
                   providers: list[str] | None = None):
    """An `InferenceSession` for a checked ONNX file; `threads` sets intra-op threads."""
    import onnx

    from trtq.export import logquant_ort

    ort = _onnxruntime()
    path = check_onnx(path)
    model = onnx.load(str(path), load_external_data=False)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    available = ort.get_available_providers()
    chosen = providers or ["CPUExecutionProvider"]
    unknown = [p for p in chosen if p not in available]
    if unknown:
        raise BackendError(f"onnxruntime has no {', '.join(unknown)} here "
                           f"(available: {', '.join(available)})")
    source = str(path)
    if logquant_ort.has_logquant_nodes(model):
        source = logquant_ort.prepare(model, options)
    try:
        return ort.InferenceSession(source, options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        raise ArtifactError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from None
