"""`trtq classify`: top-1 accuracy (labelled folders) and agreement with a reference run."""

from __future__ import annotations

import logging

from trtq.errors import TrtqError

log = logging.getLogger("trtq.eval")


def load_classifier(args):
    """The model (calibrated when --calibrated is given) and its provenance record."""
    from trtq.models import checkpoint_provenance, load_model

    record = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, record["checkpoint"])
    if args.calibrated:
        from trtq.calib.state_dir import load_calibrated

        recipe, calib = load_calibrated(model, args.model, args.calibrated, target=None)
        record |= {"calibrated": str(args.calibrated), "recipe": recipe.name,
                   "recipe_sha256": recipe.sha256(), "target": recipe.target,
                   "quant_state_sha256": calib.get("sha256")}
    return model, record


def load_user_classifier(args):
    """Your own classifier (--model file.py:factory returning (module, preprocess)), calibrated
    when --calibrated is given: the model, its provenance record and its preprocessing."""
    from types import SimpleNamespace

    from trtq.commands._network import load_calibration, load_network

    net = load_network(args.model, args.checkpoint)
    if net.image is None:
        raise TrtqError(f"{net.name} returned no preprocess; `trtq classify` feeds pictures: "
                        "return (module, preprocess) from the factory")
    record = {"model": net.name, **net.sidecar, "checkpoint": args.checkpoint}
    if args.calibrated:
        calib = load_calibration(net, args.calibrated)
        record |= {"calibrated": str(args.calibrated), "recipe": calib["recipe"]["name"],
                   "recipe_sha256": calib["recipe_sha256"], "target": calib["target"],
                   "quant_state_sha256": calib["sha256"]}
    return net.module, record, SimpleNamespace(image=net.image)


def _evaluate(args, dataset, reference, progress) -> tuple[dict, dict]:
    from trtq.eval.classify import evaluate_classifier
    from trtq.models.user_model import is_user_reference

    if not is_user_reference(args.model):
        model, record = load_classifier(args)
        return evaluate_classifier(model, dataset, reference, args.batch_size,
                                   progress=progress), record
    model, record, preprocess = load_user_classifier(args)
    try:
        return evaluate_classifier(model, dataset, reference, args.batch_size,
                                   preprocess=preprocess, progress=progress), record
    except (RuntimeError, TypeError, ValueError) as exc:  # the user's forward or its output
        raise TrtqError(f"{args.model}: classifying failed ({type(exc).__name__}: {exc}); "
                        "`trtq classify` needs (N, classes) logits for pictures through the "
                        "preprocess") from exc


def run(args) -> int:
    from trtq import artifacts
    from trtq.commands._common import read_json
    from trtq.data.labelled_images import LabelledImages
    from trtq.eval.classify import format_table
    from trtq.models import get_spec
    from trtq.models.classifiers import CLASSIFIERS, is_classifier
    from trtq.models.user_model import is_user_reference
    from trtq.progress import progress

    if not is_user_reference(args.model):
        get_spec(args.model)  # an unknown name fails here, listing the choices
        if not is_classifier(args.model):
            raise TrtqError(f"{args.model} is not an image classifier (use `trtq eval` for SAM "
                            f"models); choose one of: {', '.join(sorted(CLASSIFIERS))}")
    artifacts.check_writable(args.out, args.force)
    reference = read_json(args.reference, "reference") if args.reference else None
    dataset = LabelledImages(args.images, args.classes, args.limit)
    log.info("classifying %d images from %s with %s", len(dataset), args.images, args.model)
    result, record = _evaluate(args, dataset, reference,
                               lambda items: progress(items, args.progress, len(dataset),
                                                      "classify"))
    record |= {**result, "images_dir": str(args.images), "labelled": dataset.labelled,
               "classes_file": str(args.classes) if args.classes else None, "limit": args.limit,
               "reference": str(args.reference) if args.reference else None,
               "versions": artifacts.package_versions()}
    artifacts.write_json(args.out, record, force=args.force)
    label = f"{args.model}{' (' + record['recipe'] + ')' if args.calibrated else ''}"
    print(format_table([(label, result)]))
    log.info("wrote %s", args.out)
    return 0
