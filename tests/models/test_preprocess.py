"""Preprocessing: exact area resize, normalisation, box transforms, mask post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trtq.models.preprocess import Preprocess, area_resize_uint8, upscale_logits

LITE = Preprocess(256, resize="area", normalize="minmax", box_rounding="floor")
SAM = Preprocess(1024)


def test_area_resize_integer_factor_is_block_mean():
    img = np.random.default_rng(0).integers(0, 256, (8, 6, 3)).astype(np.uint8)
    out = area_resize_uint8(img, 4, 3)
    expected = img.reshape(4, 2, 3, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.array_equal(out, np.rint(expected).astype(np.uint8))


def test_area_resize_fractional_weights():
    row = np.array([[0, 90, 180]], np.uint8)[..., None].repeat(3, axis=2)
    # 3 → 2 pixels: each output covers 1.5 sources: (0 + 0.5·90)/1.5 = 30, (0.5·90 + 180)/1.5 = 150
    out = area_resize_uint8(row, 1, 2)
    assert out[0, :, 0].tolist() == [30, 150]


def test_resized_hw_rounds_half_up():
    assert LITE.resized_hw((471, 562)) == (215, 256)
    assert SAM.resized_hw((480, 640)) == (768, 1024)


def test_litemedsam_image_is_minmax_normalised_and_padded():
    rgb = np.random.default_rng(1).integers(10, 200, (300, 400, 3)).astype(np.uint8)
    x = LITE.image(rgb)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    h, w = LITE.resized_hw((300, 400))
    assert np.isclose(x[:, :, :h, :w].min(), 0.0) and np.isclose(x[:, :, :h, :w].max(), 1.0)
    assert (x[:, :, h:, :] == 0).all() and (x[:, :, :, w:] == 0).all()


def test_sam_image_uses_pixel_mean_std():
    rgb = np.full((100, 50, 3), 128, np.uint8)
    x = SAM.image(rgb)
    expected = (128 - np.array(SAM.pixel_mean)) / np.array(SAM.pixel_std)
    assert np.allclose(x[0, :, 10, 10], expected, atol=1e-6)
    assert x.shape == (1, 3, 1024, 1024) and (x[0, :, :, 512:] == 0).all()


def test_box_transforms():
    boxes = np.array([[100.0, 50.0, 300.0, 250.0]])
    assert LITE.boxes(boxes, (400, 512)).tolist() == [[50.0, 25.0, 150.0, 125.0]]
    assert np.allclose(LITE.boxes([[101, 51, 301, 251]], (400, 512)), [[50, 25, 150, 125]])
    assert np.allclose(SAM.boxes(boxes, (400, 512)), boxes * 2)


def test_upscale_logits_crops_padding_then_resizes():
    low = torch.zeros(1, 1, 256, 256)
    low[..., :128, :200] = 5.0  # the unpadded area of a 128×200 resized image
    out = upscale_logits(low, 256, (128, 200), (64, 100))
    assert out.shape == (1, 1, 64, 100) and (out > 0).all()


def test_invalid_preprocess_settings():
    with pytest.raises(ValueError):
        Preprocess(256, resize="nearest")
    with pytest.raises(ValueError):
        LITE.image(np.zeros((4, 4), np.uint8))
