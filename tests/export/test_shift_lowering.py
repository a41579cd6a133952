"""The asymmetric-to-symmetric lowering (ALGORITHMS.md §5): an asymmetric range on a Linear's
input runs as Sub(x, c) → symmetric Q/DQ → MatMul with W·c folded into the bias. Exact in
simulation, the same in onnxruntime, accepted by TensorRT's lint (and parser, in
tests/engines)."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from torch import nn

from trtq.calib.modules import QuantLinear
from trtq.calib.quantizer import TensorQuantizer
from trtq.export.qdq_lint import lint_qdq
from trtq.recipes import QuantizerSpec


def _post_gelu(n: int = 20000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return nn.functional.gelu(torch.randn(n, generator=g) * 2.5)


def _quantizer(bits: int, shifted: bool, lo: float, hi: float) -> TensorQuantizer:
    q = TensorQuantizer()
    q.configure(QuantizerSpec(bits=bits, symmetric=False, shifted=shifted))
    q.set_range(torch.tensor(lo), torch.tensor(hi))
    q.enabled = True
    return q


@pytest.mark.parametrize("bits", [8, 6])
def test_shifted_grid_equals_the_asymmetric_grid(bits):
    x = _post_gelu()
    lo, hi = -0.17, float(x.max()) * 0.8  # clipped at the top too
    plain, shifted = _quantizer(bits, False, lo, hi), _quantizer(bits, True, lo, hi)
    assert int(plain.zero_point) not in (0, 2 ** (bits - 1))  # a real offset to fold
    a, b = plain(x), shifted(x)
    scale = float(plain.scale)
    assert float((a - b).abs().max()) <= 1e-5 * scale * 2 ** bits  # same value, float error
    codes = torch.round((shifted.shifted_codes(x)) / scale)
    assert int(codes.min()) >= -(2 ** (bits - 1)) and int(codes.max()) <= 2 ** (bits - 1) - 1
    # the asymmetric code q and the symmetric code q' of x − c differ by exactly 2^(b−1)
    asym_codes = torch.round(a / scale) + int(plain.zero_point)
    assert torch.equal(asym_codes - 2 ** (bits - 1), codes)


def test_linear_lowering_folds_w_c_into_the_bias():
    torch.manual_seed(0)
    linear = QuantLinear.convert(nn.Linear(64, 32))
    x = nn.functional.gelu(torch.randn(10, 64) * 2)
    linear.input_quantizer = _quantizer(8, True, float(x.min()), float(x.max()))
    linear.weight_quantizer.configure(QuantizerSpec(bits=8, axis=0, narrow=True))
    linear.weight_quantizer.calibrate_weight(linear.weight)
    linear.weight_quantizer.enabled = True
    with torch.no_grad():
        simulated = linear(x)
        for q in (linear.input_quantizer, linear.weight_quantizer):
            q.export_mode = True
        linear.prepare_export()
        lowered = linear(x)
        # the lowered bias is b + Ŵ·c, a constant
        w_hat = linear.weight_quantizer(linear.weight)
        c = linear.input_quantizer.shift()
        assert torch.allclose(linear.export_bias, linear.bias + w_hat.sum(1) * c, atol=1e-5)
    assert c != 0
    assert torch.allclose(simulated, lowered, atol=1e-5, rtol=1e-5)


def test_deploy_export_is_symmetric_with_sub_and_matches_onnxruntime(tiny_ptq4vit_deploy_qdq):
    for part, sites in (("encoder", 4), ("decoder", 2)):
        path = tiny_ptq4vit_deploy_qdq / f"{part}.onnx"
        model = onnx.load(str(path))
        report = lint_qdq(model)
        assert report.errors == []  # zero points all 0 (TensorRT's rule)
        producers = {o: n for n in model.graph.node for o in n.output}
        subs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"
                and n.input[0] in producers and producers[n.input[0]].op_type == "Sub"]
        assert len(subs) == sites, part  # every shifted Linear input: Sub → Q
        record = json.loads(path.with_name(path.name + ".json").read_text())
        assert record["deployable"] is True
        assert record["parity_max_rel_diff"] < 0.05  # onnxruntime vs the simulated model


def test_twin_recipes_are_not_exported(tmp_path):
    from trtq.errors import ArtifactError
    from trtq.export.onnx_fp32 import ExportSpec
    from trtq.export.onnx_qdq import export_quantized
    from trtq.models import load_model
    from trtq.recipes import get_recipe

    model = load_model("tiny_litemedsam")
    with pytest.raises(ArtifactError, match="twin ranges are simulation-only.*ptq4vit-deploy"):
        export_quantized(model, get_recipe("w8a8-ptq4vit"), ExportSpec("tiny_litemedsam"),
                         tmp_path)
    assert not list(tmp_path.iterdir())


def test_bias_fold_simulation_and_export_share_one_weight_grid():
    """With weight scales that clip (as the Hessian search picks), the folded bias b + Ŵ·c must
    use the narrow [-127, 127] weights that are simulated and exported (an old export mode
    folded from weights clamped at −128: 0.0047 off on a bias of 0.91)."""
    import numpy as np

    from trtq.export.qdq_rewrite import weight_codes

    torch.manual_seed(1)
    linear = QuantLinear.convert(nn.Linear(64, 32))
    x = nn.functional.gelu(torch.randn(10, 64) * 2)
    linear.input_quantizer = _quantizer(8, True, float(x.min()), float(x.max()))
    wq = linear.weight_quantizer
    wq.configure(QuantizerSpec(bits=8, axis=0, narrow=True))
    wq.calibrate_weight(linear.weight)
    wq.scale = wq.scale * 0.8  # clipping scales: codes beyond ±127 exist
    wq.enabled = True
    with torch.no_grad():
        w_hat = wq(linear.weight)  # simulation
        codes = torch.round(w_hat / wq.scale[:, None])
        assert int(codes.min()) == -127 and int(codes.max()) == 127
        assert float((linear.weight / wq.scale[:, None]).min()) < -128  # would reach −128
        c = linear.input_quantizer.shift()
        for q in (linear.input_quantizer, wq):
            q.export_mode = True
        linear.prepare_export()
        assert torch.equal(wq(linear.weight), w_hat)  # export mode: the same grid
        want = linear.bias + (w_hat * c).sum(1)
        assert torch.allclose(linear.export_bias, want, atol=1e-6, rtol=0)
    exported = weight_codes(linear.weight.detach().numpy(), wq.scale.numpy()[:, None])
    assert np.array_equal(exported, codes.numpy())
