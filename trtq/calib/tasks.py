"""Calibration tasks: how a model is run on calibration data, and the loss whose gradient weights
PTQ4ViT's Hessian-guided search (ALGORITHMS.md §6).

The loss must have a real gradient with the model in full precision. The reference code's
KL(p_FP ‖ p_model) between the model and itself has a zero gradient in exact arithmetic, so its
"Hessian" is rounding noise. trtq uses, per sample:

* SAM (`SamTask`): BCE + Dice of the predicted mask logits against the model's own thresholded
  mask (logits > 0). d(BCE)/dz = σ(z) − 1[z > 0] is non-zero everywhere and largest at the
  mask boundary, where quantization error flips pixels.
* classifiers (`ClassifierTask`): cross-entropy against the labels when given, else against the
  model's own top-1 (pseudo-label).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trtq.calib.observers import NonFiniteError


def run_sample(model: nn.Module, sample):
    """SAM's encoder on a `CalibSample`'s image, then its box decoder on the sample's boxes;
    returns the decoder's outputs (None without boxes)."""
    return model.predict_boxes(sample.rgb, sample.boxes)


def _named(sample, index: int) -> str:
    return getattr(sample, "name", "") or f"#{index + 1} of the calibration set"


def sam_forward_loop(samples: Iterable, progress: Callable | None = None):
    """A forward loop running `run_sample` on every sample; returns how many ran. A NaN/Inf
    met by an observer is reported with the sample's image name."""

    def loop(model: nn.Module) -> int:
        count = 0
        for sample in progress(samples) if progress else samples:
            try:
                run_sample(model, sample)
            except NonFiniteError as exc:
                exc.image = exc.image or _named(sample, count)
                raise
            count += 1
        return count

    return loop


def mask_loss(logits: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of mask logits (N, 1, H, W) against (logits > 0), the FP model's mask."""
    target = (logits.detach() > 0).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    dice = 1 - (2 * (prob * target).sum(1) + 1) / (prob.sum(1) + target.sum(1) + 1)
    return bce + dice.mean()


def self_kl_loss(logits: torch.Tensor) -> torch.Tensor:
    """The reference code's loss, for comparison only: the per-pixel Bernoulli KL(p_FP ‖ p) of
    the mask logits against themselves detached. Its gradient is zero in exact arithmetic."""
    p = torch.sigmoid(logits.detach())
    return (p * (torch.log(p) - F.logsigmoid(logits))
            + (1 - p) * (torch.log1p(-p) - F.logsigmoid(-logits))).mean()


class SamTask:
    """Box-prompted SAM calibration on `CalibSample`s (image + annotation boxes)."""

    def __init__(self, samples: Iterable, loss: Callable = mask_loss) -> None:
        self.samples = list(samples)
        self.loss = loss

    def forward_loop(self, progress: Callable | None = None) -> Callable[[nn.Module], int]:
        return sam_forward_loop(self.samples, progress)

    def probe(self):
        """The first sample with boxes (BIG's probe), or None."""
        return next((s for s in self.samples if s.boxes is not None and len(s.boxes)), None)

    def losses(self, model: nn.Module, progress: Callable | None = None) -> Iterator:
        for sample in progress(self.samples) if progress else self.samples:
            out = run_sample(model, sample)
            if out is not None:  # no boxes: the decoder, hence the loss, is not run
                yield self.loss(out[0])


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


def as_task(data):
    """A task from `calibrate`'s `data`: a task object, or CalibSamples (SAM)."""
    if hasattr(data, "losses") and hasattr(data, "forward_loop"):
        return data
    return SamTask(data)
