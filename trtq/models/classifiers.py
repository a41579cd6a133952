"""The registered ViT/DeiT classifiers: timm-format checkpoints from a user path (no downloads),
and tiny random configurations for tests; and their model adapter."""

from __future__ import annotations

from trtq.models.adapters import ModelAdapter, register_adapter
from trtq.models.registry import register_model
from trtq.recipes import ModelRules

# The classifiers' specifics for the presets: the patch embedding's input is the image itself
# (kept float, as SAM's). Everything else is generic: qkv/proj/fc1/fc2/head Linear layers, the
# two attention products, post-GELU `mlp.fc2` inputs.
VIT_CLASSIFIER = register_adapter(ModelAdapter(
    "vit_classifier", ModelRules(float_patterns=("patch_embed.proj.input_quantizer",)),
    module_types=("trtq.models.vit_classifier.VisionTransformer",)))

_DEIT = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 0.875}
_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
CLASSIFIERS = {"vit_test", "deit_distilled_test"}  # the names below, for commands to dispatch


def is_classifier(name: str) -> bool:
    return name in CLASSIFIERS


def _vit(**overrides):
    from trtq.models.vit_classifier import VisionTransformer, ViTConfig

    return VisionTransformer(ViTConfig(**overrides))


def _register(name: str, size: str, deit: bool, distilled: bool = False) -> None:
    dim, heads = _SIZES[size]
    extra = _DEIT if deit else {}
    summary = (f"{'DeiT' if deit else 'ViT'}-{size[0].upper()}/16 at 224"
               f"{' (distilled)' if distilled else ''}: timm checkpoint via --checkpoint")
    CLASSIFIERS.add(name)
    register_model(name, summary, adapter=VIT_CLASSIFIER.name)(
        lambda: _vit(embed_dim=dim, num_heads=heads, distilled=distilled, **extra))


_register("vit_small_patch16_224", "small", deit=False)
_register("vit_base_patch16_224", "base", deit=False)
_register("deit_tiny_patch16_224", "tiny", deit=True)
_register("deit_small_patch16_224", "small", deit=True)
_register("deit_base_patch16_224", "base", deit=True)
_register("deit_base_distilled_patch16_224", "base", deit=True, distilled=True)


@register_model("vit_test", "test config: ViT with random weights (32 px, patch 8, dim 48, "
                "depth 2, 10 classes)", needs_checkpoint=False, adapter=VIT_CLASSIFIER.name)
def vit_test():
    return _vit(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=10)


@register_model("deit_distilled_test", "test config: distilled DeiT with random weights",
                needs_checkpoint=False, adapter=VIT_CLASSIFIER.name)
def deit_distilled_test():
    return _vit(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=10,
                distilled=True, **_DEIT)
