"""FP32 ONNX export of a SAM-family model as an encoder/decoder pair.

`DIR/encoder.onnx`: image (1, 3, S, S) → image_embeddings
`DIR/decoder.onnx`: image_embeddings + boxes (num_boxes, 4) → low_res_masks, iou_predictions

Each file is checked with onnx.checker, run in onnxruntime against PyTorch on the same inputs
(the export fails if they disagree), written atomically, and described by a sidecar JSON
holding the model name, the preprocessing, the parity figures and the input hashes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trtq.artifacts import atomic_output, check_writable, sidecar_path, write_sidecar
from trtq.errors import ArtifactError

log = logging.getLogger("trtq.export")

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
DEFAULT_OPSET = 17
# Parity bound between onnxruntime and PyTorch, relative to the output's largest magnitude.
PARITY_RTOL = 1e-4


@dataclass(frozen=True)
class ExportSpec:
    """What to export: the model, where it came from, and how."""

    model_name: str
    checkpoint_sha256: str | None = None
    opset: int = DEFAULT_OPSET


def sample_inputs(model, num_boxes: int = 3, seed: int = 0):
    """A deterministic synthetic image (preprocessed) and boxes inside it, as torch tensors."""
    import torch

    rng = np.random.default_rng(seed)
    size = model.input_size
    h, w = size, (size * 3) // 4
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 9.0) + np.cos(yy / 13.0)) * 60 + 128
    rgb = np.clip(base[..., None] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    image = torch.from_numpy(model.preprocess.image(rgb))
    corners = np.sort(rng.uniform(0, 1, (num_boxes, 2, 2)) * [w - 1, h - 1], axis=1)
    boxes = model.preprocess.boxes(corners.reshape(num_boxes, 4), (h, w))
    return image, torch.from_numpy(boxes)


def _torch_export(module, args, path: Path, inputs, outputs, dynamic_axes, opset: int) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices are expected here
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                          input_names=inputs, output_names=outputs, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)


def _parity(session, feeds: dict, expected: list[np.ndarray]) -> float:
    got = session.run(None, feeds)
    worst = 0.0
    for g, e in zip(got, expected, strict=True):
        if g.shape != e.shape:
            raise ArtifactError(f"ONNX output shape {g.shape} differs from PyTorch {e.shape}")
        scale = max(float(np.abs(e).max()), 1.0)
        worst = max(worst, float(np.abs(g - e).max()) / scale)
    return worst


def _write_part(module, args, target: Path, names, dynamic_axes, spec: ExportSpec, force: bool,
                parity_feeds: list[dict]) -> dict:
    """Export one part, verify it, move it into place and write its sidecar."""
    import torch

    from trtq.engines.onnxruntime_session import check_onnx, create_session

    inputs, outputs = names
    with atomic_output(target, force) as tmp:
        _torch_export(module, args, tmp, inputs, outputs, dynamic_axes, spec.opset)
        check_onnx(tmp)
        session = create_session(tmp)
        worst = 0.0
        with torch.inference_mode():
            for feeds in parity_feeds:
                expected = module(*(torch.from_numpy(feeds[n]) for n in inputs))
                expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
                worst = max(worst, _parity(session, feeds, [t.numpy() for t in expected]))
        if worst > PARITY_RTOL:
            raise ArtifactError(f"{target.name}: onnxruntime differs from PyTorch by {worst:.2e} "
                                f"(relative, bound {PARITY_RTOL:.0e}); the export is wrong")
    return {"parity_max_rel_diff": worst, "parity_cases": len(parity_feeds)}


def export_fp32(model, spec: ExportSpec, out_dir: str | os.PathLike, force: bool = False) -> dict:
    """Export `model` to `out_dir/encoder.onnx` and `out_dir/decoder.onnx` (+ sidecars)."""
    import torch

    out = Path(out_dir)
    enc_path, dec_path = out / ENCODER_FILE, out / DECODER_FILE
    for path in (enc_path, dec_path, sidecar_path(enc_path), sidecar_path(dec_path)):
        check_writable(path, force)
    model = model.eval()
    image, boxes = sample_inputs(model)
    other_image, _ = sample_inputs(model, seed=1)
    with torch.inference_mode():
        emb = model.image_encoder(image)
    common = {"model": spec.model_name, "precision": "fp32", "opset": spec.opset,
              "preprocess": asdict(model.preprocess)}
    inputs = {"checkpoint": spec.checkpoint_sha256} if spec.checkpoint_sha256 else {}

    log.info("exporting the image encoder to %s", enc_path)
    enc_feeds = [{"image": image.numpy()}, {"image": other_image.numpy()}]
    enc_info = _write_part(model.image_encoder, (image,), enc_path,
                           (["image"], ["image_embeddings"]), None, spec, force, enc_feeds)
    write_sidecar(enc_path, "onnx", inputs, {**common, "part": "encoder",
                  "input_shape": list(image.shape), "output_shape": list(emb.shape), **enc_info},
                  force=True)

    log.info("exporting the prompt encoder + mask decoder to %s", dec_path)
    dyn = {"boxes": {0: "num_boxes"}, "low_res_masks": {0: "num_boxes"},
           "iou_predictions": {0: "num_boxes"}}
    emb_np = emb.numpy()
    dec_feeds = [{"image_embeddings": emb_np, "boxes": boxes.numpy()[:n]} for n in (1, 3)]
    dec_info = _write_part(model.box_decoder(), (emb, boxes), dec_path,
                           (["image_embeddings", "boxes"], ["low_res_masks", "iou_predictions"]),
                           dyn, spec, force, dec_feeds)
    write_sidecar(dec_path, "onnx", inputs, {**common, "part": "decoder",
                  "dynamic_axes": {"num_boxes": ["boxes", "low_res_masks", "iou_predictions"]},
                  **dec_info}, force=True)
    return {"encoder": str(enc_path), "decoder": str(dec_path),
            "encoder_parity": enc_info["parity_max_rel_diff"],
            "decoder_parity": dec_info["parity_max_rel_diff"]}
