"""Inference backends for SAM-family evaluation, all with one interface.

A backend has `preprocess` (the model's `Preprocess`), `encode(image) -> embeddings` and
`decode(embeddings, boxes) -> (low-res mask logits, iou)`, on numpy arrays. The PyTorch
backend runs the module; the onnxruntime backend runs the exported encoder/decoder ONNX pair
and takes the preprocessing from their sidecars, so it needs no model code.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trtq.artifacts import check_pair, read_sidecar
from trtq.errors import ArtifactError
from trtq.models.preprocess import Preprocess

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"


class SamBackend(Protocol):
    name: str
    preprocess: Preprocess

    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def decode(
        self, embeddings: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


class TorchBackend:
    name = "torch"

    def __init__(self, model) -> None:
        self.model = model.eval()
        self.preprocess = model.preprocess
        self._decoder = model.box_decoder()

    def encode(self, image: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.image_encoder(torch.from_numpy(image)).numpy()

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            masks, iou = self._decoder(torch.from_numpy(embeddings), torch.from_numpy(boxes))
        return masks.numpy(), iou.numpy()


def preprocess_from_record(record: dict[str, Any]) -> Preprocess:
    raw = record.get("preprocess")
    if not isinstance(raw, dict):
        raise ArtifactError("the ONNX sidecar has no preprocessing record; re-export with trtq")
    names = {f.name for f in fields(Preprocess)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
    return Preprocess(**values)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_dir: str | os.PathLike, model: str | None = None,
                 threads: int | None = None) -> None:
        from trtq.export.onnxruntime_session import create_session

        root = Path(onnx_dir)
        enc_path, dec_path = root / ENCODER_FILE, root / DECODER_FILE
        for path in (enc_path, dec_path):
            if not path.is_file():
                raise ArtifactError(f"{path} does not exist; run `trtq export --out {root}` first")
        enc_meta, dec_meta = read_sidecar(enc_path), read_sidecar(dec_path)
        self.model_name = enc_meta.get("model")
        if model is not None and self.model_name != model:
            raise ArtifactError(f"{root} holds an export of {self.model_name!r}, not {model!r}; "
                                "pass the matching --model or --onnx-dir")
        if dec_meta.get("model") != self.model_name:
            raise ArtifactError(f"{enc_path} and {dec_path} come from different models")
        check_pair(root, enc_meta, dec_meta)
        self.preprocess = preprocess_from_record(enc_meta)
        self.encoder = create_session(enc_path, threads)
        self.decoder = create_session(dec_path, threads)
        self.onnx_sha256 = {"encoder": enc_meta["sha256"], "decoder": dec_meta["sha256"]}

    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"image": image})[0]

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks, iou = self.decoder.run(None, {"image_embeddings": embeddings, "boxes": boxes})
        return masks, iou
