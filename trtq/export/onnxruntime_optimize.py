"""Ship the onnxruntime target's INT8 ONNX as onnxruntime's own optimized graph.

onnxruntime fuses a Q/DQ graph into integer kernels when it loads it (with full-rank biases,
`trtq.export.qdq_rewrite.full_rank_biases`, also under its default options). The export saves
the graph onnxruntime builds (MatMulIntegerToFloat, QLinearMatMul, ... in the com.microsoft
domain) at the "extended" level: no layout transformation, so it is not tied to this CPU's
vector width, and loading it skips the fusion search. Any default `onnxruntime.InferenceSession`
runs the integer kernels.

The optimized file must compute what the Q/DQ graph computes: both run in default sessions on
the export's parity inputs and the outputs must agree to float rounding, or the export fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trtq.errors import ArtifactError

LEVEL = "extended"
# relative to each output's largest magnitude: only the summation order may differ
MAX_REL_DIFF = 1e-4


def plain_session(path: str | os.PathLike):
    """A default CPU session, as a user runs the file (no graph check: onnxruntime's
    optimized graphs hold contrib ops onnx.checker rejects)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest |a − b| over the outputs, each relative to a's largest magnitude."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        scale = max(float(np.abs(x).max()), 1e-12)
        worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()) / scale)
    return worst


def optimize_in_place(path: str | os.PathLike, feeds: list[dict]) -> dict:
    """Replace the Q/DQ graph at `path` by onnxruntime's optimized graph of it, checked on
    `feeds` against the Q/DQ graph; returns the record for the sidecar."""
    import onnxruntime as ort

    path = Path(path)
    tmp = path.with_name(path.stem + ".ortopt" + path.suffix)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    try:
        reference, shipped = plain_session(path), plain_session(tmp)
        worst = max(max_rel_diff(reference.run(None, f), shipped.run(None, f)) for f in feeds)
        if not worst <= MAX_REL_DIFF:
            raise ArtifactError(f"{path.name}: onnxruntime's optimized graph differs from the "
                                f"Q/DQ graph by {worst:.2e} of the output range (limit "
                                f"{MAX_REL_DIFF:.0e}); report this with the ONNX file")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"onnxruntime": ort.__version__, "level": LEVEL, "max_rel_diff_vs_qdq": worst}
