"""The public Python API on a user's own module: trtq.quantize / save / load / export_onnx.

The module is written the way users write theirs (Conv + BatchNorm, a subclass of nn.Linear,
nn.MultiheadAttention), and everything goes through the public API only."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trtq
from trtq.errors import TrtqError
from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq


class TaggedLinear(nn.Linear):
    """A Linear subclass that only adds an attribute (forward unchanged)."""

    tag = "user"


class ScaledLinear(nn.Linear):
    """A Linear subclass with its own forward: trtq must leave it alone."""

    def forward(self, x):
        return super().forward(x) * 0.5


class SdpaBlock(nn.Module):
    """Attention through F.scaled_dot_product_attention, as timm/HF models write it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MatmulBlock(SdpaBlock):
    """The same attention written with @ and torch.matmul."""

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5, dim=-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, c))


class UserNet(nn.Module):
    def __init__(self, custom_head: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.embed = TaggedLinear(16, 32)
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
        self.sdpa = SdpaBlock(32, 4)
        self.explicit = MatmulBlock(32, 4)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.head = ScaledLinear(32, 10) if custom_head else nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        tokens = self.embed(x.flatten(2).transpose(1, 2))
        attended, _ = self.mha(tokens, tokens, tokens, need_weights=False)
        tokens = tokens + attended
        tokens = tokens + self.sdpa(tokens)
        tokens = tokens + self.explicit(tokens)
        tokens = tokens + self.mlp(tokens)
        return self.head(tokens.mean(1))


def _net(seed: int = 0, **kw) -> UserNet:
    torch.manual_seed(seed)
    net = UserNet(**kw).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def _batches(n: int = 6, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 8, 8, generator=g) for _ in range(n)]


def _loop(batches):
    def forward_loop(model) -> int:
        for batch in batches:
            model(batch)
        return len(batches)
    return forward_loop


def test_quantize_covers_subclasses_and_multihead_attention_and_stays_close():
    net, data = _net(), _batches()
    with torch.no_grad():
        reference = [net(b) for b in data]
    q = trtq.quantize(net, "w8a8", _loop(data))
    assert q is net
    names = [n for n, m in q.named_modules() if type(m).__name__ == "TensorQuantizer"
             and m.enabled]
    for expected in ("embed.input_quantizer", "mha.q_proj.input_quantizer",
                     "mha.k_proj.weight_quantizer", "mha.v_proj.input_quantizer",
                     "mha.qk_matmul.input_quantizer", "mha.qk_matmul.other_quantizer",
                     "mha.av_matmul.input_quantizer", "mha.av_matmul.other_quantizer",
                     "mha.out_proj.input_quantizer", "mlp.0.weight_quantizer",
                     "head.input_quantizer", "conv.weight_quantizer",
                     "sdpa.func_sdpa_0.qk_matmul.input_quantizer",
                     "sdpa.func_sdpa_0.av_matmul.other_quantizer",
                     "explicit.func_matmul_0.other_quantizer",
                     "explicit.func_matmul_1.input_quantizer"):
        assert expected in names
    with torch.no_grad():
        got = [q(b) for b in data]
    err = max(float((g - r).abs().max()) for g, r in zip(got, reference, strict=True))
    size = max(float(r.abs().max()) for r in reference)
    assert 0 < err < 0.1 * size  # quantized (not bit-identical), and close


def test_a_subclass_with_its_own_forward_stays_float(caplog):
    net = _net(custom_head=True)
    with caplog.at_level(logging.WARNING, logger="trtq.calib"):
        trtq.quantize(net, "w8a8", _loop(_batches(2)))
    assert type(net.head) is ScaledLinear
    assert "ScaledLinear subclasses Linear but overrides forward()" in caplog.text


def test_multihead_attention_twin_matches_pytorch_with_masks():
    """With its quantizers off the twin computes nn.MultiheadAttention's outputs and weights
    (self- and cross-attention, sequence-first, masks of both kinds, unbatched input)."""
    from trtq.calib.modules import install_quant_modules

    torch.manual_seed(0)
    for batch_first in (False, True):
        ref = nn.MultiheadAttention(16, 2, batch_first=batch_first).eval()
        holder = nn.Module()
        holder.mha = nn.MultiheadAttention(16, 2, batch_first=batch_first).eval()
        holder.mha.load_state_dict(ref.state_dict())
        assert install_quant_modules(holder) == 1
        twin = holder.mha
        q, kv = torch.randn(5, 3, 16), torch.randn(7, 3, 16)
        if batch_first:
            q, kv = q.transpose(0, 1), kv.transpose(0, 1)
        padding = torch.zeros(3, 7, dtype=torch.bool)
        padding[1, 5:] = True
        causal = torch.ones(5, 7, dtype=torch.bool).triu(3)
        additive = torch.randn(6, 5, 7)
        cases = [dict(), dict(key_padding_mask=padding), dict(attn_mask=causal),
                 dict(attn_mask=causal, key_padding_mask=padding), dict(attn_mask=additive),
                 dict(need_weights=True, average_attn_weights=False)]
        with torch.no_grad():
            for kwargs in cases:
                want, want_w = ref(q, kv, kv, **kwargs)
                got, got_w = twin(q, kv, kv, **kwargs)
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-5)
            single = q[:, 0] if not batch_first else q[0]
            torch.testing.assert_close(twin(single, single, single)[0],
                                       ref(single, single, single)[0], rtol=1e-5, atol=1e-5)


def test_save_load_and_copy():
    data = _batches(3)
    original = _net()
    copy = trtq.quantize(original, "w8a8", _loop(data), inplace=False)
    assert copy is not original and type(original.mha) is nn.MultiheadAttention
    path = "quant_state.pt"
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        trtq.save(copy, Path(tmp) / path)
        fresh = trtq.load(_net(), Path(tmp) / path)
    with torch.no_grad():
        for batch in data:
            torch.testing.assert_close(fresh(batch), copy(batch), rtol=0, atol=0)
    with pytest.raises(TrtqError, match="no quant state"):
        trtq.save(_net(), "unused.pt")
    with pytest.raises(TrtqError, match="forward_loop"):
        trtq.quantize(_net(), "w8a8")


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_export_onnx_is_lint_clean_covers_the_gemms_and_runs(tmp_path, target):
    import onnxruntime as ort

    data = _batches(4)
    net = trtq.quantize(_net(), "w8a8", _loop(data))
    path = tmp_path / "user.onnx"
    record = trtq.export_onnx(net, data[0], path, target=target, input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    model = onnx.load(str(path))
    if target == "tensorrt":
        assert lint_qdq(model).errors == [] and record["lint_errors"] == []
        coverage = int8_mac_coverage(model)
        assert coverage.fraction >= 0.95, coverage.floats[:3]
        assert record["forced_parity"]["code_mismatch"] == 0
    else:
        assert record["onnxruntime_optimized"]["max_rel_diff_vs_qdq"] <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = torch.cat(data[:2]).numpy()  # the dynamic batch axis
    got = session.run(None, {"image": batch})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(batch)).numpy()
    assert got.shape == (4, 10)
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    with pytest.raises(Exception, match="exists"):
        trtq.export_onnx(net, data[0], path, target=target)


def test_tensorrt_parses_and_builds_the_user_export(trt, tmp_path):
    from trtq.engines.tensorrt_api import build_serialized, parse_onnx

    data = _batches(3)
    net = trtq.quantize(_net(), "w8a8", _loop(data))
    path = tmp_path / "user.onnx"
    trtq.export_onnx(net, data[0], path)
    plan = build_serialized(parse_onnx(path, trt))
    assert isinstance(plan, bytes) and len(plan) > 10_000


def test_function_call_attention_is_routed_exactly_with_quantizers_off():
    """The routed SDPA and matmuls compute what the functions do (quantizers off), and a
    product with a parameter operand is not routed."""
    from trtq.calib.calibrate import set_enabled

    net, data = _net(), _batches(2)
    with torch.no_grad():
        reference = [net(b) for b in data]
    trtq.quantize(net, "w8a8", _loop(data))
    set_enabled(net, False)
    with torch.no_grad():
        for batch, want in zip(data, reference, strict=True):
            torch.testing.assert_close(net(batch), want, rtol=1e-5, atol=1e-5)
    children = sorted(n for n, _ in net.named_modules() if ".func_" in n and n.count(".") == 1)
    assert children == ["explicit.func_matmul_0", "explicit.func_matmul_1", "sdpa.func_sdpa_0"]


def test_the_documented_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
    (block,) = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "example"}
    exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own docs page
    assert namespace["record"]["int8_mac_coverage"] >= 0.95
    assert namespace["record"]["lint_errors"] == []
