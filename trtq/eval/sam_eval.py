"""Box-prompted mask evaluation of a SAM-family backend on a COCO-format split.

Per instance: the box prompt goes through the decoder, the low-resolution logits are
upsampled to the original image size and thresholded at 0 (sigmoid 0.5), and the mask is
compared with the ground truth (IoU) and, when a reference run is given, with that run's mask
for the same annotation (agreement). Masks are stored as COCO RLE so any later run can be
compared with this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from trtq.data.coco import Sample
from trtq.errors import DataError
from trtq.eval.masks import decode_rle, encode_rle, mask_iou
from trtq.models.preprocess import upscale_logits

log = logging.getLogger("trtq.eval")


@dataclass
class EvalResult:
    per_instance: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    agreement_miou: float | None = None
    agreement_instances: int = 0

    @property
    def miou(self) -> float:
        if not self.per_instance:
            return float("nan")
        return float(np.mean([r["iou"] for r in self.per_instance]))

    def summary(self) -> dict:
        out = {"miou": self.miou, "instances": len(self.per_instance),
               "images": len({r["image_id"] for r in self.per_instance})}
        if self.agreement_miou is not None:
            out["agreement_miou"] = self.agreement_miou
            out["agreement_instances"] = self.agreement_instances
        return out


def predict_masks(backend, rgb: np.ndarray, boxes: np.ndarray, chunk: int = 16):
    """Boolean masks (N, H, W) for boxes (N, 4) in original pixel coordinates."""
    import torch

    pre = backend.preprocess
    hw = rgb.shape[:2]
    emb = backend.encode(pre.image(rgb))
    frame_boxes = pre.boxes(boxes, hw)
    masks, scores = [], []
    for start in range(0, len(frame_boxes), chunk):
        low, iou = backend.decode(emb, frame_boxes[start:start + chunk])
        logits = upscale_logits(torch.from_numpy(low), pre.input_size, pre.resized_hw(hw), hw)
        masks.append((logits[:, 0] > 0).numpy())
        scores.append(iou[:, 0])
    return np.concatenate(masks), np.concatenate(scores)


def evaluate(backend, samples: Iterable[Sample], reference: dict | None = None) -> EvalResult:
    """Run `backend` on every instance of `samples`; `reference` is an earlier eval JSON."""
    ref_masks = _reference_index(reference) if reference else None
    result = EvalResult()
    agreements = []
    start = time.perf_counter()
    skipped = 0
    for sample in samples:
        skipped += getattr(sample, "skipped", 0)
        if not sample.instances:
            continue
        boxes = np.stack([inst.box for inst in sample.instances])
        masks, scores = predict_masks(backend, sample.rgb, boxes)
        for inst, mask, score in zip(sample.instances, masks, scores, strict=True):
            record = {"image_id": sample.image_id, "ann_id": inst.ann_id, "file": sample.file_name,
                      "box": [float(v) for v in inst.box], "iou": mask_iou(mask, inst.mask),
                      "predicted_iou": float(score), "rle": encode_rle(mask)}
            if ref_masks is not None and inst.ann_id in ref_masks:
                record["agreement"] = mask_iou(mask, decode_rle(ref_masks[inst.ann_id]))
                agreements.append(record["agreement"])
            result.per_instance.append(record)
    result.seconds = time.perf_counter() - start
    _check_instances(len(result.per_instance), skipped)
    if ref_masks is not None:
        if not agreements:
            raise DataError("the reference run shares no annotation ids with this evaluation; "
                            "give a reference from the same dataset and split")
        result.agreement_miou = float(np.mean(agreements))
        result.agreement_instances = len(agreements)
    return result


def _check_instances(evaluated: int, skipped: int) -> None:
    if skipped and evaluated:
        log.warning("%d degenerate annotations (empty mask or box outside the image) were left "
                    "out", skipped)
    if not evaluated:
        raise DataError(f"no instance could be evaluated ({skipped} degenerate annotations: "
                        "empty masks or boxes outside the image); an mIoU of nothing is not a "
                        "result - check the annotations, --split and --limit")


def _reference_index(reference: dict) -> dict[int, dict]:
    rows = reference.get("per_instance")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "rle" in r for r in rows):
        raise DataError("the reference file is not a trtq eval result (no per_instance masks)")
    return {int(r["ann_id"]): r["rle"] for r in rows}


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A short Markdown table of eval summaries: (label, summary) rows."""
    lines = ["| run | instances | mIoU vs GT | agreement mIoU |", "|---|---:|---:|---:|"]
    for label, s in rows:
        agree = f"{s['agreement_miou']:.4f}" if s.get("agreement_miou") is not None else "—"
        lines.append(f"| {label} | {s['instances']} | {s['miou']:.4f} | {agree} |")
    return "\n".join(lines)


def sample_agreement(backend_a, backend_b, paths: list) -> dict:
    """Mask IoU between two backends on the image files `paths`, one centre-box prompt per
    image (no labels needed): how far an export or a quantized model strays from a reference."""
    from trtq.data.images import load_rgb
    from trtq.data.samples import center_box

    if not paths:
        raise DataError("no images to compare the two models on; pass an image folder")
    rows = []
    for path in paths:
        rgb = load_rgb(path)
        box = center_box(rgb.shape[:2])
        a, _ = predict_masks(backend_a, rgb, box)
        b, _ = predict_masks(backend_b, rgb, box)
        rows.append({"image": path.name, "agreement": mask_iou(a[0], b[0]),
                     "mask_fraction": float(a[0].mean())})
    return {"images": len(rows), "agreement_miou": float(np.mean([r["agreement"] for r in rows])),
            "per_image": rows}
