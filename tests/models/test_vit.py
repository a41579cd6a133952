"""ViT/DeiT classifiers: timm's keys and shapes for every registered config, numerics against
nn.MultiheadAttention, the calibration hook points, the preprocessing, and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trtq.errors import CheckpointError
from trtq.models import checkpoint_provenance, get_spec, load_model
from trtq.models.classifier_preprocess import ClassifierPreprocess
from trtq.models.layers import MatMul
from trtq.models.vit_classifier import ViTConfig

# timm's published parameter counts and shapes (depth 12, patch 16, 224 px, 1000 classes)
REAL = {
    "vit_small_patch16_224": (384, False, 22_050_664, 248, (0.5, 0.5, 0.5)),
    "vit_base_patch16_224": (768, False, 86_567_656, 248, (0.5, 0.5, 0.5)),
    "deit_tiny_patch16_224": (192, False, 5_717_416, 256, (0.485, 0.456, 0.406)),
    "deit_small_patch16_224": (384, False, 22_050_664, 256, (0.485, 0.456, 0.406)),
    "deit_base_patch16_224": (768, False, 86_567_656, 256, (0.485, 0.456, 0.406)),
    "deit_base_distilled_patch16_224": (768, True, 87_338_192, 256, (0.485, 0.456, 0.406)),
}


def timm_keys(depth: int, distilled: bool) -> set[str]:
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "norm.weight", "norm.bias", "head.weight", "head.bias"}
    if distilled:
        keys |= {"dist_token", "head_dist.weight", "head_dist.bias"}
    for i in range(depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys |= {f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"}
    return keys


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):  # shapes only: no memory, no init time
        return get_spec(name).build()


@pytest.mark.parametrize("name", sorted(REAL))
def test_registered_configs_have_timms_keys_shapes_and_preprocessing(name):
    dim, distilled, params, resize, mean = REAL[name]
    model = meta_model(name)
    sd = model.state_dict()
    assert set(sd) == timm_keys(12, distilled)
    assert sum(p.numel() for p in model.parameters()) == params
    tokens = 198 if distilled else 197
    assert sd["pos_embed"].shape == (1, tokens, dim)
    assert sd["patch_embed.proj.weight"].shape == (dim, 3, 16, 16)
    assert sd["blocks.11.attn.qkv.weight"].shape == (3 * dim, dim)
    assert sd["blocks.11.mlp.fc1.weight"].shape == (4 * dim, dim)
    assert sd["head.weight"].shape == (1000, dim)
    pre = model.preprocess
    assert (pre.img_size, pre.resize_size, pre.mean, pre.interpolation) == (224, resize, mean,
                                                                              "bicubic")
    assert get_spec(name).needs_checkpoint


def test_calibration_hook_points_are_the_expected_module_types():
    model = load_model("deit_distilled_test")
    assert set(model.state_dict()) == timm_keys(2, True)
    assert set(load_model("vit_test").state_dict()) == timm_keys(2, False)
    attn = model.blocks[0].attn
    assert type(attn.qk_matmul) is MatMul and type(attn.av_matmul) is MatMul
    assert type(attn.softmax) is nn.Softmax and attn.softmax.dim == -1
    act = model.blocks[1].mlp.act
    assert type(act) is nn.GELU and act.approximate == "none"
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * 4 + 2 and all(type(m) is nn.Linear for m in linears)
    assert {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)} == {1e-6}


def randomize(model: nn.Module, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in model.state_dict().items():
        noise = torch.randn(v.shape, generator=g)
        state[k] = 1 + 0.2 * noise if "norm" in k and k.endswith("weight") else 0.3 * noise
    model.load_state_dict(state)
    return state


def mha_reference(sd: dict, x: torch.Tensor, cfg: ViTConfig, probs: list) -> torch.Tensor:
    """The forward pass from the state dict alone: unfold + matmul patch embedding and
    nn.MultiheadAttention blocks; appends each block's per-head attention weights to `probs`."""
    d, p = cfg.embed_dim, cfg.patch_size
    patches = F.unfold(x, p, stride=p).transpose(1, 2)  # (B, L, 3·p·p), same order as the conv
    t = patches @ sd["patch_embed.proj.weight"].reshape(d, -1).T + sd["patch_embed.proj.bias"]
    lead = [sd["cls_token"]] + ([sd["dist_token"]] if cfg.distilled else [])
    t = torch.cat([v.expand(len(x), 1, d) for v in lead] + [t], 1) + sd["pos_embed"]
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        mha = nn.MultiheadAttention(d, cfg.num_heads, batch_first=True)
        mha.load_state_dict({"in_proj_weight": sd[b + "attn.qkv.weight"],
                             "in_proj_bias": sd[b + "attn.qkv.bias"],
                             "out_proj.weight": sd[b + "attn.proj.weight"],
                             "out_proj.bias": sd[b + "attn.proj.bias"]})
        h = F.layer_norm(t, (d,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-6)
        out, weights = mha(h, h, h, need_weights=True, average_attn_weights=False)
        probs.append(weights)
        t = t + out
        h = F.layer_norm(t, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-6)
        h = F.gelu(h @ sd[b + "mlp.fc1.weight"].T + sd[b + "mlp.fc1.bias"])
        t = t + h @ sd[b + "mlp.fc2.weight"].T + sd[b + "mlp.fc2.bias"]
    t = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    logits = t[:, 0] @ sd["head.weight"].T + sd["head.bias"]
    if cfg.distilled:
        logits = (logits + t[:, 1] @ sd["head_dist.weight"].T + sd["head_dist.bias"]) / 2
    return logits


@pytest.mark.parametrize("name", ["vit_test", "deit_distilled_test"])
def test_logits_and_attention_match_multihead_attention(name):
    model = load_model(name)
    sd = randomize(model, seed=5)
    seen = []
    hooks = [model.blocks[i].attn.softmax.register_forward_hook(
        lambda m, inp, out: seen.append(out)) for i in range(2)]
    hooks += [model.blocks[0].attn.av_matmul.register_forward_hook(
        lambda m, inp, out: seen.append(inp[0]))]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(x)
        probs: list = []
        ref = mha_reference(sd, x, model.cfg, probs)
    for h in hooks:
        h.remove()
    tokens = 16 + (2 if model.cfg.distilled else 1)
    assert ours.shape == (2, 10) and ours.abs().max() > 0.1
    assert (ours - ref).abs().max() < 1e-4
    assert seen[0].shape == (2, 3, tokens, tokens)
    assert seen[1] is seen[0]  # av_matmul multiplies the softmax's probabilities
    for mine, theirs in zip((seen[0], seen[2]), probs, strict=True):
        assert (mine - theirs).abs().max() < 1e-5


def test_preprocess_resizes_crops_and_normalizes_like_timm():
    deit = ClassifierPreprocess()  # DeiT: ImageNet mean/std, 0.875
    assert deit.resize_size == 256 and deit.resized_shape(480, 640) == (256, 341)
    assert deit.resized_shape(640, 480) == (341, 256)
    assert ClassifierPreprocess(crop_pct=0.9).resize_size == 248
    flat = np.full((300, 500, 3), (200, 100, 50), np.uint8)
    out = deit.image(flat)
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
    expected = (np.array([200, 100, 50]) / 255 - np.array(deit.mean)) / np.array(deit.std)
    assert np.abs(out[0].reshape(3, -1) - expected[:, None]).max() < 1e-5
    # a horizontal ramp: crop column j is original column (58 + j + 0.5)·640/341 − 0.5
    ramp = np.tile(np.linspace(0, 255, 640)[None, :, None], (480, 1, 3)).round().astype(np.uint8)
    pre = ClassifierPreprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    row = pre.image(ramp)[0, 0, 112] * 255
    for j in (0, 111, 223):
        x = (58 + j + 0.5) * 640 / 341 - 0.5
        assert abs(row[j] - x * 255 / 639) < 1.5, j
    with pytest.raises(ValueError, match="crop_pct must be in"):
        ClassifierPreprocess(crop_pct=0.0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        ViTConfig(interpolation="lanczos")
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        ViTConfig(img_size=30, patch_size=8)


def test_timm_checkpoint_from_a_user_path(tmp_path):
    source = load_model("vit_test")
    state = randomize(source, seed=9)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
    layouts = {"plain.pth": state, "deit.pth": {"model": state, "epoch": 299},
               "lightning.bin": {"state_dict": state}}
    for filename, payload in layouts.items():
        torch.save(payload, tmp_path / filename)
        loaded = load_model("vit_test", tmp_path / filename)
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), filename
    assert len(checkpoint_provenance("vit_test", tmp_path / "deit.pth")["checkpoint_sha256"]) == 64


def test_bad_checkpoints_name_the_key(tmp_path):
    state = load_model("deit_distilled_test").state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "head_dist.bias"},
                    r"1 missing \(e\.g\. head_dist\.bias\)"),
        "unexpected": (state | {"fc_norm.weight": torch.ones(48)},
                       r"1 unexpected \(e\.g\. fc_norm\.weight\)"),
        "shape": (state | {"head.weight": torch.zeros(1000, 48)},
                  r"1 wrong shape \(e\.g\. head\.weight: \(1000, 48\) in the file, \(10, 48\)"),
    }
    for label, (bad, message) in cases.items():
        torch.save({"model": bad}, tmp_path / f"{label}.pth")
        with pytest.raises(CheckpointError, match=message):
            load_model("deit_distilled_test", tmp_path / f"{label}.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model("vit_test", tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="needs --checkpoint PATH"):
        load_model("deit_base_distilled_patch16_224")


def test_full_size_deit_tiny_loads_a_timm_shaped_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    shapes = meta_model("deit_tiny_patch16_224").state_dict()
    state = {k: 0.02 * torch.randn(v.shape, generator=g) for k, v in shapes.items()}
    torch.save({"model": state}, tmp_path / "deit_tiny.pth")
    model = load_model("deit_tiny_patch16_224", tmp_path / "deit_tiny.pth")
    assert torch.equal(model.blocks[11].mlp.fc2.weight, state["blocks.11.mlp.fc2.weight"])
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    with torch.no_grad():
        logits = model(torch.from_numpy(model.preprocess.image(image)))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    with pytest.raises(CheckpointError, match=r"wrong shape \(e\.g\. blocks\.0\.attn\.proj\.bias: "
                       r"\(192,\) in the file, \(384,\) in the model\)"):
        load_model("deit_small_patch16_224", tmp_path / "deit_tiny.pth")
