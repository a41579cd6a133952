"""`trtq calibrate`: calibrate a model with a recipe; writes DIR/quant_state.pt + sidecar."""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger("trtq.calib")


def resolve_recipe(args):
    from trtq.recipes import get_recipe

    recipe = get_recipe(args.recipe)
    if getattr(args, "observer", None):
        recipe = recipe.with_activation_observer(args.observer, args.percentile)
    if getattr(args, "target", None):
        recipe = recipe.for_target(args.target)
    return recipe


def run(args) -> int:
    from trtq import artifacts
    from trtq.bench.system import peak_rss_mib
    from trtq.calib import calibrate, save_quant_state
    from trtq.calib.modules import quantizers
    from trtq.calib.state_dir import STATE_FILE
    from trtq.data.calibration import calibration_samples
    from trtq.errors import TrtqError
    from trtq.models import checkpoint_provenance, load_model
    from trtq.progress import progress

    recipe = resolve_recipe(args)
    if not recipe.rules:
        raise TrtqError(f"recipe {recipe.name!r} has no quantizers: nothing to calibrate "
                        "(build its engine straight from the FP32 ONNX)")
    samples = calibration_samples(args.calib_data, args.split, args.num_images,
                                  allow_eval_split=args.allow_eval_split)
    out = Path(args.out)
    state_path = out / STATE_FILE
    artifacts.check_writable(state_path, args.force)
    artifacts.check_writable(artifacts.sidecar_path(state_path), args.force)
    provenance = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, provenance["checkpoint"])
    log.info("calibrating %s with %s on %d images from %s", args.model, recipe.name,
             len(samples), args.calib_data)
    start = time.perf_counter()
    calibrate(model, recipe, progress(samples, args.progress, len(samples), "calibrate"))
    seconds = time.perf_counter() - start
    active = sum(1 for _, q in quantizers(model) if q.enabled)
    out.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_output(state_path, args.force) as tmp:
        save_quant_state(model, recipe, tmp)
    extra = {
        "model": args.model, "recipe": recipe.to_dict(), "recipe_sha256": recipe.sha256(),
        "deployable": recipe.deployable, "target": recipe.target,
        "calib_data": str(args.calib_data), "split": args.split, "images": len(samples),
        "boxes": int(sum(len(s.boxes) for s in samples if s.boxes is not None)),
        "quantizers_on": active, "seconds": seconds, "peak_rss_mib": peak_rss_mib(),
    }
    inputs = {"checkpoint": provenance["checkpoint_sha256"]} if provenance["checkpoint"] else {}
    artifacts.write_sidecar(state_path, "quant_state", inputs, extra, force=True)
    print(f"calibrated {args.model} with {recipe.name}: {active} quantizers on, "
          f"{len(samples)} images, {seconds:.1f} s, peak RSS {extra['peak_rss_mib']:.0f} MiB")
    print(f"wrote {state_path}")
    return 0
