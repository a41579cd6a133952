"""The "bimodal" variant of a SAM model: the same function, a bimodal K (ALGORITHMS.md §2).

LiteMedSAM's decoder K is unimodal, so PTQ4SAM's bimodal integration has nothing to do on it.
`make_bimodal` adds a per-channel offset ±c (seeded random signs) to k_proj's bias in every
token→image attention. Softmax over keys ignores a per-query constant (q·(k + o) = q·k + q·o,
and q·o is the same for every key), so the model's outputs do not change, but K now sits in two
clusters at ±c, the shape PTQ4SAM describes for SAM-B/L. c is `factor` times the largest channel
standard deviation of K, measured on a fixed synthetic image with a centred box, so the variant
is deterministic given the weights.
"""

from __future__ import annotations

import fnmatch

import numpy as np
import torch
from torch import nn

from trtq.models.sam_adapter import SAM_RULES

LAYERS = SAM_RULES.big_layers  # the attentions the SAM presets' BIG folds


def _synthetic_probe(model: nn.Module):
    size = model.input_size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 127 + 100 * np.sin(6 * xx) * np.cos(4 * yy)
    rgb = np.clip(base[..., None] + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    box = np.array([[size * 0.25, size * 0.25, size * 0.75, size * 0.75]], dtype=np.float32)

    return lambda m: m.predict_boxes(rgb, box)


@torch.no_grad()
def make_bimodal(model: nn.Module, factor: float = 4.0, seed: int = 0) -> dict[str, float]:
    """Add ±c per channel to k_proj's bias of the token→image attentions (in place); returns
    c per layer."""
    from trtq.models.two_way_transformer import capture_keys, decoder_attentions

    keys, _ = capture_keys(model, _synthetic_probe(model))
    generator = torch.Generator().manual_seed(seed)
    offsets = {}
    for name, attn in decoder_attentions(model).items():
        if not fnmatch.fnmatchcase(name, LAYERS):
            continue
        k = keys[name].reshape(-1, keys[name].shape[-1])
        c = factor * float(k.std(dim=0).max())
        signs = torch.randint(0, 2, (k.shape[-1],), generator=generator) * 2 - 1
        attn.k_proj.bias.add_(c * signs.to(attn.k_proj.bias.dtype))
        offsets[name] = c
    return offsets
