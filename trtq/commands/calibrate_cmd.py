"""`trtq calibrate`: calibrate a model with a recipe; writes DIR/quant_state.pt + sidecar."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("trtq.calib")


def resolve_recipe(args):
    from trtq.models import adapter_for
    from trtq.recipes import load_recipe

    rules = adapter_for(args.model).rules  # the model's specifics for the presets
    recipe = load_recipe(args.recipe, rules)
    if getattr(args, "observer", None):
        recipe = recipe.with_activation_observer(args.observer, args.percentile)
    if getattr(args, "target", None):
        recipe = recipe.for_target(args.target, rules)
    return recipe


def format_big_report(report: dict) -> str:
    """One line per decoder attention: BIG's verdict and the K numbers behind it."""
    lines = ["BIG (bimodal K detection on the first calibration image; fold on "
             f"{report['options']['layers']}):"]
    for r in report["layers"]:
        peaks = ", ".join(f"{p:+.2f}" for p in r["peaks"])
        line = (f"  {r['layer']}: {'bimodal' if r['bimodal'] else 'unimodal'} "
                f"({len(r['peaks'])} peak(s) at {peaks}); K range "
                f"[{r['k_range_before'][0]:.2f}, {r['k_range_before'][1]:.2f}]")
        if r["folded"]:
            line += (f" → [{r['k_range_after'][0]:.2f}, {r['k_range_after'][1]:.2f}], "
                     f"{r['flipped_channels']} channels flipped, INT{r['bits']} K RMSE "
                     f"{r['k_rmse_before']:.4f} → {r['k_rmse_after']:.4f}")
        lines.append(line)
    change = report.get("decoder_max_abs_change")
    if change is not None:
        lines.append(f"  decoder outputs changed by at most {change:.2e} by the fold")
    return "\n".join(lines)


def format_search_report(report: dict) -> str:
    """PTQ4ViT's search in a few lines: what it saw and how far from max-based ranges it went."""
    layers = report["layers"]
    opts = report["options"]
    flat = [q for layer in layers for q in layer["quantizers"].values()]
    metrics = sorted({q["metric"] for q in flat})
    no_grad = [layer["layer"] for layer in layers if layer["no_gradient"]]
    line = (f"search ({', '.join(metrics)}; {opts['candidates']} candidates in "
            f"[{opts['alpha']}, {opts['beta']}]·Δ0, {opts['rounds']} rounds, {opts['rows']} "
            f"rows/image): {len(flat)} quantizers in {len(layers)} layers on "
            f"{report['samples']} samples")
    if no_grad:
        line += (f"; {len(no_grad)} layer(s) get no gradient and were scored by output MSE: "
                 + ", ".join(no_grad[:3]) + (" ..." if len(no_grad) > 3 else ""))
    return line


def classifier_task(model, folder, limit: int, batch: int = 8):
    """Calibration batches for an image classifier. The search's loss uses the FP model's top-1
    as the label: a folder's class order need not match the model's."""
    import numpy as np

    from trtq.calib.tasks import ClassifierTask
    from trtq.data.labelled_images import LabelledImages

    items = list(LabelledImages(folder, limit=limit))
    images = [model.preprocess.image(rgb) for _, rgb, _ in items]
    return ClassifierTask(np.concatenate(images[i:i + batch])
                          for i in range(0, len(images), batch))


def _sam_samples(args):
    """Box-prompted calibration samples (SAM models; None for a classifier, whose task needs
    the model's preprocessing)."""
    from trtq.data.calibration import calibration_samples
    from trtq.models.classifiers import is_classifier

    if is_classifier(args.model):
        return None
    return calibration_samples(args.calib_data, args.split, args.num_images,
                               allow_eval_split=args.allow_eval_split)


def _calibrate_registered(args, recipe) -> tuple[dict, int]:
    """A SAM-family model or a registered classifier: the sidecar record and the image count."""
    from trtq.calib.state_dir import STATE_NAMES, CalibSource, calibrate_to_dir
    from trtq.errors import TrtqError
    from trtq.models import checkpoint_provenance, load_model
    from trtq.progress import progress
    from trtq.staging import check_folder_outputs

    if args.images or not args.calib_data:
        raise TrtqError("give --calib-data DIR (a folder of images, or a COCO root with "
                        "--split); --images is for your own model (--model file.py:factory)")
    check_folder_outputs(args.out, STATE_NAMES, args.force)
    samples = _sam_samples(args)  # the data is checked before the model loads
    provenance = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, provenance["checkpoint"])
    if samples is None:
        samples = classifier_task(model, args.calib_data, args.num_images)
    log.info("calibrating %s with %s on %d images from %s", args.model, recipe.name,
             len(samples), args.calib_data)
    record = calibrate_to_dir(
        model, args.model, recipe, samples, args.out,
        source=CalibSource(str(args.calib_data), args.split),
        checkpoint_sha256=provenance["checkpoint_sha256"], force=args.force,
        progress=lambda items: progress(items, args.progress, len(samples), "calibrate"))
    return record, len(samples)


def check_user_recipe(recipe) -> None:
    from trtq.errors import TrtqError

    if recipe.big is not None:
        raise TrtqError(f"recipe {recipe.name!r} folds BIG into SAM's decoder attentions; "
                        "calibrate your own model with a recipe without BIG (e.g. w8a8)")
    if any(r.spec is not None and r.spec.searched for r in recipe.rules):
        raise TrtqError(f"recipe {recipe.name!r} searches ranges against a task loss, which "
                        "trtq has only for its own models; calibrate your own model with "
                        "w8a8 or a recipe file whose observers are minmax, avg_minmax, "
                        "percentile, entropy or mse")


def _calibrate_user(args, recipe) -> tuple[dict, int]:
    """Your own model (--model file.py:factory) through `trtq.quantize`: the record and the
    number of forward calls."""
    import time

    import trtq
    from trtq.calib.modules import logquant_params, quantizers
    from trtq.calib.state_dir import STATE_NAMES, save_calibrated
    from trtq.commands._network import data_inputs, forward_loop, load_network, open_data
    from trtq.errors import TrtqError
    from trtq.progress import progress
    from trtq.staging import check_folder_outputs, staged_folder
    from trtq.system import peak_rss_mib

    check_user_recipe(recipe)
    if args.split:
        raise TrtqError("--split picks a COCO split (SAM-family models); give your own model "
                        "--images DIR or --calib-data DIR (.npz files)")
    if not args.images and not args.calib_data:
        raise TrtqError(f"{args.model} needs calibration data: --images DIR (pictures through "
                        "its preprocess) or --calib-data DIR (.npz input files)")
    check_folder_outputs(args.out, STATE_NAMES, args.force)
    folder = open_data(args.images, args.calib_data, args.num_images)
    net = load_network(args.model, args.checkpoint)
    inputs = data_inputs(net, folder)
    log.info("calibrating %s with %s on %d inputs from %s", net.name, recipe.name,
             len(inputs.files), args.images or args.calib_data)
    loop = forward_loop(net, inputs, lambda calls: progress(calls, args.progress, len(calls),
                                                            "calibrate"))
    with staged_folder(args.out, STATE_NAMES, args.force) as stage:
        start = time.perf_counter()
        trtq.quantize(net.module, recipe, loop)
        if not any(q.enabled for _, q in quantizers(net.module)):
            raise TrtqError(f"recipe {recipe.name!r} quantized nothing in {net.name}: trtq "
                            "quantizes nn.Linear/nn.Conv2d children, nn.MultiheadAttention and "
                            "matmul/SDPA calls in forward (`trtq inspect --recipe`)")
        extra = {"calib_data": str(args.images or args.calib_data), "split": None,
                 "images": len(inputs.files), "boxes": None, "image_files": list(inputs.files),
                 "input_names": list(inputs.names), "big": None,
                 "logquant": logquant_params(net.module), "search": None,
                 "user_model": net.sidecar["user_model"],
                 "seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}
        record = save_calibrated(net.module, net.name, recipe, stage, extra,
                                 net.inputs.get("checkpoint"))
    return record, len(inputs.files)


def run(args) -> int:
    from trtq.calib.state_dir import STATE_NAMES
    from trtq.errors import TrtqError
    from trtq.models import get_spec
    from trtq.models.user_model import is_user_reference

    user = is_user_reference(args.model)
    if not user:
        get_spec(args.model)
    recipe = resolve_recipe(args)
    if not recipe.rules:
        raise TrtqError(f"recipe {recipe.name!r} has no quantizers: nothing to calibrate "
                        "(build its engine straight from the FP32 ONNX)")
    record, count = (_calibrate_user if user else _calibrate_registered)(args, recipe)
    what = "input files" if user and not args.images else "images"
    print(f"calibrated {args.model} with {recipe.name}: {record['quantizers_on']} "
          f"quantizers on, {count} {what}, {record['seconds']:.1f} s, peak RSS "
          f"{record['peak_rss_mib']:.0f} MiB (calibration {record['calibration_id']})")
    if record["big"]:
        print(format_big_report(record["big"]))
    if record["search"]:
        print(format_search_report(record["search"]))
    print(f"wrote {Path(args.out) / STATE_NAMES[0]}")
    return 0
