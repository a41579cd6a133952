"""Markdown rendering of a `trtq run` report."""

from __future__ import annotations

from trtq.bench.report import format_mib


def _header(report: dict) -> list[str]:
    cfg = report["config"]
    lines = [f"# trtq run: {cfg['model']}", ""]
    lines.append(f"- checkpoint: `{report.get('checkpoint')}` (SHA-256 "
                 f"`{(report.get('checkpoint_sha256') or 'n/a')[:16]}…`)")
    exp = report["export"]
    lines.append(f"- FP32 ONNX: `{exp['encoder']}`, `{exp['decoder']}`; max relative difference "
                 f"from PyTorch {exp['encoder_parity']:.1e} (encoder), "
                 f"{exp['decoder_parity']:.1e} (decoder)")
    sa = report["sample_agreement"]
    source = f"`{cfg['images']}`" if cfg.get("images") else "the bundled sample images"
    lines.append(f"- PyTorch vs onnxruntime mask agreement on {sa['images']} images from "
                 f"{source} (centre-box prompts): mean IoU {sa['agreement_miou']:.4f}")
    return lines


def _int8_lines(report: dict) -> list[str]:
    int8 = report.get("int8")
    if not int8:
        return []
    agree = int8["agreement_with_fp32"]
    exports = int8["exports"]["tensorrt"]
    lines = [f"- INT8 ({int8['recipe']}): calibrated on {len(int8['calibration_images'])} images "
             f"({', '.join(int8['calibration_images'])}); mask agreement with FP32 (both in "
             f"onnxruntime) on the {agree['images']} other images: mean IoU "
             f"{agree['agreement_miou']:.4f}",
             f"- TensorRT-target INT8 ONNX (deployable): `{exports['encoder']['path']}`, "
             f"`{exports['decoder']['path']}`; INT8 MAC coverage "
             f"{exports['encoder']['int8_mac_coverage']:.1%} (encoder), "
             f"{exports['decoder']['int8_mac_coverage']:.1%} (decoder); timed below: the "
             "onnxruntime-target graph (uint8 activations, what onnxruntime's CPU kernels run)"]
    aq = int8.get("autoquant")
    if aq:
        s = aq["summary"]
        kept = [r["group"] for r in aq["groups"] if r["decision"] != "int8"
                and r.get("agreement_alone") is not None]
        lines.append(f"- autoquant (onnxruntime): {s['int8_groups']} of {s['groups']} layer "
                     f"groups INT8, agreement with FP32 on the calibration images "
                     f"{s['held_out_agreement']:.4f} (floor {s['min_agreement']}; every group "
                     f"INT8: {s['all_groups_agreement']:.4f}); float: "
                     + (", ".join(kept[:6]) + (" ..." if len(kept) > 6 else "") or "none"))
    return lines


def _eval_lines(report: dict) -> list[str]:
    if "eval" not in report:
        return []
    cfg = report["config"]
    rows = dict(report["eval"])
    if "int8" in report and "eval" in report["int8"]:
        rows["onnxruntime INT8"] = report["int8"]["eval"]
    lines = [f"## Accuracy on {cfg['data']} / {cfg['split']}", "",
             "| backend | images | instances | mIoU vs GT | agreement with the reference "
             "| seconds |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in rows.items():
        agree = f"{s['agreement_miou']:.4f}" if "agreement_miou" in s else "(reference)"
        lines.append(f"| {name} | {s['images']} | {s['instances']} | {s['miou']:.4f} | "
                     f"{agree} | {s['seconds']:.0f} |")
    return lines + ["", "Reference: PyTorch for the FP32 ONNX; the FP32 ONNX for INT8.", ""]


def _latency_lines(report: dict) -> list[str]:
    bench = report["bench"]
    first = next(iter(bench.values()))
    rows = [("FP32", part, r, None) for part, r in bench.items()]
    if "int8" in report:
        speed = report["int8"]["speedup_vs_fp32"]
        rows = []
        for part in bench:
            rows.append(("FP32", part, bench[part], None))
            rows.append(("INT8", part, report["int8"]["bench"][part], speed[part]))
    lines = [f"## Latency: onnxruntime {first['onnxruntime_version']}, {first['provider']}, "
             f"{first['device']}, {first['threads']} threads", "",
             "| model | part | median ms | p90 ms | p99 ms | min ms | max ms | FPS | × FP32 "
             "| session RSS MiB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, part, r, speedup in rows:
        lat = r["latency_ms"]
        lines.append(f"| {name} | {part} | {lat['median']:.1f} | {lat['p90']:.1f} | "
                     f"{lat['p99']:.1f} | {lat['min']:.1f} | {lat['max']:.1f} | {r['fps']:.2f} | "
                     f"{'1.00' if speedup is None else f'{speedup:.2f}'} | "
                     f"{format_mib(r.get('rss_delta_mib'))} |")
    peak = max(r["peak_rss_mib"] for _, _, r, _ in rows)
    lines += ["", f"{first['warmup']} warm-up and {first['iterations']} timed runs per model and "
              "part, FP32 and INT8 back to back; decoder timed with one box; × FP32 = FP32 "
              "median / INT8 median. Session RSS: resident memory the onnxruntime session "
              f"added to the process; the whole process peaked at {peak:.0f} MiB."]
    return lines


def _tensorrt_lines(report: dict) -> list[str]:
    trt = report.get("tensorrt")
    if not trt:
        return ["", "No TensorRT figure: TensorRT and a GPU were not both present, so no engine "
                "was built or timed."]
    lines = ["", "## TensorRT engines (built and timed on this machine)", "",
             "| precision | part | median ms | p99 ms | FPS | engine MiB |",
             "|---|---|---:|---:|---:|---:|"]
    for precision, parts in trt.items():
        for part, r in parts.items():
            lat = r["latency_ms"]
            lines.append(f"| {precision} | {part} | {lat['median']:.3f} | {lat['p99']:.3f} | "
                         f"{r['fps']:.1f} | {r['memory']['engine_device_mib']:.0f} |")
    return lines


def run_markdown(report: dict) -> str:
    lines = _header(report) + _int8_lines(report) + [""]
    lines += _eval_lines(report) + _latency_lines(report) + _tensorrt_lines(report)
    lines += ["", "![latency and accuracy](report.png)"]
    return "\n".join(lines) + "\n"
