"""`trtq eval`: box-prompted mask mIoU (and agreement with a reference run)."""

from __future__ import annotations

import logging

from trtq.errors import TrtqError

log = logging.getLogger("trtq.eval")


def make_backend(args):
    if args.backend == "onnxruntime":
        if args.calibrated:
            raise TrtqError("--calibrated applies to the torch backend; for onnxruntime export "
                            "it first (`trtq export --calibrated DIR`) and pass --onnx-dir")
        if not args.onnx_dir:
            raise TrtqError("--backend onnxruntime needs --onnx-dir (a folder from `trtq export`)")
        from trtq.eval.backends import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(args.onnx_dir, model=args.model, threads=args.threads)
        return backend, {"model": args.model, "onnx_dir": str(args.onnx_dir),
                         "onnx_sha256": backend.onnx_sha256}
    from trtq.eval.backends import TorchBackend
    from trtq.models import checkpoint_provenance, load_model

    record = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, record["checkpoint"])
    if args.calibrated:
        from trtq.calib.state_dir import load_calibrated

        recipe, calib = load_calibrated(model, args.model, args.calibrated, args.target)
        record |= {"calibrated": str(args.calibrated), "recipe": recipe.name,
                   "recipe_sha256": recipe.sha256(), "target": recipe.target,
                   "quant_state_sha256": calib["sha256"]}
    elif args.target:
        raise TrtqError("--target needs --calibrated DIR")
    return TorchBackend(model), record


def run(args) -> int:
    from trtq import artifacts
    from trtq.commands._common import read_json, require_sam_model
    from trtq.data import CocoBoxDataset
    from trtq.eval.sam_eval import evaluate, format_table
    from trtq.progress import progress

    require_sam_model(args.model, "eval")
    artifacts.check_writable(args.out, args.force)
    reference = read_json(args.reference, "reference") if args.reference else None
    dataset = CocoBoxDataset(args.data, args.split, box_source=args.box_source, limit=args.limit)
    backend, provenance = make_backend(args)
    log.info("evaluating %s (%s) on %s/%s: %d images, %d instances", args.model, backend.name,
             args.data, args.split, len(dataset), dataset.num_instances)
    result = evaluate(backend, progress(dataset, args.progress, len(dataset), "eval"), reference)
    record = {**result.summary(), "backend": backend.name, **provenance,
              "data": str(args.data), "split": args.split, "box_source": args.box_source,
              "limit": args.limit, "reference": str(args.reference) if args.reference else None,
              "seconds": result.seconds, "versions": artifacts.package_versions(),
              "per_instance": result.per_instance}
    artifacts.write_json(args.out, record, force=args.force)
    print(format_table([(f"{args.model} ({backend.name})", result.summary())]))
    log.info("wrote %s", args.out)
    return 0
