"""Every deployable 8-bit recipe, calibrated on tiny_litemedsam, exported as TensorRT Q/DQ ONNX
and built (encoder and decoder) by the real builder: TensorRT-RTX ahead of time in CI (in its
slow-test step; the default suite builds w8a8, w8a8-ptq4sam and w8a8-ptq4vit-deploy)."""

from __future__ import annotations

import pytest

from trtq.engines.build import BuildOptions, build_engine
from trtq.models.sam_adapter import SAM
from trtq.recipes import deployable_presets, variant_names

DEPLOYABLE = deployable_presets(8, SAM.rules)


def test_the_deployable_list_covers_each_family():
    assert {"w8a8", "w8a8-ptq4sam", "w8a8-ptq4vit-deploy", "w8a8-hessian"} <= set(DEPLOYABLE)
    # twin-uniform quantizers are simulation only (no TensorRT op decodes two ranges)
    assert set(variant_names(8)) - set(DEPLOYABLE) == {"w8a8-ptq4vit", "w8a8-twin"}


@pytest.mark.slow  # about 2-4 min on 2 cores; CI runs the slow tests after the default suite
@pytest.mark.parametrize("recipe", DEPLOYABLE)
def test_recipe_builds_int8_engines(trt, synthetic_coco, tmp_path, record_build, calibrate_export,
                                    recipe):
    onnx_dir = calibrate_export("tiny_litemedsam", recipe, synthetic_coco, tmp_path)
    sizes = []
    for part in ("encoder", "decoder"):
        result = build_engine(onnx_dir / f"{part}.onnx", tmp_path / f"{part}.int8.engine",
                              BuildOptions(precision="int8"), trt=trt)
        assert result.network_dtypes.get("INT8", 0) > 0
        assert result.record["recipe_sha256"]
        sizes.append(f"{part} {result.size_bytes / 1e6:.1f} MB in {result.seconds:.1f} s")
    record_build(f"tiny_litemedsam {recipe}: " + ", ".join(sizes))
