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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trtq import artifacts
from trtq.data.images import ImageFolder, load_rgb
from trtq.errors import ArtifactError
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
    out: str | None = None
    force: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmup < 0:
            raise ValueError("iterations must be >= 1 and warmup >= 0")

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{self.model}-{stamp}"


def _prepare_out(cfg: RunConfig) -> Path:
    out = cfg.out_dir()
    if out.exists() and any(out.iterdir()) and not cfg.force:
        raise ArtifactError(f"{out} is not empty; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    return out


def sample_agreement(torch_backend, ort_backend, paths: list[Path]) -> dict:
    """Mask IoU between PyTorch and onnxruntime on `paths`, one centre-box prompt per image."""
    from trtq.data.samples import center_box
    from trtq.eval.masks import mask_iou
    from trtq.eval.sam_eval import predict_masks

    rows = []
    for path in paths:
        rgb = load_rgb(path)
        box = center_box(rgb.shape[:2])
        a, _ = predict_masks(torch_backend, rgb, box)
        b, _ = predict_masks(ort_backend, rgb, box)
        rows.append({"image": path.name, "agreement": mask_iou(a[0], b[0]),
                     "mask_fraction": float(a[0].mean())})
    return {"images": len(rows), "agreement_miou": float(np.mean([r["agreement"] for r in rows])),
            "per_image": rows}


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
        artifacts.write_json(out / f"eval_{backend.name}.json", record, force=cfg.force)
        summaries[backend.name] = result.summary() | {"seconds": result.seconds}
        reference = reference or record
    return summaries


def run_pipeline(cfg: RunConfig) -> dict:
    from trtq.data import CocoBoxDataset
    from trtq.data.samples import sample_image_paths
    from trtq.eval.backends import OnnxRuntimeBackend, TorchBackend
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.models import checkpoint_provenance, load_model
    from trtq.pipeline_int8 import bench_pair, int8_stage, split_images, tensorrt_stage
    from trtq.recipes import get_recipe

    # Validate every input before minutes of export work.
    images = ImageFolder(cfg.images).paths if cfg.images else sample_image_paths()
    dataset = CocoBoxDataset(cfg.data, cfg.split, limit=cfg.limit) if cfg.data else None
    if cfg.int8:
        get_recipe(cfg.recipe)
        split_images(images)
    out = _prepare_out(cfg)
    provenance = checkpoint_provenance(cfg.model, cfg.checkpoint)
    model = load_model(cfg.model, provenance["checkpoint"])
    onnx_dir = out / "onnx"
    exported = export_fp32(model, ExportSpec(cfg.model, provenance["checkpoint_sha256"]),
                           onnx_dir, force=cfg.force)
    torch_backend = TorchBackend(model)
    ort_backend = OnnxRuntimeBackend(onnx_dir, model=cfg.model)
    log.info("comparing PyTorch and onnxruntime masks on %d images", len(images))
    report = {"config": asdict(cfg) | {"out": str(out)}, **provenance, "export": exported,
              "sample_agreement": sample_agreement(torch_backend, ort_backend, images)}
    if dataset is not None:
        report["eval"] = _evaluate_split(cfg, dataset, torch_backend, ort_backend, out)
    if cfg.int8:
        report["int8"] = int8_stage(cfg, out, provenance, ort_backend, images, dataset)
        pair = bench_pair(onnx_dir, out / "onnx-int8-onnxruntime", cfg)
        report["bench"] = _strip(pair["fp32"])
        report["int8"]["bench"] = _strip(pair["int8"])
        report["int8"]["speedup_vs_fp32"] = pair["speedup_vs_fp32"]
        report["tensorrt"] = tensorrt_stage(out, onnx_dir, out / "onnx-int8-tensorrt", cfg)
    else:
        from trtq.bench.onnxruntime_bench import bench_onnx

        report["bench"] = _strip({part: bench_onnx(onnx_dir / f"{part}.onnx", cfg.iterations,
                                                   cfg.warmup, progress=cfg.progress)
                                  for part in ("encoder", "decoder")})
    report["versions"] = artifacts.package_versions()
    artifacts.write_json(out / "report.json", report, force=cfg.force)
    artifacts.write_text(out / "report.md", run_markdown(report), force=cfg.force)
    _plot(report, out / "report.png", cfg.force)
    return report


def _strip(records: dict) -> dict:
    return {part: {k: v for k, v in r.items() if k != "samples_ms"} for part, r in records.items()}


def _plot(report: dict, path: Path, force: bool) -> None:
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
    with artifacts.atomic_output(path, force) as tmp:
        pipeline_plot({"bench": bench, "accuracy": accuracy}, tmp)
