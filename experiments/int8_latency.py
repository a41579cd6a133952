"""onnxruntime CPU latency of FP32 vs INT8 encoder/decoder exports, as median ratios.

    python experiments/int8_latency.py --variant fp32=DIR --variant trt-int8=DIR2 ... \\
        --out FILE.json

Each DIR holds encoder.onnx + decoder.onnx (trtq export, or experiments/ort_quantize_static.py).
The first variant is the baseline. Variants are timed in alternating rounds in one process (same
machine, same load), and every run records the median, p90 and the ratio to the baseline.
`--session plain` (the default) times each file as users run it: `onnxruntime.InferenceSession`
with default options (trtq's own sessions use the same); `--session fusion-off` disables
onnxruntime's MatMulAddFusion, as trtq's session did before its exports had full-rank biases
(for timing files written then).
The script also counts the QuantizeLinear/DequantizeLinear nodes onnxruntime left unfused in its
optimized graph (they run as standalone float kernels and cost time) and the float GEMMs it ran
on dequantized inputs (integer kernels it could not use), and profiles each file node by node
in a separate session: kernel time per op type, and Transpose time on float vs 8-bit tensors.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _provenance import provenance, save_results

from trtq.bench.latency import summarize, time_calls
from trtq.bench.onnxruntime_bench import make_feeds
from trtq.export.onnxruntime_session import QDQ_DISABLED_OPTIMIZERS
from trtq.system import describe_cpu

PARTS = {"encoder": {}, "decoder": {"boxes": (1, 4)}}


def unfused_qdq(path: Path, disabled: list[str]) -> dict:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        graph = onnx.load(options.optimized_model_filepath).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {"unfused_qdq_nodes": sum(1 for n in graph.node
                                     if n.op_type in ("QuantizeLinear", "DequantizeLinear")),
            "float_gemms_on_dequantized": sum(
                1 for n in graph.node if n.op_type in ("MatMul", "Gemm", "FusedMatMul",
                                                       "FusedGemm")
                and any(i in dequantized for i in n.input))}


def op_profile(path: Path, feeds: dict, disabled: list[str], runs: int = 3) -> dict:
    """Kernel milliseconds per op type (mean of `runs` runs after one warm-up, largest first)
    and the Transpose time on float vs 8-bit tensors, from onnxruntime's node profile."""
    from trtq.autoquant.gains import ort_node_profile

    nodes = ort_node_profile(path, feeds, runs, warmup=1, disabled_optimizers=tuple(disabled))
    per_op: dict[str, float] = {}
    transpose = {"float": 0.0, "8-bit": 0.0}
    for row in nodes.values():
        per_op[row["op"]] = per_op.get(row["op"], 0.0) + row["ms"]
        if row["op"] == "Transpose":
            transpose["float" if "float" in row["input_types"][:1] else "8-bit"] += row["ms"]
    ordered = dict(sorted(per_op.items(), key=lambda kv: -kv[1]))
    return {"kernel_ms_by_op": {k: round(v, 2) for k, v in ordered.items()},
            "kernel_ms": round(sum(per_op.values()), 2),
            "transpose_ms": {k: round(v, 2) for k, v in transpose.items()}}


def plain_session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def fusion_off_session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(QDQ_DISABLED_OPTIMIZERS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, metavar="LABEL=DIR")
    ap.add_argument("--iterations", type=int, default=10, help="timed runs per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--session", choices=("plain", "fusion-off"), default="plain")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    block = provenance()
    open_session = plain_session if args.session == "plain" else fusion_off_session
    disabled = [] if args.session == "plain" else list(QDQ_DISABLED_OPTIMIZERS)
    result = {"device": describe_cpu(), "session": args.session, "iterations": args.iterations,
              "rounds": args.rounds, "warmup": args.warmup, "parts": {}}
    for part, shapes in PARTS.items():
        sessions = {k: open_session(Path(d) / f"{part}.onnx") for k, d in variants.items()}
        feeds = {k: make_feeds(s, shapes) for k, s in sessions.items()}
        samples = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, s in sessions.items():
                samples[k] += time_calls(lambda s=s, f=feeds[k]: s.run(None, f),
                                         args.iterations, args.warmup)
        base = statistics.median(samples[next(iter(variants))])
        result["parts"][part] = {
            k: {**summarize(v), "speedup_vs_first": base / statistics.median(v),
                **unfused_qdq(Path(variants[k]) / f"{part}.onnx", disabled),
                "profile": op_profile(Path(variants[k]) / f"{part}.onnx", feeds[k], disabled)}
            for k, v in samples.items()}
    save_results(args.out, result, block)
    for part, rows in result["parts"].items():
        for k, r in rows.items():
            print(f"{part:8s} {k:20s} median {r['median']:8.1f} ms  p90 {r['p90']:8.1f} ms  "
                  f"x{r['speedup_vs_first']:.2f}  unfused Q/DQ {r['unfused_qdq_nodes']}")


if __name__ == "__main__":
    main()
