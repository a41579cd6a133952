"""The FP16 evaluation backend: FP16 tensors everywhere, convolutions rounded like FP16 ones."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trtq.eval.backends import TorchBackend
from trtq.eval.half import HalfBackend, to_half
from trtq.models import load_model


def test_conv_is_fp16_in_and_out_with_wide_accumulation():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3, padding=1)
    x = torch.randn(1, 8, 6, 6)
    expected = nn.functional.conv2d(x.half().float(), conv.weight.half().float(),
                                    conv.bias.half().float(), padding=1).half()
    model = to_half(nn.Sequential(conv))
    y = model(x.half())
    assert y.dtype == torch.float16
    assert torch.equal(y, expected)
    assert model[0].conv.weight.dtype == torch.float16


def test_tiny_sam_in_fp16_stays_close_to_fp32():
    torch.manual_seed(0)
    fp32 = TorchBackend(load_model("tiny_litemedsam"))
    torch.manual_seed(0)
    half = HalfBackend(load_model("tiny_litemedsam"))
    size = fp32.preprocess.input_size
    image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    e32, e16 = fp32.encode(image), half.encode(image)
    assert e16.dtype == np.float32
    rel = np.abs(e16 - e32).max() / np.abs(e32).max()
    assert 1e-5 < rel < 0.03  # rounded to FP16 (not bit-equal to FP32), not broken
    boxes = np.array([[4, 4, size - 8, size - 10]], np.float32)
    m32, _ = fp32.decode(e32, boxes)
    m16, _ = half.decode(e16, boxes)
    assert m16.shape == m32.shape
    assert np.mean((m32 > 0) == (m16 > 0)) > 0.98
