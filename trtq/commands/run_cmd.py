"""`trtq run`: the whole pipeline on embedded defaults."""

from __future__ import annotations

import logging

log = logging.getLogger("trtq.pipeline")


def run(args) -> int:
    from pathlib import Path

    from trtq.commands._common import require_sam_model
    from trtq.errors import TrtqError
    from trtq.pipeline import RunConfig, run_pipeline

    require_sam_model(args.model, "run")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise TrtqError(f"--min-agreement {args.min_agreement}: give a mean mask IoU in [0, 1] "
                        "(0 keeps every group INT8)")

    cfg = RunConfig(model=args.model, checkpoint=args.checkpoint, images=args.images,
                    data=args.data, split=args.split, limit=args.limit,
                    iterations=args.iterations, warmup=args.warmup, recipe=args.recipe,
                    int8=not args.no_int8, min_agreement=args.min_agreement or None,
                    out=args.out, force=args.force,
                    progress=args.progress)
    report = run_pipeline(cfg)
    out = Path(report["config"]["out"])
    print((out / "report.md").read_text(encoding="utf-8"), end="")
    log.info("wrote %s", out / "report.json")
    return 0
