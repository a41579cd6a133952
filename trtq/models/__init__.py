"""Model registry and SAM-family model code (TinyViT, SAM ViT, prompt encoder, mask decoder).

    from trtq.models import load_model
    model = load_model("litemedsam")          # fetches and verifies the checkpoint
    emb = model.image_encoder(x)              # export boundary 1
    masks, iou = model.box_decoder()(emb, boxes)   # export boundary 2

Each registered model names its adapter (`adapter_for(name)`, `trtq.models.adapters`): the
model-specific data the quantization core takes (recipe rules, export boundaries).
"""

from trtq.models import classifiers as _classifiers  # noqa: F401  (registers the models)
from trtq.models import sam_adapter as _sam_adapter  # noqa: F401  (registers the SAM adapter)
from trtq.models import zoo as _zoo  # noqa: F401
from trtq.models.adapters import (
    GENERIC,
    ModelAdapter,
    adapter_for,
    adapter_for_module,
    get_adapter,
    register_adapter,
)
from trtq.models.registry import (
    ModelSpec,
    checkpoint_provenance,
    get_spec,
    load_model,
    model_names,
    register_model,
    resolve_checkpoint,
)

__all__ = ["GENERIC", "ModelAdapter", "ModelSpec", "adapter_for", "adapter_for_module",
           "checkpoint_provenance", "get_adapter", "get_spec", "load_model", "model_names",
           "register_adapter", "register_model", "resolve_checkpoint"]
