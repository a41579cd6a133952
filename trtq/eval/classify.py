"""Classifier evaluation: top-1/top-5 accuracy against labels and top-1 agreement with a
reference run (e.g. the FP32 model) on any image folder.

Any `nn.Module` that maps (N, 3, H, W) float images to (N, classes) logits works, a calibrated
(fake-quantized) model included; the images are prepared by `model.preprocess` unless a
`preprocess` with an `.image(rgb) -> (1, 3, H, W) float32` method is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from trtq.errors import DataError

TOP_K = 5


def _batches(dataset: Iterable, preprocess, batch_size: int) -> Iterator[tuple[list, np.ndarray]]:
    meta, images = [], []
    for name, rgb, label in dataset:
        meta.append((str(name), label))
        images.append(preprocess.image(rgb))
        if len(images) == batch_size:
            yield meta, np.concatenate(images)
            meta, images = [], []
    if images:
        yield meta, np.concatenate(images)


def predict(model: torch.nn.Module, dataset: Iterable, batch_size: int = 8, *, preprocess=None,
            device: str | torch.device | None = None) -> list[dict]:
    """Per image, in dataset order: its name, label (or None) and top-5 class indices (fewer
    when the model has fewer classes). `dataset` yields (name, rgb uint8 HWC, label or None);
    `device` defaults to the device of the model's parameters."""
    preprocess = preprocess if preprocess is not None else getattr(model, "preprocess", None)
    if not hasattr(preprocess, "image"):
        raise TypeError("the model has no .preprocess; pass preprocess= with an .image(rgb) "
                        "method (e.g. trtq.models.classifier_preprocess.ClassifierPreprocess)")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows = []
    for meta, images in _batches(dataset, preprocess, batch_size):
        with torch.no_grad():
            logits = model(torch.from_numpy(images).to(device))
        if logits.ndim != 2 or logits.shape[0] != len(meta):
            raise TypeError(f"the model must return (N, classes) logits; got {tuple(logits.shape)} "
                            f"for {len(meta)} images")
        top = logits.topk(min(TOP_K, logits.shape[1]), dim=-1).indices.cpu().tolist()
        rows += [{"image": name, "label": label, "top5": t}
                 for (name, label), t in zip(meta, top, strict=True)]
    return rows


def reference_top1(reference, rows: list[dict]) -> dict[str, int]:
    """The reference's top-1 per image name, from a classify result (dict with "predictions"),
    its prediction list ([{"image", "top5"}, ...]) or top-1 ints in this run's image order."""
    if isinstance(reference, dict):
        if "predictions" not in reference:
            raise DataError("the reference is not a classify result (no 'predictions'); pass "
                            "the JSON written by `trtq classify`")
        reference = reference["predictions"]
    reference = list(reference)
    if reference and all(isinstance(r, (int, np.integer)) for r in reference):
        if len(reference) != len(rows):
            raise DataError(f"the reference has {len(reference)} predictions for {len(rows)} "
                            "images; give one top-1 class per image, in the dataset's order")
        return {r["image"]: int(t) for r, t in zip(rows, reference, strict=True)}
    try:
        return {str(r["image"]): int(r["top5"][0]) for r in reference}
    except (KeyError, IndexError, TypeError):
        raise DataError("reference predictions need an 'image' and a 'top5' list each (as "
                        "`trtq classify` writes them), or be one int per image") from None


def evaluate_classifier(model: torch.nn.Module, dataset: Iterable, reference=None,
                        batch_size: int = 8, *, preprocess=None,
                        device: str | torch.device | None = None,
                        progress: Callable | None = None) -> dict:
    """top1/top5 accuracy over the labelled images (None without labels); agreement = share of
    the images shared with `reference` whose top-1 equals the reference's; the per-image
    predictions; the seconds taken. The model is put in eval mode."""
    start = time.perf_counter()
    items = progress(dataset) if progress else dataset
    rows = predict(model.eval(), items, batch_size, preprocess=preprocess, device=device)
    labelled = [r for r in rows if r["label"] is not None]
    result = {"images": len(rows), "labelled_images": len(labelled), "top1": None,
              "top5": None, "agreement": None, "agreement_images": None}
    if labelled:
        result["top1"] = sum(r["top5"][0] == r["label"] for r in labelled) / len(labelled)
        result["top5"] = sum(r["label"] in r["top5"] for r in labelled) / len(labelled)
    if reference is not None:
        ref = reference_top1(reference, rows)
        common = [r for r in rows if r["image"] in ref]
        if not common:
            raise DataError("the reference run shares no image with this one; run both on the "
                            "same image folder")
        agree = sum(r["top5"][0] == ref[r["image"]] for r in common)
        result |= {"agreement": agree / len(common), "agreement_images": len(common)}
    return result | {"seconds": time.perf_counter() - start, "predictions": rows}


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A Markdown table of (label, evaluate_classifier result) rows."""

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f} %"

    lines = ["| model | images | top-1 | top-5 | agreement | seconds |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['images']} | {pct(r['top1'])} | {pct(r['top5'])} | "
                     f"{pct(r['agreement'])} | {r['seconds']:.1f} |")
    return "\n".join(lines)
