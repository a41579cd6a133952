"""`trtq autoquant`: latency-aware mixed precision, group by group.

1. Calibrate the recipe, lowered for the backend's target, on the first `num_images` images of
   the split; the next `held_out` images (same split, never the evaluation split) measure
   agreement with FP32.
2. Gain per group (`trtq.autoquant.gains`): onnxruntime profiles the FP32 export and the full
   INT8 export node by node on this machine; tensorrt reads the per-layer profiles of the FP16
   and INT8 engines (`trtexec --exportProfile`, as `trtq deploy` brings them back).
3. Cost per group (`trtq.autoquant.costs`): agreement with FP32 with only that group quantized,
   in parallel processes.
4. Choice (`trtq.autoquant.select`), verified as a whole on the held-out images, then the
   groups the additive prediction left out tried again one by one (measured add-back).
5. OUT: a calibration folder holding only the chosen groups' quantizers (so `trtq export
   --calibrated OUT` works), OUT/autoquant.json (per group: cost, gain, decision) and
   OUT/recipe.json, which `trtq calibrate --recipe OUT/recipe.json` accepts.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from trtq.autoquant.costs import AgreementPool, CostSetup, HeldOut, fp32_reference, threads_per_job
from trtq.autoquant.gains import gains, ort_profiles, read_trtexec_profile
from trtq.autoquant.groups import OTHER, quantizer_groups
from trtq.autoquant.select import choose, decisions, final_agreement
from trtq.errors import DataError, TrtqError

log = logging.getLogger("trtq.autoquant")

REPORT = "autoquant.json"
RECIPE = "recipe.json"


@dataclass
class AutoquantConfig:
    model: str
    calib_data: str
    split: str
    out: str
    min_agreement: float
    backend: str = "onnxruntime"
    recipe: str = "w8a8-ptq4sam"
    checkpoint: str | None = None
    num_images: int = 32
    held_out: int = 16
    jobs: int = 2
    # tensorrt: {part: (FP16 profile, INT8 profile)}
    profiles: dict[str, tuple[str, str]] = field(default_factory=dict)
    profile_runs: int = 5
    add_back: bool = True  # select.py rule 4
    force: bool = False

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "tensorrt"):
            raise TrtqError(f"--backend {self.backend!r}: use onnxruntime or tensorrt")
        if not 0.0 < self.min_agreement <= 1.0:
            raise TrtqError(f"--min-agreement {self.min_agreement}: give a mean mask IoU in "
                            "(0, 1], e.g. 0.98")
        if self.backend == "tensorrt" and not self.profiles:
            raise TrtqError("--backend tensorrt measures the gain from the FP16 and INT8 "
                            "engines' per-layer profiles: pass --profile FP16.json INT8.json "
                            "(per part) or --profile-dir (a `trtq deploy` folder)")
        if self.backend == "onnxruntime" and self.profiles:
            raise TrtqError("--profile is for --backend tensorrt; onnxruntime is profiled here")

    @property
    def target(self) -> str:
        return "onnxruntime" if self.backend == "onnxruntime" else "tensorrt"


def held_out_images(cfg: AutoquantConfig) -> HeldOut:
    from trtq.data import CocoBoxDataset

    ids = CocoBoxDataset(cfg.calib_data, cfg.split).image_ids
    chosen = tuple(int(i) for i in ids[cfg.num_images:cfg.num_images + cfg.held_out])
    if not chosen:
        raise DataError(f"{cfg.calib_data}/{cfg.split} has {len(ids)} images and calibration "
                        f"takes the first {cfg.num_images}: none is left to measure agreement "
                        "on; lower --num-images")
    return HeldOut(str(cfg.calib_data), cfg.split, chosen)


def _profile_onnxruntime(cfg, work: Path, calibrated: Path, provenance: dict) -> dict:
    """{precision: {part: {node: ms}}} of the FP32 export and the full INT8 export."""
    from trtq.calib.state_dir import load_calibrated
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.export.onnx_qdq import export_quantized
    from trtq.models import adapter_for, load_model

    spec = ExportSpec(cfg.model, provenance["checkpoint_sha256"])
    export_fp32(load_model(cfg.model, provenance["checkpoint"]), spec, work / "fp32")
    model = load_model(cfg.model, provenance["checkpoint"])
    recipe, record = load_calibrated(model, cfg.model, calibrated, cfg.target)
    export_quantized(model, recipe, replace(spec, calibration_id=record["calibration_id"]),
                     work / "int8", cfg.target, logquant="onnx")
    return ort_profiles(work / "fp32", work / "int8", adapter_for(cfg.model).part_names,
                        cfg.profile_runs)


def _profile_tensorrt(cfg) -> dict:
    return {"baseline": {p: read_trtexec_profile(f) for p, (f, _) in cfg.profiles.items()},
            "int8": {p: read_trtexec_profile(i) for p, (_, i) in cfg.profiles.items()}}


def _calibrate(cfg, recipe, provenance: dict, folder: Path) -> None:
    from trtq.calib.state_dir import CalibSource, calibrate_to_dir
    from trtq.data.calibration import calibration_samples
    from trtq.models import load_model

    samples = calibration_samples(cfg.calib_data, cfg.split, cfg.num_images)
    log.info("calibrating %s with %s on %d images", cfg.model, recipe.name, len(samples))
    calibrate_to_dir(load_model(cfg.model, provenance["checkpoint"]), cfg.model, recipe,
                     samples, folder, source=CalibSource(str(cfg.calib_data), cfg.split),
                     checkpoint_sha256=provenance["checkpoint_sha256"])


def decide(setup: CostSetup, groups: dict[str, list[str]], profiles: dict, floor: float,
           jobs: int, add_back: bool = True, *,
           prefixes: dict[str, str] | None = None) -> dict:
    """Gains from `profiles` ({"baseline"/"int8": {part: {node: ms}}}, node names lacking
    `prefixes[part]`: the model adapter's `part_prefixes`), costs measured with `setup`, the
    choice and its verification: {"rows", "chosen", "history", "decisions",
    "all_groups_agreement"}."""
    rows = gains(profiles["baseline"], profiles["int8"], groups, prefixes)
    reference = fp32_reference(setup)
    names = list(groups)
    with AgreementPool(setup, reference, jobs) as pool:
        log.info("measuring %d groups' agreement with FP32 in %d processes", len(names),
                 pool.jobs, add_back)
        alone = pool.agreements([groups[g] for g in names] + [sum(groups.values(), [])])
        for group, agreement in zip(names, alone, strict=False):
            rows.setdefault(group, {"baseline_ms": 0.0, "int8_ms": 0.0, "gain_ms": 0.0})
            rows[group].update(agreement_alone=agreement, cost=1.0 - agreement,
                               quantizers=len(groups[group]))
        candidates = {g: rows[g] for g in names}
        chosen, history = choose(
            candidates, floor,
            lambda sets: pool.agreements([sum((groups[g] for g in gs), []) for gs in sets]),
            pool.jobs)
    return {"rows": rows, "chosen": chosen, "history": history,
            "decisions": decisions(candidates, chosen, floor, history),
            "all_groups_agreement": alone[-1]}


def restrict(model, recipe, groups: dict[str, list[str]], chosen, label: str):
    """Turn off every quantizer outside the chosen groups; the recipe that now describes the
    model (the off quantizers named one by one: a group's pattern would cover nested groups)."""
    from trtq.calib.modules import quantizers
    from trtq.recipes import QuantRule, replace_rules

    off = {n for g in groups if g not in chosen for n in groups[g]}
    for name, q in quantizers(model):
        if name in off:
            q.configure(None)
    final = replace_rules(recipe, recipe.rules + tuple(QuantRule(n, None) for n in sorted(off)))
    return replace(final, name=f"{recipe.name}-autoquant",
                   description=f"{recipe.description}; autoquant ({label}): {len(chosen)} of "
                   f"{len(groups)} groups INT8")


def autoquant(cfg: AutoquantConfig) -> dict:
    from trtq.calib.state_dir import STATE_NAMES, load_calibrated, save_calibrated
    from trtq.models import adapter_for, checkpoint_provenance, load_model
    from trtq.recipes import load_recipe
    from trtq.staging import check_folder_outputs, staged_folder

    names = (*STATE_NAMES, REPORT, RECIPE)
    check_folder_outputs(cfg.out, names, cfg.force)
    start = time.perf_counter()
    adapter = adapter_for(cfg.model)
    recipe = load_recipe(cfg.recipe, adapter.rules).for_target(cfg.target, adapter.rules)
    if not recipe.deployable:
        raise TrtqError(f"recipe {recipe.name!r} is simulation-only; autoquant measures "
                        "deployable recipes (e.g. w8a8, w8a8-ptq4sam)")
    held_out = held_out_images(cfg)
    profiles = _profile_tensorrt(cfg) if cfg.backend == "tensorrt" else None
    provenance = checkpoint_provenance(cfg.model, cfg.checkpoint)
    with tempfile.TemporaryDirectory(prefix="trtq-autoquant-") as tmp, \
            staged_folder(cfg.out, names, cfg.force) as stage:
        work = Path(tmp)
        _calibrate(cfg, recipe, provenance, work / "full")
        model = load_model(cfg.model, provenance["checkpoint"])
        recipe, _ = load_calibrated(model, cfg.model, work / "full", cfg.target)
        groups = quantizer_groups(model)
        if profiles is None:
            profiles = _profile_onnxruntime(cfg, work, work / "full", provenance)
        setup = CostSetup(cfg.model, provenance["checkpoint"], str(work / "full"), cfg.target,
                          held_out, threads_per_job(cfg.jobs))
        decided = decide(setup, groups, profiles, cfg.min_agreement, cfg.jobs, cfg.add_back,
                         prefixes=adapter.part_prefixes)
        final = restrict(model, recipe, groups, decided["chosen"],
                         f"{cfg.backend}, agreement >= {cfg.min_agreement}")
        report = report_dict(decided, cfg.backend, cfg.min_agreement, held_out)
        report.update(config=asdict(cfg), seconds=time.perf_counter() - start)
        save_calibrated(model, cfg.model, final, stage,
                        {"calib_data": str(cfg.calib_data), "split": cfg.split,
                         "images": cfg.num_images, "autoquant": report["summary"]},
                        provenance["checkpoint_sha256"])
        (stage / REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (stage / RECIPE).write_text(json.dumps(final.to_dict(), indent=1) + "\n",
                                    encoding="utf-8")
    return report


def report_dict(decided: dict, backend: str, floor: float, held_out) -> dict:
    """autoquant.json's body: the summary, the verification and the per-group table."""
    rows, chosen, history = decided["rows"], decided["chosen"], decided["history"]
    table = []
    for group, row in rows.items():
        entry = {"group": group, **{k: row.get(k) for k in (
            "quantizers", "agreement_alone", "cost", "baseline_ms", "int8_ms", "gain_ms")},
            "decision": decided["decisions"].get(
                group, "unattributed time" if group == OTHER else "float")}
        table.append(entry)
    measured = final_agreement(history, chosen) if chosen else 1.0
    baseline = sum(r["baseline_ms"] for r in rows.values())
    saved = sum(rows[g]["gain_ms"] for g in chosen)
    summary = {"backend": backend, "min_agreement": floor,
               "groups": len([r for r in table if r["group"] != OTHER]),
               "int8_groups": len(chosen), "held_out_agreement": measured,
               "all_groups_agreement": decided["all_groups_agreement"],
               "held_out_images": len(held_out.image_ids),
               "baseline_ms": baseline, "predicted_saved_ms": saved,
               "predicted_speedup": baseline / (baseline - saved) if baseline > saved else None,
               "all_groups_saved_ms": sum(max(r["gain_ms"], 0.0) for g, r in rows.items()
                                          if g != OTHER)}
    return {"summary": summary, "chosen": list(chosen), "verification": history,
            "groups": table, "held_out_image_ids": list(held_out.image_ids)}
