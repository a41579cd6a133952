"""Recipe ablation on a SAM-family model: FP32, and for each bit width the baseline and each
recipe variant (PTQ4SAM: +BIG / +AGQ / both; PTQ4ViT: +Hessian / +twin / both / deployable
subset), mask mIoU against ground truth and mean IoU against the FP32 masks (fake-quant,
PyTorch, CPU).

    python experiments/ablation.py --data ../shared/datasets/busi --calib-split calib \\
        --val-split val --out experiments/results/ablation-busi.json
    python experiments/ablation.py --model litemedsam-bimodal --bits 6 4 \\
        --variants "" flip center big --data ... --out experiments/results/ablation-bimodal.json
    python experiments/ablation.py --bits 8 6 --variants "" hessian twin ptq4vit ptq4vit-deploy \\
        --data ... --out experiments/results/ptq4vit-busi.json

Rows are calibrated on `--calib-images` images of the calibration split (its annotation boxes
prompt the decoder) and evaluated on the first `--val-images` images of the evaluation split.
Each finished row is written to the JSON at once; a rerun skips the rows already there, so an
interrupted run resumes (a resumed run that adds rows appends its own provenance under
provenance.resumed_by). `--report` prints the Markdown table (and BIG's per-layer verdicts).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

VARIANT_LABELS = {"": "baseline", "big": "+BIG", "agq": "+AGQ", "ptq4sam": "+BIG+AGQ",
                  "flip": "+flip only", "center": "+centring only", "hessian": "+Hessian",
                  "twin": "+twin", "ptq4vit": "+twin+Hessian",
                  "ptq4vit-deploy": "+Hessian+shifted asym (deployable)"}


def _samples(root: str, split: str, images: int):
    from trtq.data import CocoBoxDataset

    return list(itertools.islice(iter(CocoBoxDataset(root, split)), images))


def _evaluate(model, samples, reference=None) -> dict:
    from trtq.eval.backends import TorchBackend
    from trtq.eval.sam_eval import evaluate

    result = evaluate(TorchBackend(model), samples, reference)
    summary = result.summary()
    summary["seconds"] = result.seconds
    return summary, {"per_instance": result.per_instance}


def _save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _restrict(recipe, pattern: str | None, bits: int):
    """With --only: every quantizer float except those matching `pattern` (uniform, `bits`
    bits, percentile), BIG kept: one tensor's quantization error in isolation."""
    if not pattern:
        return recipe
    from trtq.recipes import QuantizerSpec, QuantRule, replace_rules

    spec = QuantizerSpec(bits=bits, observer="percentile")
    return replace_rules(recipe, (QuantRule("*", None), QuantRule(pattern, spec)))


def run(args) -> dict:
    import torch
    from _provenance import provenance

    from trtq.calib import calibrate
    from trtq.data.calibration import calibration_samples
    from trtq.models import load_model

    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = Path(args.out)
    block = provenance()
    resumed = out.exists()
    data = json.loads(out.read_text()) if resumed else {"provenance": block}
    data.setdefault("config", vars(args) | {"out": str(out)})
    rows = data.setdefault("rows", {})

    def note_resume() -> None:
        """A resumed run that adds rows records its own provenance beside the first one's."""
        nonlocal resumed
        if resumed:
            data.setdefault("provenance", {}).setdefault("resumed_by", []).append(block)
            resumed = False

    val = _samples(args.data, args.val_split, args.val_images)
    calib = calibration_samples(args.data, args.calib_split, args.calib_images)
    ref_path = out.with_name(out.stem + "-fp32-masks.json")
    if "fp32" not in rows or not ref_path.exists():
        note_resume()
        summary, masks = _evaluate(load_model(args.model), val)
        rows["fp32"] = {"label": "FP32", **summary}
        _save(ref_path, masks)
        _save(out, data)
        print(f"FP32: mIoU {summary['miou']:.4f} ({summary['instances']} instances)", flush=True)
    reference = json.loads(ref_path.read_text())
    for bits in args.bits:
        for variant in args.variants:
            name = f"w{bits}a{bits}" + (f"-{variant}" if variant else "")
            if name in rows:
                continue
            from trtq.models import adapter_for
            from trtq.recipes import get_recipe

            recipe = _restrict(get_recipe(name, adapter_for(args.model).rules), args.only, bits)
            if args.rows and recipe.search is not None:
                from dataclasses import replace

                recipe = replace(recipe, search=replace(recipe.search, rows=args.rows))
            note_resume()
            model = load_model(args.model)
            start = time.perf_counter()
            calibrate(model, recipe, calib)
            calib_s = time.perf_counter() - start
            summary, _ = _evaluate(model, val, reference)
            rows[name] = {"label": f"W{bits}A{bits} {VARIANT_LABELS[variant]}", "bits": bits,
                          "variant": variant, "calibration_seconds": calib_s, **summary,
                          "big": getattr(model, "trtq_big_report", None),
                          "search": getattr(model, "trtq_search_report", None)}
            _save(out, data)
            print(f"{name}: mIoU {summary['miou']:.4f}, vs FP32 "
                  f"{summary['agreement_miou']:.4f} (calib {calib_s:.0f} s, eval "
                  f"{summary['seconds']:.0f} s)", flush=True)
    return data


def report(data: dict) -> str:
    rows = data["rows"]
    cfg = data["config"]
    only = f", only {cfg['only']} quantized" if cfg.get("only") else ""
    lines = [f"{cfg['model']}{only} on {Path(cfg['data']).name}/{cfg['val_split']} "
             f"({rows['fp32']['instances']} instances, {cfg['val_images']} images), "
             f"calibrated on {cfg['calib_images']} {cfg['calib_split']} images",
             "", "| run | mIoU vs GT | mean IoU vs FP32 masks |", "|---|---:|---:|",
             f"| FP32 | {rows['fp32']['miou']:.4f} | — |"]
    for name, r in rows.items():
        if name != "fp32":
            lines.append(f"| {r['label']} | {r['miou']:.4f} | {r['agreement_miou']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--data", help="COCO-format dataset root (required unless --report)")
    p.add_argument("--calib-split", default="calib")
    p.add_argument("--val-split", default="val")
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--val-images", type=int, default=40)
    p.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    p.add_argument("--variants", nargs="+", default=["", "big", "agq", "ptq4sam"],
                   help="recipe suffixes ('' is the uniform baseline)")
    p.add_argument("--only", metavar="PATTERN",
                   help="quantize only the quantizers matching PATTERN (e.g. the token→image "
                   "K: 'mask_decoder.*token_to_image.qk_matmul.other_quantizer')")
    p.add_argument("--rows", type=int, help="PTQ4ViT search: rows recorded per image and layer "
                   "(the recipe's default is 256; fewer for CPU time)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", required=True, help="result JSON (resumable)")
    p.add_argument("--report", action="store_true", help="print the table of --out and exit")
    args = p.parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.out).read_text())))
        return 0
    if not args.data:
        p.error("--data is required to run the ablation")
    print(report(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
