"""Single-graph networks on the command line: a registered image classifier (ViT/DeiT) or a
user's own model (`--model file.py:factory`), their example and calibration inputs, and their
calibration folders.

A user's calibration is done and loaded through the Python API (`trtq.quantize` /
`trtq.load`), which also quantizes attention written with functions (`torch.matmul`, SDPA).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trtq.errors import DataError, TrtqError

log = logging.getLogger("trtq.calib")

BATCH = 8  # pictures per calibration forward pass
EXAMPLE_SIZE = (240, 320)  # the synthetic example picture (height, width) when none is given


@dataclass(frozen=True)
class Network:
    """A model exported as one graph, with what its sidecars record."""

    module: object  # torch.nn.Module in eval mode
    name: str  # the registered name, or the user's canonical reference
    image: Callable | None  # rgb (H, W, 3) uint8 -> (1, C, H, W) float32, when it takes pictures
    sidecar: dict = field(default_factory=dict)  # preprocessing, the user model's provenance
    inputs: dict = field(default_factory=dict)  # input artifacts' SHA-256 (checkpoint, source)
    user: bool = False

    def output_names(self, outputs) -> tuple[str, ...]:
        if not self.user:
            return ("logits",)
        return ("output",) if len(outputs) == 1 else tuple(f"output_{i}"
                                                            for i in range(len(outputs)))


def is_single_graph(model: str) -> bool:
    """A user's model or a registered classifier (an unknown name raises, listing the names)."""
    from trtq.models import get_spec
    from trtq.models.classifiers import is_classifier
    from trtq.models.user_model import is_user_reference

    if is_user_reference(model):
        return True
    get_spec(model)
    return is_classifier(model)


def load_network(model: str, checkpoint) -> Network:
    from dataclasses import asdict

    from trtq.models import checkpoint_provenance, load_model
    from trtq.models.user_model import is_user_reference, load_user_model

    if is_user_reference(model):
        user = load_user_model(model, checkpoint)
        hashes = {"model_source": user.provenance.get("file_sha256"),
                  "checkpoint": user.provenance.get("checkpoint_sha256")}
        return Network(user.module, user.reference, user.image if user.preprocess else None,
                       {"preprocess": None, "user_model": user.provenance},
                       {k: v for k, v in hashes.items() if v}, user=True)
    record = checkpoint_provenance(model, checkpoint)
    module = load_model(model, record["checkpoint"])
    inputs = {"checkpoint": record["checkpoint_sha256"]} if record["checkpoint_sha256"] else {}
    return Network(module, model, lambda rgb, name="": module.preprocess.image(rgb),
                   {"preprocess": asdict(module.preprocess)}, inputs)


def run_forward(net: Network, args: tuple, label: str):
    """`net.module(*args)`; a failure inside the user's forward is their input's problem."""
    try:
        return net.module(*args)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if not net.user:
            raise
        raise DataError(f"{net.name}: forward failed on {label} ({type(exc).__name__}: "
                        f"{exc}); check that the inputs fit the model") from exc


@dataclass(frozen=True)
class Inputs:
    """Forward calls' arguments: (label, tensors) per call, and the inputs' names."""

    calls: list[tuple[str, tuple]]
    names: tuple[str, ...]
    files: tuple[str, ...] = ()


def _pictures(net: Network, folder) -> Inputs:
    import torch

    paths, images = [], []
    for path, rgb in folder:
        paths.append(str(path))
        images.append(net.image(rgb, str(path)))
    shapes = sorted({a.shape[1:] for a in images})
    if len(shapes) > 1:
        raise DataError(f"the preprocess of {net.name} gives pictures of different shapes "
                        f"({shapes[0]}, {shapes[1]}); resize them to one size in it")
    calls = [(f"images {i + 1}-{min(i + BATCH, len(images))} of {folder.root}",
              (torch.from_numpy(np.concatenate(images[i:i + BATCH])),))
             for i in range(0, len(images), BATCH)]
    return Inputs(calls, ("image",), tuple(paths))


def _tensors(net: Network, folder) -> Inputs:
    import torch

    from trtq.models.user_model import forward_arguments

    names = folder.arguments(*forward_arguments(net.module))
    calls = [(folder.name(i), tuple(torch.from_numpy(a) for a in folder.load(i, names)))
             for i in range(len(folder))]
    return Inputs(calls, tuple(names), tuple(str(p) for p in folder.paths))


def open_data(images, calib_data, limit: int | None):
    """The checked folder behind --images (pictures) or --calib-data (.npz inputs), or None;
    opened before the model loads, so bad data is refused first."""
    from trtq.data import ImageFolder
    from trtq.data.npz_inputs import NpzInputs

    if images and calib_data:
        raise TrtqError("give --images DIR (pictures) or --calib-data DIR (.npz inputs), not both")
    if images:
        return ImageFolder(images, limit=limit)
    return NpzInputs(calib_data, limit=limit) if calib_data else None


def data_inputs(net: Network, folder) -> Inputs:
    """Every forward call of `folder` (from `open_data`) for `net`."""
    from trtq.data import ImageFolder

    if isinstance(folder, ImageFolder):
        if net.image is None:
            raise TrtqError(f"{net.name} returned no preprocess, so pictures cannot be fed to "
                            "it: return (module, preprocess) from the factory, or give "
                            "--calib-data DIR with .npz input files")
        return _pictures(net, folder)
    return _tensors(net, folder)


def example_inputs(net: Network, folder) -> Inputs:
    """One call of two examples: the first two pictures or the first .npz file of `folder`,
    else two synthetic pictures through the preprocessing."""
    import torch

    if folder is not None:
        found = data_inputs(net, folder)
        return Inputs(found.calls[:1], found.names)
    if net.image is None:
        raise TrtqError(f"{net.name} returned no preprocess, so trtq cannot make an example "
                        "input: give --calib-data DIR (.npz inputs) or --images DIR, or return "
                        "(module, preprocess) from the factory")
    from trtq.data.samples import synthetic_rgb

    pictures = [net.image(synthetic_rgb(*EXAMPLE_SIZE, np.random.default_rng(seed)),
                          "a synthetic picture") for seed in (0, 1)]
    return Inputs([("two synthetic pictures", (torch.from_numpy(np.concatenate(pictures)),))],
                  ("image",))


def example_part(net: Network, folder):
    """The graph to export (`trtq.export.onnx_fp32.OnnxPart`): traced on the example, every
    input and output with a batch axis dynamic, checked at the example's batch and at 1."""
    import torch

    from trtq.export.onnx_fp32 import OnnxPart, exact_inputs

    example = example_inputs(net, folder)
    label, args = example.calls[0]
    with torch.inference_mode():
        outputs = run_forward(net, args, label)
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
    if not isinstance(outputs, (tuple, list)) \
            or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise TrtqError(f"{net.name}: forward returns a {type(outputs).__name__}; to export it, "
                        "return a tensor or a tuple of tensors")
    names = net.output_names(outputs)
    axes = {name: {0: "batch"} for name, t in (*zip(example.names, args, strict=True),
                                               *zip(names, outputs, strict=True)) if t.ndim}
    feeds = ({n: a.numpy() for n, a in zip(example.names, args, strict=True)},
             {n: a[:1].numpy() if a.ndim else a.numpy()
              for n, a in zip(example.names, args, strict=True)})
    return OnnxPart("model", exact_inputs(net.module, len(args)), args, example.names, names,
                    feeds, axes)


def forward_loop(net: Network, inputs: Inputs, progress=None) -> Callable:
    """`forward_loop(model)` over `inputs` (trtq.quantize's), naming the call that fails."""
    from trtq.calib.observers import NonFiniteError

    def loop(model) -> int:
        calls = progress(inputs.calls) if progress else inputs.calls
        for label, args in calls:
            try:
                run_forward(net, args, label)
            except NonFiniteError as exc:
                exc.image = exc.image or label
                raise
        return len(inputs.calls)

    return loop


def load_calibration(net: Network, calibrated) -> dict:
    """Quantize `net.module` as the calibration folder says (`trtq.load`); its sidecar."""
    import trtq
    from trtq.calib.state_dir import calibration_record, state_path

    record = calibration_record(calibrated, net.name)
    source = (record.get("user_model") or {}).get("file_sha256")
    if source and source != (net.sidecar.get("user_model") or {}).get("file_sha256"):
        log.warning("%s changed since %s was calibrated from it", net.name, calibrated)
    trtq.load(net.module, state_path(calibrated))
    return record
