"""The SAM family's adapter (SAM ViT-B/L/H, MobileSAM, LiteMedSAM and their tiny test
configurations): its recipe rules and export boundaries, as data for the model-agnostic core.

Module names (what recipe rules and autoquant's groups match): `image_encoder.*` (TinyViT:
`image_encoder.patch_embed.seq.0`, `image_encoder.layers.1.blocks.0.attn.qkv`, the MBConv and
PatchMerging convolutions `image_encoder.layers.0.blocks.0.conv1`/`conv2`/`conv3`; SAM ViT:
`image_encoder.patch_embed.proj`, `image_encoder.blocks.0.attn.qkv`), `prompt_encoder.*` and
`mask_decoder.*` (`mask_decoder.transformer.layers.1.cross_attn_token_to_image.q_proj`,
`mask_decoder.transformer.final_attn_token_to_image`, the output heads
`mask_decoder.output_upscaling`, `mask_decoder.output_hypernetworks_mlps`,
`mask_decoder.iou_prediction_head`). autoquant's groups are the indexed blocks
(`image_encoder.layers.1.blocks.0`, `mask_decoder.transformer.layers.1`) and, without an index,
the first three components (`mask_decoder.transformer.final_attn_token_to_image`).

Export: `encoder.onnx` (image (1, 3, S, S) → image_embeddings), traced from
`model.image_encoder`, so its node names lack the `image_encoder.` prefix
(`/layers.1/blocks.0/attn/qkv/MatMul`); `decoder.onnx` (image_embeddings + boxes (N, 4) →
low_res_masks, iou_predictions), traced from the box decoder, which holds `prompt_encoder` and
`mask_decoder` under their own names.
"""

from __future__ import annotations

from trtq.models.adapters import ExportBoundary, ModelAdapter, OnnxPart, register_adapter
from trtq.models.sam_calibration import SamTask
from trtq.recipes import ModelRules

# Quantizers kept in float by every preset: the image itself entering the patch embedding,
# the prompt encoder, and the mask decoder's output heads (ALGORITHMS.md §1).
FLOAT_PATTERNS = (
    "image_encoder.patch_embed.seq.0.input_quantizer",  # TinyViT: first conv sees the image
    "image_encoder.patch_embed.proj.input_quantizer",  # SAM ViT
    # The ViT/DeiT classifiers' patch embedding (their adapter's rule): it matches no SAM
    # quantizer, and stays here because the SAM presets carried it before adapters existed;
    # the recipe hash (calibration ids, cached states) depends on the rule list.
    "patch_embed.proj.input_quantizer",
    "prompt_encoder.*",
    "mask_decoder.output_upscaling.*",
    "mask_decoder.output_hypernetworks_mlps.*",
    "mask_decoder.iou_prediction_head.*",
    # Measured on LiteMedSAM (experiments/sensitivity.py, busi): the two most damaging quantizers
    # per MAC. TinyViT's depthwise convs (`conv2` of MBConv and PatchMerging) see post-GELU
    # activations whose channel ranges differ 25×, so a per-tensor INT8 scale erases most
    # channels (mask IoU vs float 0.93 from one layer), for ~1 % of encoder MACs. The decoder's
    # token→image attn·v multiplies softmax probabilities over 4096 image tokens (≈1/4096
    # each), below one uniform INT8 step: PTQ4SAM's log2 quantizer (AGQ) is the fix for that.
    "image_encoder.*.conv2.*",
    "mask_decoder.*token_to_image.av_matmul.*",
)

SAM_RULES = ModelRules(
    float_patterns=FLOAT_PATTERNS,
    # PTQ4SAM's BIG: the decoder's token→image attentions, whose K is bimodal
    big_layers="mask_decoder.*token_to_image",
    # TinyViT's 1×1 `conv3` (MBConv and PatchMerging) reads a GELU output like the MLPs' fc2
    post_gelu_inputs=("image_encoder.*.conv3.input_quantizer",),
    # SAM's decoder MLPs use ReLU, whose output a symmetric range wastes half of
    shifted_inputs=("mask_decoder.*.mlp.lin2.input_quantizer",),
    # the token→image attn·v's V, float with its softmax in the uniform presets
    float_attn_values=("mask_decoder.*token_to_image.av_matmul.other_quantizer",),
    # On the onnxruntime target a log2 quantizer takes w8a8's placement, which
    # experiments/results/w8a8-litemedsam.json measures: float for the decoder's token->image
    # softmax over 4096 image tokens (both operands of its attn.v matmul).
    onnxruntime_float=("mask_decoder.*token_to_image.av_matmul.*",),
    onnxruntime_float_reason="float for the decoder's token->image attention",
)


def sample_inputs(model, num_boxes: int = 3, seed: int = 0):
    """A deterministic synthetic image (preprocessed) and boxes inside it, as torch tensors."""
    import numpy as np
    import torch

    from trtq.data.samples import synthetic_rgb

    rng = np.random.default_rng(seed)
    size = model.input_size
    h, w = size, (size * 3) // 4
    rgb = synthetic_rgb(h, w, rng)
    image = torch.from_numpy(model.preprocess.image(rgb))
    corners = np.sort(rng.uniform(0, 1, (num_boxes, 2, 2)) * [w - 1, h - 1], axis=1)
    boxes = model.preprocess.boxes(corners.reshape(num_boxes, 4), (h, w))
    return image, torch.from_numpy(boxes)


def sam_parts(model) -> tuple[OnnxPart, OnnxPart]:
    """The encoder and box-decoder parts of a SAM-family model, with their parity inputs."""
    import torch

    image, boxes = sample_inputs(model)
    other_image, _ = sample_inputs(model, seed=1)
    with torch.inference_mode():
        emb = model.image_encoder(image)
    encoder = OnnxPart("encoder", model.image_encoder, (image,), ("image",),
                       ("image_embeddings",),
                       ({"image": image.numpy()}, {"image": other_image.numpy()}))
    dyn = {name: {0: "num_boxes"} for name in ("boxes", "low_res_masks", "iou_predictions")}
    decoder = OnnxPart("decoder", model.box_decoder(), (emb, boxes),
                       ("image_embeddings", "boxes"), ("low_res_masks", "iou_predictions"),
                       tuple({"image_embeddings": emb.numpy(), "boxes": boxes.numpy()[:n]}
                             for n in (1, 3)), dyn)
    return encoder, decoder


SAM = register_adapter(ModelAdapter(
    "sam", SAM_RULES,
    boundaries=(ExportBoundary("encoder", "image_encoder."), ExportBoundary("decoder")),
    build_parts=sam_parts, module_types=("trtq.models.sam.SamModel",),
    calibration_task=SamTask))
