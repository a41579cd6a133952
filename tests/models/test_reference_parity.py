"""Parity with the upstream reference implementations, through golden files.

tests/data/golden/README.md says how the goldens were made (upstream repositories and commits,
seeds, contents). Tolerance: trtq's LayerNorm2d uses `F.layer_norm` (one ONNX op) where the
references compute mean/var by hand, a ~1e-6 relative difference; everything else measured
bitwise equal. Differences are checked against 1e-4 × max(1, max|reference|).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trtq.models import load_model
from trtq.models.checkpoints import load_strict
from trtq.models.registry import get_spec

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
REAL = ["sam_vit_b", "sam_vit_l", "sam_vit_h", "mobile_sam", "litemedsam"]
TINY = ["tiny_sam_vit", "tiny_mobile_sam", "tiny_litemedsam"]
RTOL = 1e-4


def assert_close(got, ref: np.ndarray, what: str) -> None:
    got = got.detach().numpy() if torch.is_tensor(got) else np.asarray(got)
    if got.ndim == 4 and got.shape[-1] != ref.shape[-1]:  # goldens keep every step-th pixel
        step = got.shape[-1] // ref.shape[-1]
        got = got[..., ::step, ::step]
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, golden {ref.shape}"
    diff = float(np.abs(got - ref).max())
    tol = RTOL * max(1.0, float(np.abs(ref).max()))
    assert diff <= tol, f"{what}: max|trtq - reference| = {diff:.3g} > {tol:.3g}"


def seeded_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The goldens' weights (README): every float entry drawn in sorted-key order from NumPy's
    frozen RandomState: running_var 1 + 0.5|z|; prompt-encoder 2-D tables and output tokens z;
    other n-D z / sqrt(fan); other 1-D 0.5 z."""
    rs = np.random.RandomState(seed)
    state = {}
    for key, value in sorted(model.state_dict().items()):
        if not value.is_floating_point():
            state[key] = value.clone()
            continue
        z = torch.from_numpy(rs.standard_normal(tuple(value.shape)).astype(np.float32))
        if key.endswith("running_var"):
            z = 1 + 0.5 * z.abs()
        elif value.dim() == 2 and (key.startswith("prompt_encoder.") or "token" in key):
            pass  # unit scale, so that prompts move the masks far above the tolerance
        elif value.dim() > 1:
            z = z / value[0].numel() ** 0.5
        else:
            z = 0.5 * z
        state[key] = z
    return state


def normal(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("name", REAL)
def test_state_dict_keys_and_shapes_match_the_official_model(name):
    golden = json.loads((GOLDEN / f"keys_{name}.json").read_text())
    with torch.device("meta"):  # shapes only: no weights allocated, no init time
        model = get_spec(name).build()
    got = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(golden) - set(got)) == [], "keys of the official model missing in trtq"
    assert sorted(set(got) - set(golden)) == [], "keys in trtq absent from the official model"
    wrong = {key: (got[key], golden[key]) for key in golden if got[key] != golden[key]}
    assert wrong == {}, "shapes differ (trtq, official)"
    # An official checkpoint (these keys and shapes) loads through trtq's strict loader.
    state = {key: torch.empty(shape, device="meta") for key, shape in golden.items()}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = torch.empty(value.shape, dtype=value.dtype, device="meta")
    load_strict(model, state, name, f"keys_{name}.json")


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_matches_upstream_reference(name):
    golden = np.load(GOLDEN / f"{name}.npz")
    model = load_model(name)
    model.load_state_dict(seeded_state(model), strict=True)
    model.eval()
    s, h = model.input_size, model.prompt_encoder.embedding_hw[0]
    pe = model.prompt_encoder
    boxes = torch.from_numpy(golden["boxes"])
    coords, labels = torch.from_numpy(golden["coords"]), torch.from_numpy(golden["labels"])
    got = {}
    with torch.inference_mode():
        emb = got["emb"] = model.image_encoder(normal(1, (1, 3, s, s)))
        got["masks"], got["iou"] = model.box_decoder()(emb, boxes)
        got["multi_masks"], got["multi_iou"] = model.mask_decoder(
            emb, pe.dense_pe(), *pe(boxes=boxes), multimask_output=True
        )
        got["point_masks"], got["point_iou"] = model.point_decoder()(emb, coords, labels)
        got["sparse_mixed"], _ = pe(boxes=boxes[:2], points=(coords, labels))
        _, got["dense_mask"] = pe(masks=normal(2, (2, 1, 4 * h, 4 * h)))
    assert set(got) == set(golden.files) - {"boxes", "coords", "labels"}
    for key, value in got.items():
        assert_close(value, golden[key], f"{name} {key}")
    # Prompts matter at this tolerance: the masks of different boxes differ by more than 5x it.
    masks = got["masks"]
    assert (masks[0] - masks[1]).abs().max() > 5 * RTOL * max(1.0, masks.abs().max().item())


def test_tiny_golden_detects_a_changed_weight():
    """The comparison is sensitive: one perturbed relative-position table fails it."""
    golden = np.load(GOLDEN / "tiny_sam_vit.npz")
    model = load_model("tiny_sam_vit")
    state = seeded_state(model)
    state["image_encoder.blocks.0.attn.rel_pos_h"][0] += 0.05  # one offset: not softmax-invariant
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        emb = model.image_encoder(normal(1, (1, 3, model.input_size, model.input_size)))
    with pytest.raises(AssertionError, match="max\\|trtq - reference\\|"):
        assert_close(emb, golden["emb"], "perturbed emb")


def test_litemedsam_matches_reference_on_a_busi_image(litemedsam, busi):
    golden = np.load(GOLDEN / "litemedsam_busi.npz")
    path = busi / "val" / str(golden["image_name"])
    x = torch.from_numpy(litemedsam.preprocess.image(np.asarray(Image.open(path).convert("RGB"))))
    # Same network input as when the golden was made (else a preprocessing change, not the model).
    assert_close(x[0, :, ::16, ::16], golden["input_sub"], "preprocessed input")
    with torch.inference_mode():
        emb = litemedsam.image_encoder(x)
        logits, iou = litemedsam.box_decoder()(emb, torch.from_numpy(golden["boxes"]))
    assert_close(emb[0, ::8, ::4, ::4], golden["emb_sub"], "litemedsam image embeddings")
    assert_close(logits, golden["logits_sub"], "litemedsam mask logits")
    assert_close(iou, golden["iou"], "litemedsam IoU predictions")
    # Both boxes segment something inside the box and the model is confident about it.
    assert ((logits > 0).flatten(1).float().mean(1) > 0.01).all() and (iou > 0.5).all()
