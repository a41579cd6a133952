"""Model code paths on the tiny random configurations (seconds, no checkpoint)."""

from __future__ import annotations

import pytest
import torch

from trtq.errors import CheckpointError
from trtq.models import load_model, model_names
from trtq.models.layers import MatMul

TINY = ["tiny_litemedsam", "tiny_mobile_sam", "tiny_sam_vit"]


def test_registry_lists_the_real_and_tiny_models():
    assert {"litemedsam", "mobile_sam", "sam_vit_b", "sam_vit_l", "sam_vit_h"} <= set(model_names())
    assert set(TINY) <= set(model_names())


@pytest.mark.parametrize("name", TINY)
def test_encoder_decoder_shapes(name):
    model = load_model(name)
    s = model.input_size
    emb = model.image_encoder(torch.randn(1, 3, s, s))
    h = model.prompt_encoder.embedding_hw[0]
    assert emb.shape == (1, model.prompt_encoder.embed_dim, h, h)
    boxes = torch.tensor([[1.0, 2.0, s / 2, s / 2], [0.0, 0.0, s - 1.0, s - 1.0], [5, 9, 20, 30]])
    masks, iou = model.box_decoder()(emb, boxes)
    assert masks.shape == (3, 1, 4 * h, 4 * h) and iou.shape == (3, 1)
    assert torch.isfinite(masks).all()


@pytest.mark.parametrize("name", TINY)
def test_batched_boxes_equal_one_at_a_time(name):
    model = load_model(name)
    s = model.input_size
    with torch.inference_mode():
        image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(3))
        emb = model.image_encoder(image)
        boxes = torch.tensor([[1.0, 2.0, s / 2, s / 2], [4.0, 3.0, s - 5.0, s - 2.0]])
        together, _ = model.box_decoder()(emb, boxes)
        alone = torch.cat([model.box_decoder()(emb, boxes[i : i + 1])[0] for i in range(2)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_box_equals_two_corner_points():
    """A box is the same prompt as its corners given as points with labels 2 and 3."""
    model = load_model("tiny_sam_vit")
    pe = model.prompt_encoder
    boxes = torch.tensor([[3.0, 4.0, 50.0, 60.0]])
    as_box = pe.embed_boxes(boxes)
    as_points = pe.embed_points(boxes.reshape(1, 2, 2), torch.tensor([[2, 3]]), pad=False)
    assert torch.equal(as_box, as_points)


def test_point_prompts_pad_and_label_embeddings():
    model = load_model("tiny_sam_vit")
    pe = model.prompt_encoder
    coords = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]])
    tokens = pe.embed_points(coords, torch.tensor([[1, 0]]), pad=True)
    assert tokens.shape == (1, 3, pe.embed_dim)
    assert torch.equal(tokens[0, 2], pe.not_a_point_embed.weight[0])  # the padding point
    positive = pe.pe_layer.points(coords + 0.5, pe.image_hw)[0, 0]
    positive = positive + pe.point_embeddings[1].weight[0]
    assert torch.allclose(tokens[0, 0], positive)
    masks, iou = model.point_decoder()(torch.randn(1, 32, 8, 8), coords, torch.tensor([[1, 0]]))
    assert masks.shape == (1, 1, 32, 32)


@pytest.mark.parametrize("name", TINY)
def test_attention_matmuls_are_modules(name):
    """Both attention products are MatMul modules named qk_matmul / av_matmul."""
    model = load_model(name)
    names = [n for n, m in model.named_modules() if isinstance(m, MatMul)]
    assert names and len(names) % 2 == 0
    assert {n.rsplit(".", 1)[1] for n in names} == {"qk_matmul", "av_matmul"}
    assert any(n.startswith("image_encoder.") for n in names)
    assert any("cross_attn_token_to_image" in n for n in names)


def test_matmul_modules_are_on_the_computation_path():
    """Replacing the attention matmuls changes the output: they are really used."""
    model = load_model("tiny_litemedsam")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        before = model.image_encoder(x)
        for m in model.image_encoder.modules():
            if isinstance(m, MatMul):
                m.forward = lambda a, b: torch.matmul(a, b) * 0.5
        after = model.image_encoder(x)
    assert (before - after).abs().max() > 1e-3


def test_seeded_random_weights_are_reproducible():
    a = load_model("tiny_mobile_sam").state_dict()
    b = load_model("tiny_mobile_sam").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_checkpoint_for_model_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(load_model("tiny_sam_vit").state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit model 'tiny_mobile_sam'.*missing"):
        load_model("tiny_mobile_sam", checkpoint=path)


def test_checkpoint_round_trip_and_nested_state(tmp_path):
    model = load_model("tiny_mobile_sam")
    path = tmp_path / "wrapped.pth"
    torch.save({"model": model.state_dict()}, path)
    loaded = load_model("tiny_mobile_sam", checkpoint=path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_non_checkpoint_file_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model("tiny_mobile_sam", checkpoint=path)
