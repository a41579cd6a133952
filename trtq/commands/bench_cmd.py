"""`trtq bench`: latency of an ONNX model (onnxruntime) or a TensorRT engine (trtq's runner or
trtexec), optionally with tegrastats power on a Jetson; or a comparison of earlier results."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from trtq.errors import TrtqError

log = logging.getLogger("trtq.bench")
PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                          "CPUExecutionProvider"]}


def _check_flags(args) -> None:
    engine_only = {"--cuda-graph": args.cuda_graph, "--trtexec": args.trtexec,
                   "--duration": args.duration is not None}
    compare_only = {"--accuracy": args.accuracy, "--labels": args.labels,
                    "--baseline": args.baseline, "--allow-mixed-devices": args.allow_mixed_devices}
    if not args.engine and any(engine_only.values()):
        raise TrtqError(f"{', '.join(k for k, v in engine_only.items() if v)} apply to --engine")
    if not args.compare and any(compare_only.values()):
        raise TrtqError(f"{', '.join(k for k, v in compare_only.items() if v)} apply to "
                        "--compare")
    if args.compare and args.tegrastats:
        raise TrtqError("--tegrastats samples a live run; --compare only reads results")


@contextlib.contextmanager
def _power(args):
    """Sample tegrastats around the timed run when asked; yields a dict filled on exit."""
    found: dict = {}
    if not args.tegrastats:
        yield found
        return
    from trtq.bench.jetson_power_mode import power_mode, warnings
    from trtq.bench.tegrastats import TegrastatsSampler

    mode = power_mode()
    for warning in warnings(mode):
        log.warning("%s", warning)
    with TegrastatsSampler(interval_ms=args.interval) as sampler:
        yield found
    found.update(sampler=sampler, mode=mode)


def _measure(args) -> dict:
    from trtq.bench.onnxruntime_bench import bench_onnx, parse_shapes

    shapes = parse_shapes(args.shape)
    if args.onnx:
        return bench_onnx(args.onnx, args.iterations, args.warmup, args.threads, shapes,
                          progress=args.progress, providers=PROVIDERS[args.provider])
    if args.trtexec:
        from trtq.bench.trtexec_parse import to_bench_record
        from trtq.bench.trtexec_run import run_trtexec, trtexec_bench_argv
        from trtq.engines.engine_check import check_engine
        from trtq.engines.trtexec import find_trtexec

        record = check_engine(args.engine)
        argv = trtexec_bench_argv(args.engine, find_trtexec() or "trtexec", shapes=shapes,
                                  iterations=args.iterations, duration_s=args.duration)
        result = {**to_bench_record(run_trtexec(argv)), "model_file": args.engine,
                  "precision": record.get("precision"), "command": argv}
        return result
    from trtq.bench.tensorrt_bench import EngineBenchOptions, bench_engine

    options = EngineBenchOptions(iterations=args.iterations, warmup=args.warmup,
                                 duration_s=args.duration, cuda_graph=args.cuda_graph,
                                 shapes=shapes)
    return bench_engine(args.engine, options, progress=args.progress)


def _run_compare(args) -> int:
    from trtq.bench.compare import compare, compare_markdown, load_entries, write_comparison

    entries = load_entries(args.compare, args.accuracy or (), args.labels or ())
    result = compare(entries, args.baseline, allow_mixed_devices=args.allow_mixed_devices)
    written = write_comparison(result, Path(args.out), args.force)
    print(compare_markdown(result), end="")
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0


def run(args) -> int:
    from trtq import artifacts
    from trtq.bench.report import bench_markdown

    _check_flags(args)
    if args.compare:
        return _run_compare(args)
    out = Path(args.out)
    md = out.with_suffix(".md")
    for path in (out, md):
        artifacts.check_writable(path, args.force)
    with _power(args) as power:
        record = _measure(args)
    if power:
        from trtq.bench.tegrastats import summarize

        seconds = sum(record.get("samples_ms") or []) / 1e3 or None
        record["power"] = summarize(power["sampler"].samples, inferences=record["iterations"],
                                    seconds=seconds)
        record["power_mode"] = power["mode"]
    if args.label:
        record["label"] = args.label
    table = bench_markdown([record])
    artifacts.write_json(out, record, force=args.force)
    artifacts.write_text(md, table, force=args.force)
    print(table, end="")
    log.info("wrote %s and %s", out, md)
    return 0
