"""`quantize_onnx`: a float ONNX file → a calibrated, checked Q/DQ ONNX file with a sidecar."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from trtq.errors import ArtifactError, TrtqError

log = logging.getLogger("trtq.onnx_ptq")

MIN_OPSET = 13  # per-channel Q/DQ (the axis attribute)


@dataclass(frozen=True)
class OnnxQuantConfig:
    """What `trtq quantize-onnx` takes (one field per flag)."""

    onnx_path: str
    calib_data: str
    out: str
    recipe: str = "w8a8"
    target: str = "tensorrt"
    num_images: int = 32
    force: bool = False
    observer: str | None = None  # overrides the recipe's activation observer
    percentile: float | None = None
    parity_samples: int = 4

    def __post_init__(self) -> None:
        if self.target not in ("tensorrt", "onnxruntime"):
            raise TrtqError(f"--target {self.target!r}: use tensorrt or onnxruntime")
        if Path(self.out).suffix != ".onnx":
            raise TrtqError(f"--out {self.out}: name the output file *.onnx")
        if Path(self.out).resolve() == Path(self.onnx_path).resolve():
            raise TrtqError("--out names the input file: write the quantized model elsewhere")


def load_float_model(path: str | os.PathLike) -> tuple[onnx.ModelProto, bool]:
    """The graph at `path` with its weights, checked; (model, it keeps external data)."""
    from trtq.export.onnx_files import external_data_files, load_graph
    from trtq.export.onnxruntime_session import check_onnx

    check_onnx(path)
    external = bool(external_data_files(load_graph(path)))
    model = onnx.load(str(path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset < MIN_OPSET:
        from onnx import version_converter

        log.info("converting opset %d to %d (per-channel Q/DQ needs it)", opset, MIN_OPSET)
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # the converter raises many types
            raise TrtqError(f"{path} is opset {opset}; per-channel Q/DQ needs opset >= "
                            f"{MIN_OPSET} and conversion failed ({exc}): re-export it with "
                            f"opset {MIN_OPSET} or newer") from None
    return model, external


def _recipe(cfg: OnnxQuantConfig):
    from trtq.recipes import load_recipe

    recipe = load_recipe(cfg.recipe)
    if cfg.observer or cfg.percentile is not None:
        recipe = recipe.with_activation_observer(cfg.observer or "percentile", cfg.percentile)
    recipe = recipe.for_target(cfg.target)
    kinds = {r.spec.kind for r in recipe.rules if r.spec is not None}
    if kinds - {"uniform"} or any(r.spec.searched or r.spec.shifted
                                  for r in recipe.rules if r.spec is not None):
        raise TrtqError(f"recipe {recipe.name} uses log2, twin, searched or shifted quantizers, "
                        "which quantize-onnx does not place; use w8a8 (or another uniform "
                        "recipe) or quantize the PyTorch model (trtq.quantize)")
    return recipe


def _wanted(sites, specs) -> dict:
    wanted: dict[str, list] = {}
    for site in sites:
        spec = specs[site.quantizer]
        if spec is not None and not site.weight and spec not in wanted.get(site.tensor, []):
            wanted.setdefault(site.tensor, []).append(spec)
    return wanted


def _parity(float_path: Path, quant_path: Path, feeds: list[dict]) -> float:
    """Largest |quantized − float| relative to each output's largest magnitude, in default
    sessions."""
    from trtq.export.onnxruntime_optimize import max_rel_diff, plain_session

    reference, quantized = plain_session(float_path), plain_session(quant_path)
    return max((max_rel_diff(reference.run(None, f), quantized.run(None, f)) for f in feeds),
               default=0.0)


def quantize_onnx(cfg: OnnxQuantConfig, images=None, show_progress: bool = False) -> dict:
    """Calibrate and quantize `cfg.onnx_path` into `cfg.out`; returns the sidecar record.
    `images`: a `feeds.ImageOptions` for image folders."""
    from trtq.artifacts import atomic_output, check_writable, sha256_file, write_sidecar
    from trtq.export import onnx_files
    from trtq.export.qdq_lint import int8_mac_coverage, lint_qdq
    from trtq.export.qdq_rewrite import full_rank_biases
    from trtq.onnx_ptq.collect import macs_at_run_time, observe
    from trtq.onnx_ptq.feeds import ImageOptions, calibration_feeds
    from trtq.onnx_ptq.insert import insert_qdq, name_nodes
    from trtq.onnx_ptq.sites import find_sites

    check_writable(cfg.out, cfg.force)
    recipe = _recipe(cfg)
    model, external = load_float_model(cfg.onnx_path)
    name_nodes(model)
    sites = find_sites(model)
    specs = {s.quantizer: recipe.spec_for(s.quantizer, s.module_types) for s in sites}
    feeds, data_record = calibration_feeds(cfg.calib_data, model, cfg.num_images,
                                           images or ImageOptions())
    ranges = observe(model, cfg.onnx_path, _wanted(sites, specs), feeds, external,
                     show_progress)
    macs = macs_at_run_time(model, cfg.onnx_path, feeds[0], external)
    counts = insert_qdq(model, sites, specs, ranges, cfg.target)
    full_rank_biases(model)
    report = lint_qdq(model)  # TensorRT's rules: for the tensorrt target
    if cfg.target == "tensorrt" and report.errors:
        raise ArtifactError(f"{cfg.out} would fail the TensorRT Q/DQ lint: "
                            + "; ".join(report.errors[:3]))
    out = Path(cfg.out)
    with atomic_output(out, cfg.force) as tmp:
        data = onnx_files.save(model, tmp, out.name, external=external or None)
        del model
        graph = onnx_files.load_graph(tmp)
        coverage = int8_mac_coverage(graph, macs)
        shipped = None
        if cfg.target == "onnxruntime" and not data:
            from trtq.export.onnxruntime_optimize import optimize_in_place

            shipped = optimize_in_place(tmp, feeds[:cfg.parity_samples])
        parity = _parity(Path(cfg.onnx_path), tmp, feeds[:cfg.parity_samples])
    record = {
        "model": Path(cfg.onnx_path).name, "precision": "int8", "target": cfg.target,
        "recipe": recipe.to_dict(), "recipe_sha256": recipe.sha256(),
        "deployable": recipe.deployable and cfg.target == "tensorrt",
        "calibration": {**data_record, "samples": len(feeds)},
        "sites": len(sites), **counts,
        "float_sites": sorted(q for q, s in specs.items() if s is None),
        "lint_errors": report.errors if cfg.target == "tensorrt" else None,
        "lint_warnings": len(report.warnings) if cfg.target == "tensorrt" else None,
        "quantize_nodes": report.quantize_nodes, "dequantize_nodes": report.dequantize_nodes,
        "int8_mac_coverage": coverage.fraction, "total_macs": coverage.total_macs,
        "largest_float_layers": coverage.float_layers[:5],
        "max_rel_diff_vs_float": parity, "parity_samples": min(len(feeds),
                                                               cfg.parity_samples),
        "onnxruntime_optimized": shipped, "external_data": data,
    }
    write_sidecar(out, "onnx", {"float_onnx": sha256_file(cfg.onnx_path)}, record,
                  force=True, companions=tuple(filter(None, [data])))
    return record
