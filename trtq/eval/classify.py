"""Classifier evaluation: top-1/top-5 accuracy against labels and top-1 agreement with a
reference run (e.g. the FP32 model) on any image folder."""

from __future__ import annotations

import time

import torch


def predict(model, dataset, batch_size: int = 8) -> list[dict]:
    """Per image: path, label (or None), top-5 class indices."""
    rows, batch, meta = [], [], []

    def flush():
        if not batch:
            return
        with torch.no_grad():
            logits = model(torch.from_numpy(__import__("numpy").concatenate(batch)))
        for (path, label), top in zip(meta, logits.topk(5, dim=-1).indices.tolist(), strict=True):
            rows.append({"image": str(path), "label": label, "top5": top})
        batch.clear()
        meta.clear()

    for path, rgb, label in dataset:
        batch.append(model.preprocess.image(rgb))
        meta.append((path, label))
        if len(batch) == batch_size:
            flush()
    flush()
    return rows


def evaluate_classifier(model, dataset, reference: list[dict] | None = None,
                        batch_size: int = 8) -> dict:
    """top1/top5 (labelled data only), agreement = share of images whose top-1 equals the
    reference run's (matched by image path), and the per-image predictions."""
    start = time.perf_counter()
    rows = predict(model.eval(), dataset, batch_size)
    labelled = [r for r in rows if r["label"] is not None]
    result = {"images": len(rows), "seconds": time.perf_counter() - start,
              "top1": None, "top5": None, "agreement": None, "predictions": rows}
    if labelled:
        result["top1"] = sum(r["top5"][0] == r["label"] for r in labelled) / len(labelled)
        result["top5"] = sum(r["label"] in r["top5"] for r in labelled) / len(labelled)
    if reference is not None:
        ref = {r["image"]: r["top5"][0] for r in reference}
        common = [r for r in rows if r["image"] in ref]
        if not common:
            raise ValueError("the reference run shares no image with this one")
        result["agreement"] = sum(r["top5"][0] == ref[r["image"]] for r in common) / len(common)
    return result
