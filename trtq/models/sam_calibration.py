"""SAM's calibration task: box-prompted runs on `CalibSample`s (an image and its annotation
boxes) and the mask loss whose gradient weights PTQ4ViT's Hessian-guided search.

The loss (`mask_loss`) is BCE + Dice of the predicted mask logits against the model's own
thresholded mask (logits > 0): d(BCE)/dz = σ(z) − 1[z > 0] is non-zero everywhere and largest at
the mask boundary, where quantization error flips pixels. The reference code's KL(p_FP ‖ p_model)
between the model and itself (`self_kl_loss`, kept for comparison) has a zero gradient in exact
arithmetic, so its "Hessian" is rounding noise. The SAM adapter (`trtq.models.sam_adapter`)
hands `SamTask` to calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trtq.errors import NonFiniteError


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

    def probe(self) -> Callable[[nn.Module], object] | None:
        """BIG's probe: a run of the first sample with boxes (BIG reads the decoder's
        attentions), or None."""
        sample = next((s for s in self.samples if s.boxes is not None and len(s.boxes)), None)
        return None if sample is None else (lambda model: run_sample(model, sample))

    def losses(self, model: nn.Module, progress: Callable | None = None) -> Iterator:
        for sample in progress(self.samples) if progress else self.samples:
            out = run_sample(model, sample)
            if out is not None:  # no boxes: the decoder, hence the loss, is not run
                yield self.loss(out[0])
