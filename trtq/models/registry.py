"""Model registry: a name → how to build the module and where its weights come from.

Registering is cheap (no torch import); building and loading happen in `load_model`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtq.errors import CheckpointError, TrtqError
from trtq.models.checkpoints import WheelAsset, load_state_dict, load_strict, resolve_asset

if TYPE_CHECKING:
    from trtq.models.sam import SamModel

log = logging.getLogger("trtq.models")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    build: Callable[[], SamModel]
    weights: WheelAsset | None = None  # fetched automatically when no --checkpoint is given
    needs_checkpoint: bool = True  # False: random weights (seeded) are fine, for tests
    seed: int = 0


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, summary: str, weights: WheelAsset | None = None, needs_checkpoint: bool = True
) -> Callable[[Callable[[], SamModel]], Callable[[], SamModel]]:
    def wrap(build: Callable[[], SamModel]) -> Callable[[], SamModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, summary, build, weights, needs_checkpoint)
        return build

    return wrap


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(model_names())
        raise TrtqError(f"unknown model {name!r}; choose one of: {choices}") from None


def load_model(
    name: str, checkpoint: str | os.PathLike | None = None, download: bool = True
) -> SamModel:
    """Build model `name` in eval mode with its weights loaded strictly.

    `checkpoint` is a user path; without it the model's default weights are fetched (LiteMedSAM),
    or, for test configurations, seeded random weights are used.
    """
    import torch

    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = spec.build()
    if spec.weights is not None:
        path = resolve_asset(spec.weights, checkpoint, download=download)
    elif checkpoint is not None:
        path = checkpoint
    elif spec.needs_checkpoint:
        raise CheckpointError(
            f"model {name!r} needs --checkpoint PATH (its official weights cannot be "
            "downloaded by trtq; pass the .pth file you have)"
        )
    else:
        path = None
    if path is not None:
        log.info("loading %s weights from %s", name, path)
        load_strict(model, load_state_dict(path), name, path)
    return model.eval()
