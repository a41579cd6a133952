"""The real LiteMedSAM, FP16 (from the FP32 export) and INT8 (from the W8A8 Q/DQ export),
encoder and decoder, through `build_engine`. The sizes and build times are printed in the
'TensorRT engine builds' section at the end of the test run (the CI log)."""

from __future__ import annotations

import pytest

from trtq.engines.build import BuildOptions, build_engine
from trtq.engines.versions import module_version


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_litemedsam_engine(trt, litemedsam_onnx, litemedsam_qdq, tmp_path, record_build,
                           precision, part):
    source = (litemedsam_qdq if precision == "int8" else litemedsam_onnx) / f"{part}.onnx"
    engine = tmp_path / f"{part}.{precision}.engine"
    result = build_engine(source, engine, BuildOptions(precision=precision), trt=trt)
    version = module_version(trt)
    record_build(f"LiteMedSAM {part} {precision}: {result.size_bytes / 1e6:.1f} MB engine in "
                 f"{result.seconds:.1f} s ({version.label}, "
                 f"{'ahead of time, no GPU' if result.record['ahead_of_time'] else 'GPU'}; "
                 f"ONNX {source.stat().st_size / 1e6:.1f} MB)")
    fp32_bytes = (litemedsam_onnx / f"{part}.onnx").stat().st_size
    dtypes = result.network_dtypes
    if precision == "fp16" and result.record["build"]["strongly_typed"]:
        assert dtypes.get("HALF", 0) > dtypes.get("FLOAT", 0)
    if precision == "int8":
        assert dtypes.get("INT8", 0) >= 30  # one per QuantizeLinear
    # The plan carries the weights: at least their FP16 size (half the FP32 ONNX). TensorRT-RTX
    # plans also carry kernels for several GPU generations, so their sizes say nothing about a
    # Jetson engine's (an RTX INT8 plan is larger than its FP16 one: INT8 is weight-only there).
    assert result.size_bytes > 0.45 * fp32_bytes, (result.size_bytes, fp32_bytes)
