"""Calibration tasks: how a model is run on calibration data, and the loss whose gradient weights
PTQ4ViT's Hessian-guided search (ALGORITHMS.md §6).

A task has `forward_loop(progress)` (a function running the data through a model), `losses(model,
progress)` (one differentiable loss per sample, with a real gradient with the model in full
precision: the reference code's KL between the model and itself has none) and `probe()` (a
function running one sample, for BIG's statistics, or None). This module holds the generic one,
`ClassifierTask` (cross-entropy against the labels when given, else the model's own top-1); a
model family brings its own through its adapter (`trtq.models.adapters`; SAM's box-prompted
task with its mask loss is `trtq.models.sam_calibration.SamTask`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trtq.errors import CalibrationError, NonFiniteError


class ClassifierTask:
    """Image-classifier calibration on batches of preprocessed images (N, 3, H, W), with
    optional integer labels per batch."""

    def __init__(self, batches: Iterable[torch.Tensor],
                 labels: Iterable[torch.Tensor] | None = None) -> None:
        self.batches = [torch.as_tensor(b) for b in batches]
        self.labels = None if labels is None else [torch.as_tensor(t).long() for t in labels]
        if self.labels is not None and len(self.labels) != len(self.batches):
            raise ValueError("give one label tensor per image batch")

    def __len__(self) -> int:
        return sum(len(b) for b in self.batches)

    def forward_loop(self, progress: Callable | None = None) -> Callable[[nn.Module], int]:
        def loop(model: nn.Module) -> int:
            for index, batch in enumerate(progress(self.batches) if progress else self.batches):
                try:
                    model(batch)
                except NonFiniteError as exc:
                    exc.image = exc.image or f"batch {index + 1} of the calibration images"
                    raise
            return len(self.batches)

        return loop

    def probe(self):
        return None

    def losses(self, model: nn.Module, progress: Callable | None = None) -> Iterator:
        indexed = list(enumerate(self.batches))
        for i, batch in progress(indexed) if progress else indexed:
            logits = model(batch)
            target = logits.detach().argmax(-1) if self.labels is None \
                else self.labels[i].to(logits.device)
            yield F.cross_entropy(logits, target)


def as_task(data, model: nn.Module | None = None):
    """A task from `calibrate`'s `data`: a task object as it is, else the task the model's
    adapter builds from the data (SAM: `CalibSample`s)."""
    if hasattr(data, "losses") and hasattr(data, "forward_loop"):
        return data
    from trtq.models.adapters import adapter_for_module

    adapter = adapter_for_module(model) if model is not None else None
    if adapter is None or adapter.calibration_task is None:
        raise CalibrationError("this calibration data needs a task: give calibrate() a forward "
                               "loop (a function of the model) or a task object "
                               "(trtq.calib.tasks.ClassifierTask)")
    return adapter.calibration_task(data)
