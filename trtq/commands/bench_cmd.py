"""`trtq bench`: onnxruntime latency of one ONNX model, as JSON and Markdown."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("trtq.bench")


def run(args) -> int:
    from trtq import artifacts
    from trtq.bench.onnxruntime_bench import bench_onnx, parse_shapes
    from trtq.bench.report import bench_markdown

    out = Path(args.out)
    md = out.with_suffix(".md")
    for path in (out, md):
        artifacts.check_writable(path, args.force)
    record = bench_onnx(args.onnx, args.iterations, args.warmup, args.threads,
                        parse_shapes(args.shape), progress=args.progress)
    table = bench_markdown([record])
    artifacts.write_json(out, record, force=args.force)
    artifacts.write_text(md, table, force=args.force)
    print(table, end="")
    log.info("wrote %s and %s", out, md)
    return 0
