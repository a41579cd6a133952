"""The accuracy cost of quantizing a layer group: mask agreement with FP32 on held-out images.

For a set of quantizers (one group's, or a combination), the calibrated model runs with only
those quantizers on, box-prompted on held-out calibration images (never the evaluation split),
and its masks are compared with the FP32 model's (mean IoU). The cost of a group is
1 − its agreement. The evaluations are independent, so they run in `jobs` worker processes,
each loading the model and the calibration once and splitting the CPU threads with the others.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

_WORKER: dict = {}


@dataclass(frozen=True)
class HeldOut:
    """Held-out images of a COCO split: `image_ids` of `root`/`split`."""

    root: str
    split: str
    image_ids: tuple[int, ...]

    def samples(self) -> list:
        from trtq.data import CocoBoxDataset

        dataset = CocoBoxDataset(self.root, self.split)
        dataset.image_ids = list(self.image_ids)
        return [s for s in dataset if s.instances]


@dataclass(frozen=True)
class ImageSet:
    """Images without annotations (`trtq run`'s photos): one centre box each. Only agreement
    with FP32 is meaningful on them (the "ground truth" mask is empty)."""

    paths: tuple[str, ...]

    def samples(self) -> list:
        import numpy as np

        from trtq.data import Instance, Sample, load_rgb
        from trtq.data.samples import center_box

        out = []
        for index, path in enumerate(self.paths):
            rgb = load_rgb(path)
            empty = np.zeros(rgb.shape[:2], dtype=bool)
            box = center_box(rgb.shape[:2])[0]
            out.append(Sample(index, str(path), rgb, (Instance(index, 0, box, empty),)))
        return out

    @property
    def image_ids(self) -> tuple[int, ...]:
        return tuple(range(len(self.paths)))


@dataclass(frozen=True)
class CostSetup:
    """What a worker needs to rebuild the calibrated model."""

    model: str
    checkpoint: str | None
    calibrated: str
    target: str
    held_out: HeldOut | ImageSet
    threads: int


def _load(setup: CostSetup):
    import torch

    from trtq.calib.state_dir import load_calibrated
    from trtq.eval.backends import TorchBackend
    from trtq.models import load_model

    torch.set_num_threads(setup.threads)
    model = load_model(setup.model, setup.checkpoint)
    load_calibrated(model, setup.model, setup.calibrated, setup.target)
    return TorchBackend(model)


def _init_worker(setup: CostSetup, reference: dict) -> None:
    _WORKER.update(backend=_load(setup), samples=setup.held_out.samples(), reference=reference)


def enable_only(model, names: Sequence[str]) -> None:
    """Quantizers named in `names` on (when calibrated), every other one off."""
    from trtq.calib.modules import quantizers

    wanted = set(names)
    for name, q in quantizers(model):
        q.enabled = name in wanted and q.spec is not None and q.scale is not None


def _agreement(names: Sequence[str]) -> float:
    from trtq.eval.sam_eval import evaluate

    backend = _WORKER["backend"]
    enable_only(backend.model, names)
    return evaluate(backend, _WORKER["samples"], _WORKER["reference"]).agreement_miou


def fp32_reference(setup: CostSetup) -> dict:
    """The FP32 model's masks on the held-out images (an eval result, for `evaluate`)."""
    from trtq.eval.backends import TorchBackend
    from trtq.eval.sam_eval import evaluate
    from trtq.models import load_model

    backend = TorchBackend(load_model(setup.model, setup.checkpoint))
    return {"per_instance": evaluate(backend, setup.held_out.samples()).per_instance}


class AgreementPool:
    """Agreement of quantizer subsets, computed in `jobs` processes (1: in this process)."""

    def __init__(self, setup: CostSetup, reference: dict, jobs: int) -> None:
        self.jobs = max(1, jobs)
        if self.jobs == 1:
            _init_worker(setup, reference)
            self._pool = None
        else:
            import multiprocessing

            self._pool = ProcessPoolExecutor(self.jobs, multiprocessing.get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(setup, reference))

    def agreements(self, subsets: Sequence[Sequence[str]]) -> list[float]:
        if self._pool is None:
            return [_agreement(s) for s in subsets]
        return list(self._pool.map(_agreement, subsets))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        _WORKER.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))
