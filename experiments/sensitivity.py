"""Which quantizers hurt: turn on one group of a calibrated model's quantizers at a time and
measure low-resolution mask IoU against the float model on a few real images.

    python experiments/sensitivity.py --calibrated DIR --data ROOT --split val --images 4 \\
        [--out experiments/results/sensitivity.json]
"""

from __future__ import annotations

import argparse
import fnmatch

import numpy as np
import torch
from _provenance import provenance, save_results

from trtq.calib.modules import quantizers
from trtq.calib.state_dir import load_calibrated
from trtq.data import CocoBoxDataset
from trtq.models import load_model

GROUPS = {
    "all": ["*"],
    "encoder weights": ["image_encoder.*weight_quantizer"],
    "encoder conv/linear inputs": ["image_encoder.*.input_quantizer"],
    "encoder q·kᵀ": ["image_encoder.*qk_matmul.*"],
    "encoder attn·v": ["image_encoder.*av_matmul.*"],
    "encoder softmax out (attn·v input)": ["image_encoder.*av_matmul.input_quantizer"],
    "decoder weights": ["mask_decoder.*weight_quantizer"],
    "decoder linear inputs": ["mask_decoder.*proj.input_quantizer",
                              "mask_decoder.*lin?.input_quantizer"],
    "decoder q·kᵀ": ["mask_decoder.*qk_matmul.*"],
    "decoder softmax out (attn·v input)": ["mask_decoder.*av_matmul.input_quantizer"],
    "decoder token→image softmax out": ["mask_decoder.*token_to_image.av_matmul.input_quantizer"],
}


def run_masks(model, samples):
    decoder, pre = model.box_decoder(), model.preprocess
    out = []
    with torch.no_grad():
        for s in samples:
            emb = model.image_encoder(torch.from_numpy(pre.image(s.rgb)))
            boxes = np.stack([i.box for i in s.instances])
            masks, _ = decoder(emb, torch.from_numpy(pre.boxes(boxes, s.rgb.shape[:2])))
            out.append(masks[:, 0] > 0)
    return out


def iou(a, b) -> float:
    values = [float((x & y).sum() / max((x | y).sum(), 1)) for p, q in zip(a, b, strict=True)
              for x, y in zip(p, q, strict=True)]
    return float(np.mean(values))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calibrated", required=True)
    ap.add_argument("--model", default="litemedsam")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--group", action="append", metavar="LABEL=PATTERN[,PATTERN]",
                    help="measure these groups instead of the built-in ones; "
                    "a pattern starting with ! excludes")
    ap.add_argument("--out", help="results JSON (mask IoU per group, with provenance)")
    args = ap.parse_args()
    block = provenance()
    groups = GROUPS
    if args.group:
        groups = {g.split("=", 1)[0]: g.split("=", 1)[1].split(",") for g in args.group}
    samples = list(CocoBoxDataset(args.data, args.split, limit=args.images))
    model = load_model(args.model)
    load_calibrated(model, args.model, args.calibrated)
    qs = dict(quantizers(model))
    calibrated = {n for n, q in qs.items() if q.enabled}
    for q in qs.values():
        q.enabled = False
    reference = run_masks(model, samples)
    rows = {}
    for label, patterns in groups.items():
        keep = [p for p in patterns if not p.startswith("!")]
        drop = [p[1:] for p in patterns if p.startswith("!")]
        chosen = {n for n in calibrated if any(fnmatch.fnmatchcase(n, p) for p in keep)
                  and not any(fnmatch.fnmatchcase(n, p) for p in drop)}
        for n, q in qs.items():
            q.enabled = n in chosen
        rows[label] = {"patterns": patterns, "quantizers": len(chosen),
                       "mask_iou_vs_float": iou(run_masks(model, samples), reference)}
        print(f"{label:40s} {len(chosen):4d} quantizers  mask IoU vs float "
              f"{rows[label]['mask_iou_vs_float']:.4f}", flush=True)
    if args.out:
        save_results(args.out, {"config": vars(args), "groups": rows}, block)


if __name__ == "__main__":
    main()
