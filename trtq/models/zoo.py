"""The registered SAM-family models: real ones and tiny random configurations for tests."""

from __future__ import annotations

from trtq.models.checkpoints import LITEMEDSAM_WEIGHTS
from trtq.models.registry import register_model

_ADAPTER = "sam"  # every model here is served by trtq.models.sam_adapter


def _sam(encoder, embed_hw: int, input_size: int, dim: int = 256, mlp_dim: int = 2048,
         heads: int = 8, preprocess=None):
    from trtq.models.mask_decoder import MaskDecoder
    from trtq.models.preprocess import Preprocess
    from trtq.models.prompt_encoder import PromptEncoder
    from trtq.models.sam import SamModel
    from trtq.models.two_way_transformer import TwoWayTransformer

    prompt = PromptEncoder(dim, (embed_hw, embed_hw), (input_size, input_size), 16)
    decoder = MaskDecoder(TwoWayTransformer(2, dim, heads, mlp_dim), dim, iou_head_hidden_dim=dim)
    return SamModel(encoder, prompt, decoder, preprocess or Preprocess(input_size))


def _litemedsam_preprocess(size: int):
    from trtq.models.preprocess import Preprocess

    return Preprocess(size, resize="area", normalize="minmax", box_rounding="floor")


def _tiny_vit(**overrides):
    from trtq.models.tiny_vit import TinyViT, TinyViTConfig

    return TinyViT(TinyViTConfig(**overrides))


def _sam_vit(**overrides):
    from trtq.models.vit_sam import SamViT, SamViTConfig

    return SamViT(SamViTConfig(**overrides))


@register_model("litemedsam", "LiteMedSAM: MobileSAM architecture, medical fine-tune, 256×256",
                weights=LITEMEDSAM_WEIGHTS, adapter=_ADAPTER)
def litemedsam():
    enc = _tiny_vit(img_size=256, stem="conv1x1", num_classes=0)
    return _sam(enc, 64, 256, preprocess=_litemedsam_preprocess(256))


def _make_bimodal(model):
    from trtq.models.bimodal import make_bimodal

    make_bimodal(model)


@register_model("litemedsam-bimodal", "LiteMedSAM with ±c offsets folded into the token→image "
                "k_proj biases: same outputs, bimodal K (exercises PTQ4SAM's BIG)",
                weights=LITEMEDSAM_WEIGHTS, post_load=_make_bimodal, adapter=_ADAPTER)
def litemedsam_bimodal():
    return litemedsam()


@register_model("tiny_litemedsam-bimodal", "test config: tiny_litemedsam with a bimodal K",
                needs_checkpoint=False, post_load=_make_bimodal, adapter=_ADAPTER)
def tiny_litemedsam_bimodal():
    return tiny_litemedsam()


@register_model("mobile_sam", "MobileSAM (TinyViT-5M encoder), 1024×1024, user checkpoint",
                adapter=_ADAPTER)
def mobile_sam():
    return _sam(_tiny_vit(img_size=1024), 64, 1024)


@register_model("sam_vit_b", "Segment Anything ViT-B, 1024×1024, user checkpoint",
                adapter=_ADAPTER)
def sam_vit_b():
    return _sam(_sam_vit(), 64, 1024)


@register_model("sam_vit_l", "Segment Anything ViT-L, 1024×1024, user checkpoint",
                adapter=_ADAPTER)
def sam_vit_l():
    enc = _sam_vit(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
    return _sam(enc, 64, 1024)


@register_model("sam_vit_h", "Segment Anything ViT-H, 1024×1024, user checkpoint",
                adapter=_ADAPTER)
def sam_vit_h():
    enc = _sam_vit(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))
    return _sam(enc, 64, 1024)


# Tiny random configurations: same code paths (window padding included), seconds to run.
_TINY_DECODER = dict(dim=32, mlp_dim=64, heads=2)


@register_model("tiny_litemedsam", "test config: LiteMedSAM layout, 64×64, random weights",
                needs_checkpoint=False, adapter=_ADAPTER)
def tiny_litemedsam():
    enc = _tiny_vit(img_size=64, stem="conv1x1", num_classes=0, embed_dims=(8, 16, 24, 32),
                    depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 2), window_sizes=(7, 7, 14, 7),
                    out_chans=32)
    return _sam(enc, 16, 64, preprocess=_litemedsam_preprocess(64), **_TINY_DECODER)


@register_model("tiny_mobile_sam", "test config: MobileSAM layout, 128×128, random weights",
                needs_checkpoint=False, adapter=_ADAPTER)
def tiny_mobile_sam():
    enc = _tiny_vit(img_size=128, embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1),
                    num_heads=(1, 2, 2, 2), window_sizes=(4, 5, 8, 3), num_classes=10,
                    out_chans=32)
    return _sam(enc, 8, 128, **_TINY_DECODER)


@register_model("tiny_sam_vit", "test config: SAM ViT layout, 128×128, random weights",
                needs_checkpoint=False, adapter=_ADAPTER)
def tiny_sam_vit():
    enc = _sam_vit(img_size=128, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,),
                   window_size=3, out_chans=32)
    return _sam(enc, 8, 128, **_TINY_DECODER)
