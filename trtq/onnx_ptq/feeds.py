"""Calibration inputs for an ONNX graph: an image folder or a folder of .npz files.

Images suit a model with one NCHW float input: each picture is resized to the input's size
("stretch": both sides to H×W; "letterbox": the longest side to fit, then centred zero padding,
as many detectors and saliency models are trained), scaled to [0, 1] and normalised with
`mean`/`std` (in [0, 1] units, e.g. ImageNet's 0.485 0.456 0.406 / 0.229 0.224 0.225).

An .npz file holds one sample: one array per graph input, keyed by the input's name, with or
without the batch axis. This serves models with several inputs or inputs that are not images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from trtq.errors import DataError

RESIZES = ("stretch", "letterbox")
_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64,
          onnx.TensorProto.INT32: np.int32, onnx.TensorProto.BOOL: np.bool_,
          onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64}


@dataclass(frozen=True)
class GraphInput:
    name: str
    dims: tuple[int | str, ...]  # ints, or the names of symbolic dims
    dtype: type


def graph_inputs(model: onnx.ModelProto) -> list[GraphInput]:
    """The graph's real inputs (not initializers listed as inputs)."""
    initializers = {i.name for i in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in tensor.shape.dim)
        found.append(GraphInput(value.name, dims, _NUMPY.get(tensor.elem_type, np.float32)))
    return found


@dataclass(frozen=True)
class ImageOptions:
    """How pictures become the input tensor."""

    size: tuple[int, int] | None = None  # (H, W); None: the input's static size
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise DataError(f"resize {self.resize!r}: use one of {', '.join(RESIZES)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise DataError("give --mean R G B and --std R G B (std > 0), in [0, 1] units")
        if self.size is not None and min(self.size) <= 0:
            raise DataError(f"--input-size {self.size}: give a positive H W")


def _image_input(inputs: list[GraphInput], options: ImageOptions) -> tuple[str, int, int]:
    if len(inputs) != 1 or len(inputs[0].dims) != 4:
        found = ", ".join(f"{i.name}{list(i.dims)}" for i in inputs)
        raise DataError(f"an image folder feeds a model with one NCHW input; this one has "
                        f"{found}: give --calib-data a folder of .npz files keyed by input name")
    single = inputs[0]
    channels, h, w = single.dims[1:]
    if channels not in (1, 3):
        raise DataError(f"input {single.name} has {channels} channels, not 1 or 3 (NCHW): use "
                        ".npz calibration data")
    if options.size is not None:
        h, w = options.size
    if not isinstance(h, int) or not isinstance(w, int) or h <= 0 or w <= 0:
        raise DataError(f"input {single.name} has no static height and width ({single.dims}); "
                        "give --input-size H W")
    return single.name, h, w


def letterbox_placement(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """Where "letterbox" puts an h×w picture in an out_h×out_w input: (height, width, top,
    left) of the resized picture, centred."""
    scale = min(out_h / h, out_w / w)
    nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
    return nh, nw, (out_h - nh) // 2, (out_w - nw) // 2


def _resize(rgb: np.ndarray, h: int, w: int, mode: str) -> np.ndarray:
    """float32 (h, w, 3) in [0, 1]."""
    from PIL import Image

    if mode == "stretch":
        out = Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR)
        return np.asarray(out, dtype=np.float32) / 255.0
    from trtq.models.preprocess import area_resize_uint8

    nh, nw, top, left = letterbox_placement(rgb.shape[0], rgb.shape[1], h, w)
    if nh <= rgb.shape[0] and nw <= rgb.shape[1]:
        small = area_resize_uint8(rgb, nh, nw)
    else:
        small = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR))
    canvas = np.zeros((h, w, 3), dtype=np.float32)
    canvas[top:top + nh, left:left + nw] = small.astype(np.float32) / 255.0
    return canvas


def image_tensor(rgb: np.ndarray, h: int, w: int, options: ImageOptions,
                 channels: int = 3) -> np.ndarray:
    """A uint8 RGB picture → the float32 (1, C, h, w) input."""
    x = (_resize(rgb, h, w, options.resize) - np.asarray(options.mean, np.float32)) \
        / np.asarray(options.std, np.float32)
    x = x.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x.mean(1, keepdims=True) if channels == 1 else x,
                                dtype=np.float32)


def _listing(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _npz_sample(path: Path, inputs: list[GraphInput]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    missing = [i.name for i in inputs if i.name not in arrays]
    if missing:
        raise DataError(f"{path.name} lacks the input(s) {', '.join(missing)} (it has "
                        f"{', '.join(sorted(arrays)) or 'nothing'}); key each array by the "
                        "graph input's name")
    feed = {}
    for single in inputs:
        array = arrays[single.name]
        if array.ndim == len(single.dims) - 1:
            array = array[None]
        if array.ndim != len(single.dims):
            raise DataError(f"{path.name}: {single.name} has shape {array.shape}, the graph "
                            f"wants rank {len(single.dims)} ({list(single.dims)})")
        feed[single.name] = np.ascontiguousarray(array, dtype=single.dtype)
    return feed


def calibration_feeds(folder: str | os.PathLike, model: onnx.ModelProto, count: int,
                      options: ImageOptions) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Up to `count` feeds from `folder` (sorted by name) and a record of what was read."""
    from trtq.data.images import IMAGE_SUFFIXES, load_rgb

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--calib-data {folder} is not a folder")
    if count < 1:
        raise DataError(f"--num-images {count}: give at least 1")
    inputs = graph_inputs(model)
    npz = _listing(folder, (".npz",))
    if npz:
        files = npz[:count]
        feeds = [_npz_sample(p, inputs) for p in files]
        return feeds, {"kind": "npz", "folder": str(folder), "files": [p.name for p in files]}
    pictures = _listing(folder, IMAGE_SUFFIXES)
    if not pictures:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no .npz "
                        "files")
    name, h, w = _image_input(inputs, options)
    channels = inputs[0].dims[1]
    files = pictures[:count]
    feeds = [{name: image_tensor(load_rgb(p), h, w, options, channels)} for p in files]
    return feeds, {"kind": "images", "folder": str(folder), "files": [p.name for p in files],
                   "input": name, "size": [h, w], "resize": options.resize,
                   "mean": list(options.mean), "std": list(options.std)}
