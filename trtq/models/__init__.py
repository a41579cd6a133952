"""Model registry and SAM-family model code (TinyViT, SAM ViT, prompt encoder, mask decoder).

    from trtq.models import load_model
    model = load_model("litemedsam")          # fetches and verifies the checkpoint
    emb = model.image_encoder(x)              # export boundary 1
    masks, iou = model.box_decoder()(emb, boxes)   # export boundary 2
"""

from trtq.models import classifiers as _classifiers  # noqa: F401  (registers the models)
from trtq.models import zoo as _zoo  # noqa: F401
from trtq.models.registry import (
    ModelSpec,
    checkpoint_provenance,
    get_spec,
    load_model,
    model_names,
    register_model,
    resolve_checkpoint,
)

__all__ = ["ModelSpec", "checkpoint_provenance", "get_spec", "load_model", "model_names",
           "register_model", "resolve_checkpoint"]
