"""Markdown rendering of a `trtq run` report."""

from __future__ import annotations

from trtq.bench.report import format_mib


def run_markdown(report: dict) -> str:
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
    lines.append("")
    if "eval" in report:
        lines += [f"## Accuracy on {cfg['data']} / {cfg['split']}", "",
                  "| backend | images | instances | mIoU vs GT | agreement with PyTorch "
                  "| seconds |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, s in report["eval"].items():
            agree = f"{s['agreement_miou']:.4f}" if "agreement_miou" in s else "(reference)"
            lines.append(f"| {name} | {s['images']} | {s['instances']} | {s['miou']:.4f} | "
                         f"{agree} | {s['seconds']:.0f} |")
        lines.append("")
    bench = report["bench"]
    first = next(iter(bench.values()))
    lines += [f"## Latency: onnxruntime {first['onnxruntime_version']}, {first['provider']}, "
              f"{first['device']}, {first['threads']} threads", "",
              "| part | median ms | p90 ms | p99 ms | min ms | max ms | FPS | session RSS MiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for part, r in bench.items():
        lat = r["latency_ms"]
        lines.append(f"| {part} | {lat['median']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | "
                     f"{lat['min']:.1f} | {lat['max']:.1f} | {r['fps']:.2f} | "
                     f"{format_mib(r.get('rss_delta_mib'))} |")
    lines += ["", f"{first['warmup']} warm-up and {first['iterations']} timed runs per part; "
              "decoder timed with one box. Session RSS: resident memory the onnxruntime "
              f"session added to the process; the whole process peaked at "
              f"{max(r['peak_rss_mib'] for r in bench.values()):.0f} MiB (PyTorch model and "
              "export included). TensorRT engines come with a later release; no TensorRT "
              "figure is reported here."]
    return "\n".join(lines) + "\n"
