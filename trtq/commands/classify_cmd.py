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


def run(args) -> int:
    from trtq import artifacts
    from trtq.commands._common import read_json
    from trtq.data.labelled_images import LabelledImages
    from trtq.eval.classify import evaluate_classifier, format_table
    from trtq.models import get_spec
    from trtq.models.classifiers import CLASSIFIERS, is_classifier
    from trtq.progress import progress

    get_spec(args.model)  # an unknown name fails here, listing the choices
    if not is_classifier(args.model):
        raise TrtqError(f"{args.model} is not an image classifier (use `trtq eval` for SAM "
                        f"models); choose one of: {', '.join(sorted(CLASSIFIERS))}")
    artifacts.check_writable(args.out, args.force)
    reference = read_json(args.reference, "reference") if args.reference else None
    dataset = LabelledImages(args.images, args.classes, args.limit)
    model, record = load_classifier(args)
    log.info("classifying %d images from %s with %s", len(dataset), args.images, args.model)
    result = evaluate_classifier(model, dataset, reference, args.batch_size,
                                 progress=lambda items: progress(items, args.progress,
                                                                 len(dataset), "classify"))
    record |= {**result, "images_dir": str(args.images), "labelled": dataset.labelled,
               "classes_file": str(args.classes) if args.classes else None, "limit": args.limit,
               "reference": str(args.reference) if args.reference else None,
               "versions": artifacts.package_versions()}
    artifacts.write_json(args.out, record, force=args.force)
    label = f"{args.model}{' (' + record['recipe'] + ')' if args.calibrated else ''}"
    print(format_table([(label, result)]))
    log.info("wrote %s", args.out)
    return 0
