"""`trtq run`: the whole pipeline on embedded defaults, in one call.

FP32 ONNX export and PyTorch-vs-onnxruntime agreement on the run's images (default: the sample
photos installed with scikit-image); INT8 with the recipe (default w8a8-ptq4sam, see
`trtq.pipeline_int8`): calibration on half the images, exports, agreement with FP32 on the
other half; mIoU on a COCO split when one is given; onnxruntime CPU latency of FP32 and INT8
side by side; FP16 and INT8 TensorRT engines where TensorRT and a GPU exist. It writes
report.json, report.md and report.png.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from trtq import artifacts
from trtq.artifacts import check_parent
from trtq.data.images import ImageFolder
from trtq.errors import ArtifactError
from trtq.eval.sam_eval import sample_agreement
from trtq.pipeline_report import run_markdown

log = logging.getLogger("trtq.pipeline")


@dataclass(frozen=True)
class RunConfig:
    model: str = "litemedsam"
    checkpoint: str | None = None
    images: str | None = None  # folder for the agreement check; default: bundled samples
    data: str | None = None
    split: str = "val"
    limit: int | None = None
    iterations: int = 20
    warmup: int = 3
    recipe: str = "w8a8-ptq4sam"
    int8: bool = True
    min_agreement: float | None = 0.95  # autoquant's floor for the onnxruntime INT8; None: off
    out: str | None = None
    force: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmup < 0:
            raise ValueError("iterations must be >= 1 and warmup >= 0")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError("min_agreement is a mean mask IoU in [0, 1] (0: no autoquant)")

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{self.model}-{stamp}"


class RunInputs(NamedTuple):
    """The run's inputs, checked before anything is written."""

    images: list[Path]
    dataset: object  # a CocoBoxDataset, or None without --data
    provenance: dict  # model, checkpoint and its SHA-256


def check_out(cfg: RunConfig) -> Path:
    """The run's folder: absent or empty; with --force, an earlier run's folder (replaced
    whole when this run succeeds). Creates nothing."""
    out = cfg.out_dir()
    if os.path.lexists(out) and not out.is_dir():
        raise ArtifactError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not cfg.force:
            raise ArtifactError(f"{out} is not empty; choose another --out or pass --force")
        if not (out / "report.json").is_file():
            raise ArtifactError(f"{out} is not empty and holds no report.json, so it is not a "
                                "`trtq run` folder; --force replaces only an earlier run's "
                                "folder: choose another --out")
    check_parent(out)
    return out


def relocate(data, stage: Path, out: Path):
    """`data` with every string path under the staging folder moved to the final folder."""
    if isinstance(data, str):
        return str(out) + data[len(str(stage)):] if data.startswith(str(stage)) else data
    if isinstance(data, dict):
        return {k: relocate(v, stage, out) for k, v in data.items()}
    if isinstance(data, list):
        return [relocate(v, stage, out) for v in data]
    return data


def _evaluate_split(cfg: RunConfig, dataset, torch_backend, ort_backend, out: Path) -> dict:
    from trtq.eval.sam_eval import evaluate
    from trtq.progress import progress

    log.info("evaluating on %s/%s: %d images, %d instances", cfg.data, cfg.split,
             len(dataset), dataset.num_instances)
    summaries = {}
    reference = None
    for backend in (torch_backend, ort_backend):
        samples = progress(dataset, cfg.progress, len(dataset), f"eval {backend.name}")
        result = evaluate(backend, samples, reference)
        record = {**result.summary(), "backend": backend.name, "data": str(cfg.data),
                  "split": cfg.split, "seconds": result.seconds,
                  "per_instance": result.per_instance}
        artifacts.write_json(out / f"eval_{backend.name}.json", record)
        summaries[backend.name] = result.summary() | {"seconds": result.seconds}
        reference = reference or record
    return summaries


def run_pipeline(cfg: RunConfig) -> dict:
    """The whole run into `cfg.out_dir()`, written as one transaction (a failed or killed run
    leaves no folder behind); returns the report."""
    from trtq.data import CocoBoxDataset
    from trtq.data.samples import sample_image_paths
    from trtq.models import adapter_for, checkpoint_provenance, get_spec
    from trtq.models.classifiers import is_classifier
    from trtq.pipeline_int8 import split_images
    from trtq.recipes import get_recipe
    from trtq.staging import staged_folder

    # Validate every input before minutes of export work.
    get_spec(cfg.model)
    if is_classifier(cfg.model):
        raise ArtifactError(f"{cfg.model} is an image classifier; `trtq run` covers SAM-family "
                            "models (measure a classifier with `trtq classify`)")
    images = ImageFolder(cfg.images).paths if cfg.images else sample_image_paths()
    dataset = CocoBoxDataset(cfg.data, cfg.split, limit=cfg.limit) if cfg.data else None
    if cfg.int8:
        get_recipe(cfg.recipe, adapter_for(cfg.model).rules)
        split_images(images)
    out = check_out(cfg)
    inputs = RunInputs(images, dataset, checkpoint_provenance(cfg.model, cfg.checkpoint))
    with staged_folder(out, (), cfg.force, replace=True) as stage:
        report = _run_into(cfg, stage, out, inputs)
    return report


def _run_into(cfg: RunConfig, stage: Path, out: Path, inputs: RunInputs) -> dict:
    from trtq.eval.backends import OnnxRuntimeBackend, TorchBackend
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.models import load_model
    from trtq.pipeline_int8 import bench_pair, int8_stage, tensorrt_stage

    images, dataset, provenance = inputs
    model = load_model(cfg.model, provenance["checkpoint"])
    onnx_dir = stage / "onnx"
    exported = export_fp32(model, ExportSpec(cfg.model, provenance["checkpoint_sha256"]),
                           onnx_dir)
    torch_backend = TorchBackend(model)
    ort_backend = OnnxRuntimeBackend(onnx_dir, model=cfg.model)
    log.info("comparing PyTorch and onnxruntime masks on %d images", len(images))
    report = {"config": asdict(cfg) | {"out": str(out)}, **provenance, "export": exported,
              "sample_agreement": sample_agreement(torch_backend, ort_backend, images)}
    if dataset is not None:
        report["eval"] = _evaluate_split(cfg, dataset, torch_backend, ort_backend, stage)
    if cfg.int8:
        report["int8"] = int8_stage(cfg, stage, provenance, ort_backend, images, dataset)
        pair = bench_pair(onnx_dir, stage / "onnx-int8-onnxruntime", cfg)
        report["bench"] = _strip(pair["fp32"])
        report["int8"]["bench"] = _strip(pair["int8"])
        report["int8"]["speedup_vs_fp32"] = pair["speedup_vs_fp32"]
        report["tensorrt"] = tensorrt_stage(stage, onnx_dir, stage / "onnx-int8-tensorrt", cfg)
    else:
        from trtq.bench.onnxruntime_bench import bench_onnx

        report["bench"] = _strip({part: bench_onnx(onnx_dir / f"{part}.onnx", cfg.iterations,
                                                   cfg.warmup, progress=cfg.progress)
                                  for part in ("encoder", "decoder")})
    report["versions"] = artifacts.package_versions()
    report = relocate(report, stage, out)
    artifacts.write_json(stage / "report.json", report)
    artifacts.write_text(stage / "report.md", run_markdown(report))
    _plot(report, stage / "report.png")
    return report


def _strip(records: dict) -> dict:
    return {part: {k: v for k, v in r.items() if k != "samples_ms"} for part, r in records.items()}


def _plot(report: dict, path: Path) -> None:
    from trtq.bench.plots import pipeline_plot

    accuracy = {"fp32": {"agreement_miou": 1.0}}
    if "int8" in report:
        accuracy["int8"] = {"agreement_miou":
                            report["int8"]["agreement_with_fp32"]["agreement_miou"]}
        if "eval" in report["int8"]:  # the labelled split is the better measure: use it
            accuracy["int8"]["miou"] = report["int8"]["eval"]["miou"]
            accuracy["int8"]["agreement_miou"] = report["int8"]["eval"]["agreement_miou"]
            accuracy["fp32"]["miou"] = report["eval"]["onnxruntime"]["miou"]
    bench = {"fp32": report["bench"]}
    if "int8" in report:
        bench["int8"] = report["int8"]["bench"]
    with artifacts.atomic_output(path) as tmp:
        pipeline_plot({"bench": bench, "accuracy": accuracy}, tmp)
