"""The INT8 half of `trtq run`: calibrate, export, compare with FP32, benchmark.

1. Calibrate the recipe (default w8a8-ptq4sam) on half of the run's images (centre-box prompts);
   the other half measures agreement, so no image scores its own calibration.
2. Export INT8 ONNX twice: the TensorRT target (symmetric Q/DQ, the deployable artifact) and the
   onnxruntime target (uint8 activations, AGQ lowered: what onnxruntime's CPU kernels run fast).
   With a minimum agreement (default 0.95), the onnxruntime target goes through `trtq
   autoquant`'s choice first: per layer group, the time INT8 saves (the FP32 and the full INT8
   export profiled here) against its cost in agreement with FP32 on the calibration images
   (the held-out images stay unseen); only the groups that pay, within the floor, stay INT8.
3. Accuracy: INT8 vs FP32 mask agreement in onnxruntime on the held-out images, and mIoU on
   --data/--split when given.
4. Latency: onnxruntime CPU, INT8 vs FP32, encoder and decoder.
5. Where real TensorRT and a GPU are present: FP16 and INT8 engines, built and timed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trtq import artifacts

log = logging.getLogger("trtq.pipeline")


def split_images(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration, held-out) halves: even and odd positions, so both see varied images."""
    if len(paths) < 2:
        from trtq.errors import DataError

        raise DataError(f"the INT8 stage needs at least 2 images (calibration and held-out), "
                        f"got {len(paths)}; pass --images with more, or --no-int8")
    return paths[0::2], paths[1::2]


def calibrate_into(cfg, out: Path, provenance: dict, paths: list[Path]) -> Path:
    """Calibrate a fresh model on `paths` (centre-box prompts) into the folder `out`."""
    from trtq.calib.state_dir import CalibSource, calibrate_to_dir
    from trtq.data.calibration import CalibSample
    from trtq.data.images import load_rgb
    from trtq.data.samples import center_box
    from trtq.models import adapter_for, load_model
    from trtq.progress import progress
    from trtq.recipes import get_recipe

    recipe = get_recipe(cfg.recipe, adapter_for(cfg.model).rules)
    model = load_model(cfg.model, provenance["checkpoint"])
    samples = [CalibSample(rgb, center_box(rgb.shape[:2])) for rgb in map(load_rgb, paths)]
    log.info("calibrating %s with %s on %d images", cfg.model, recipe.name, len(samples))
    source = CalibSource(cfg.images or "bundled sample images", None,
                         tuple(p.name for p in paths))
    calibrate_to_dir(model, cfg.model, recipe, samples, out, source=source,
                     checkpoint_sha256=provenance["checkpoint_sha256"],
                     progress=lambda items: progress(items, cfg.progress, len(samples),
                                                      "calibrate"))
    return out


def export_int8(cfg, calibrated: Path, provenance: dict, out: Path, target: str) -> dict:
    from trtq.calib.state_dir import load_calibrated
    from trtq.export.onnx_fp32 import ExportSpec
    from trtq.export.onnx_qdq import export_quantized
    from trtq.models import load_model

    model = load_model(cfg.model, provenance["checkpoint"])
    recipe, record = load_calibrated(model, cfg.model, calibrated, target)
    spec = ExportSpec(cfg.model, provenance["checkpoint_sha256"],
                      calibration_id=record["calibration_id"])
    result = export_quantized(model, recipe, spec, out, target, logquant="onnx",
                              inputs={"quant_state": record["sha256"]})
    return {part: {k: v for k, v in record.items() if k in
                   ("path", "int8_mac_coverage", "parity_max_rel_diff", "lint_errors")}
            for part, record in result.items()}


def autoquant_stage(cfg, out: Path, provenance: dict, calibrated: Path, calib_paths: list,
                    full_export: Path) -> tuple[Path, dict]:
    """`trtq autoquant`'s choice on the run's own files (onnxruntime backend): returns the
    calibration folder restricted to the chosen groups and the report section."""
    from trtq.autoquant.costs import CostSetup, ImageSet, threads_per_job
    from trtq.autoquant.gains import ort_profiles
    from trtq.autoquant.groups import quantizer_groups
    from trtq.autoquant.run import decide, report_dict, restrict
    from trtq.calib.state_dir import load_calibrated, save_calibrated
    from trtq.models import adapter_for, load_model

    adapter = adapter_for(cfg.model)
    model = load_model(cfg.model, provenance["checkpoint"])
    recipe, _ = load_calibrated(model, cfg.model, calibrated, "onnxruntime")
    groups = quantizer_groups(model)
    profiles = ort_profiles(out / "onnx", full_export, adapter.part_names)
    images = ImageSet(tuple(str(p) for p in calib_paths))
    setup = CostSetup(cfg.model, provenance["checkpoint"], str(calibrated), "onnxruntime",
                      images, threads_per_job(2))
    # no add-back: on the run's 4 calibration photos it fitted their noise (0.955 on them,
    # 0.893 on the held-out photos; experiments/results/trtq-run-litemedsam-add-back.json)
    decided = decide(setup, groups, profiles, cfg.min_agreement, jobs=2, add_back=False,
                     prefixes=adapter.part_prefixes)
    final = restrict(model, recipe, groups, decided["chosen"],
                     f"onnxruntime, agreement >= {cfg.min_agreement} on the calibration images")
    folder = out / "calibrated-autoquant"
    folder.mkdir()
    save_calibrated(model, cfg.model, final, folder,
                    {"calib_data": "the run's calibration images", "images": len(calib_paths)},
                    provenance["checkpoint_sha256"])
    report = report_dict(decided, "onnxruntime", cfg.min_agreement, images)
    report["agreement_measured_on"] = "the calibration images (centre boxes)"
    return folder, report


def bench_pair(fp32_dir: Path, int8_dir: Path, cfg) -> dict:
    """onnxruntime CPU latency of FP32 and INT8, part by part, back to back (same machine
    state for both), with the INT8 speedup of the medians."""
    from trtq.bench.onnxruntime_bench import bench_onnx

    result: dict = {"fp32": {}, "int8": {}, "speedup_vs_fp32": {}}
    for part in ("encoder", "decoder"):
        for name, folder in (("fp32", fp32_dir), ("int8", int8_dir)):
            record = bench_onnx(folder / f"{part}.onnx", cfg.iterations, cfg.warmup,
                                progress=cfg.progress)
            result[name][part] = record
        result["speedup_vs_fp32"][part] = (result["fp32"][part]["latency_ms"]["median"]
                                           / result["int8"][part]["latency_ms"]["median"])
    return result


def eval_int8(cfg, dataset, int8_backend, reference_file: Path) -> dict:
    """mIoU of the INT8 graph on --data, and its agreement with the FP32 ONNX there."""
    import json

    from trtq.eval.sam_eval import evaluate
    from trtq.progress import progress

    reference = json.loads(reference_file.read_text(encoding="utf-8"))
    samples = progress(dataset, cfg.progress, len(dataset), "eval int8")
    result = evaluate(int8_backend, samples, reference)
    record = {**result.summary(), "backend": "onnxruntime-int8", "seconds": result.seconds,
              "per_instance": result.per_instance}
    artifacts.write_json(reference_file.with_name("eval_int8.json"), record, force=cfg.force)
    return result.summary() | {"seconds": result.seconds}


def tensorrt_stage(out: Path, fp32_dir: Path, int8_dir: Path, cfg) -> dict | None:
    """FP16 and INT8 engines, built and timed, only where real TensorRT and a GPU exist."""
    import importlib.util

    from trtq.engines.device import current_device

    if importlib.util.find_spec("tensorrt") is None or current_device() is None:
        log.info("no TensorRT + GPU here: engines are not built or timed")
        return None
    from trtq.bench.tensorrt_bench import EngineBenchOptions, bench_engine
    from trtq.engines.build import BuildOptions, build_engine

    results: dict = {}
    for precision, source in (("fp16", fp32_dir), ("int8", int8_dir)):
        for part in ("encoder", "decoder"):
            engine = out / "engines" / f"{part}.{precision}.engine"
            build_engine(source / f"{part}.onnx", engine, BuildOptions(precision=precision),
                         force=cfg.force)
            record = bench_engine(engine, EngineBenchOptions(iterations=max(cfg.iterations, 50),
                                                             warmup=max(cfg.warmup, 10)))
            results.setdefault(precision, {})[part] = record
    return results


def int8_stage(cfg, out: Path, provenance: dict, fp32_backend, images: list[Path],
               dataset=None) -> dict:
    """Calibration, exports and accuracy of the INT8 model; the report's "int8" section."""
    from trtq.eval.backends import OnnxRuntimeBackend
    from trtq.eval.sam_eval import sample_agreement

    calib_paths, held_out = split_images(images)
    calibrated = calibrate_into(cfg, out / "calibrated", provenance, calib_paths)
    exports = {"tensorrt": export_int8(cfg, calibrated, provenance, out / "onnx-int8-tensorrt",
                                       "tensorrt")}
    section: dict = {"recipe": cfg.recipe, "calibration_images": [p.name for p in calib_paths]}
    if cfg.min_agreement:
        full = out / "onnx-int8-onnxruntime-all"
        exports["onnxruntime_all_groups"] = export_int8(cfg, calibrated, provenance, full,
                                                        "onnxruntime")
        calibrated, section["autoquant"] = autoquant_stage(cfg, out, provenance, calibrated,
                                                           calib_paths, full)
    exports["onnxruntime"] = export_int8(cfg, calibrated, provenance,
                                         out / "onnx-int8-onnxruntime", "onnxruntime")
    int8_backend = OnnxRuntimeBackend(out / "onnx-int8-onnxruntime", model=cfg.model)
    section |= {"exports": exports,
                "agreement_with_fp32": sample_agreement(fp32_backend, int8_backend, held_out)}
    if dataset is not None:
        section["eval"] = eval_int8(cfg, dataset, int8_backend, out / "eval_onnxruntime.json")
    return section
