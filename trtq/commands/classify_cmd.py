"""`trtq classify`: top-1 accuracy (labelled folders) and agreement with a reference run."""

from __future__ import annotations

import logging

from trtq.errors import TrtqError

log = logging.getLogger("trtq.eval")


def run(args) -> int:
    from trtq import artifacts
    from trtq.commands._common import read_json
    from trtq.data.labelled_images import LabelledImages
    from trtq.eval.classify import evaluate_classifier
    from trtq.models import checkpoint_provenance, load_model

    artifacts.check_writable(args.out, args.force)
    reference = read_json(args.reference, "reference")["predictions"] if args.reference else None
    dataset = LabelledImages(args.images, args.classes, args.limit)
    record = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, record["checkpoint"])
    if not hasattr(model, "preprocess") or hasattr(model, "image_encoder"):
        raise TrtqError(f"{args.model} is not an image classifier; use `trtq eval` for SAM")
    if args.calibrated:
        from trtq.calib.state_dir import load_calibrated

        recipe, _ = load_calibrated(model, args.model, args.calibrated)
        record |= {"calibrated": str(args.calibrated), "recipe": recipe.name}
    result = evaluate_classifier(model, dataset, reference)
    record |= {**result, "images_dir": str(args.images), "labelled": dataset.labelled,
               "reference": str(args.reference) if args.reference else None,
               "versions": artifacts.package_versions()}
    artifacts.write_json(args.out, record, force=args.force)

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f} %"

    print(f"| model | images | top-1 | top-5 | agreement |\n|---|---:|---:|---:|---:|\n"
          f"| {args.model}{' (calibrated)' if args.calibrated else ''} | {result['images']} | "
          f"{pct(result['top1'])} | {pct(result['top5'])} | {pct(result['agreement'])} |")
    return 0
