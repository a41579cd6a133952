"""Twin-uniform vs uniform quantization error on real post-softmax and post-GELU tensors.

    python experiments/twin_error.py --data ../shared/datasets/busi --images 4 --bits 6 \\
        --out experiments/results/twin-error.json

Runs LiteMedSAM in full precision on `--images` calibration images (with their boxes, so the
decoder runs too), records every post-softmax tensor (the attn·v inputs) and every post-GELU
tensor (TinyViT's MLP fc2 and 1×1 conv3 inputs), and quantizes each with its best range (the
candidate of PTQ4ViT's search grid with the smallest MSE) as uniform symmetric, uniform
asymmetric (unsigned for softmax) and twin-uniform. Prints the mean relative MSE per family.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from _provenance import provenance, save_results


def record_tensors(model, samples, patterns: dict[str, tuple[str, ...]], limit: int = 200_000):
    """{family: [tensor per (layer, image)]} of the inputs of the layers matching the
    patterns (quantizer owners), evenly subsampled to at most `limit` values each."""
    import torch

    from trtq.models.sam_calibration import run_sample

    found: dict[str, list] = {family: [] for family in patterns}
    hooks = []
    for name, module in model.named_modules():
        for family, pats in patterns.items():
            if any(fnmatch.fnmatchcase(name, p) for p in pats):
                def hook(mod, args, out, family=family):
                    flat = args[0].detach().flatten()
                    step = max(1, flat.numel() // limit)
                    found[family].append(flat[::step].clone())
                hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for sample in samples:
                run_sample(model, sample)
    finally:
        for h in hooks:
            h.remove()
    return found


def errors(x, bits: int) -> dict[str, float]:
    """Relative MSE (‖x − x̂‖² / ‖x‖²) of the best range of each format for tensor `x`."""
    from trtq.calib.quantizer import TensorQuantizer
    from trtq.calib.search import Slot, candidates
    from trtq.recipes import QuantizerSpec, SearchOptions

    softmax = bool(x.min() >= 0)
    specs = {"uniform symmetric": QuantizerSpec(bits=bits),
             "uniform asymmetric": QuantizerSpec(bits=bits, symmetric=False),
             "twin": QuantizerSpec(bits=bits, kind="twin_softmax" if softmax else "twin_gelu",
                                   observer="output_mse")}
    out = {}
    norm = float(x.double().pow(2).sum())
    for label, spec in specs.items():
        q = TensorQuantizer()
        q.configure(spec)
        slot = Slot(label, q, x, cands=candidates(spec, x, SearchOptions()))
        slot.initial()
        out[label] = float((slot.value() - x).double().pow(2).sum()) / norm
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="calib")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--bits", type=int, default=6)
    p.add_argument("--out", help="results JSON of the per-tensor errors (with provenance)")
    args = p.parse_args(argv)
    block = provenance()

    import numpy as np

    from trtq.data.calibration import calibration_samples
    from trtq.models import load_model

    model = load_model(args.model)
    samples = calibration_samples(args.data, args.split, args.images)
    patterns = {"post-softmax": ("*.av_matmul",),
                "post-GELU": ("image_encoder.*.mlp.fc2", "image_encoder.*.conv3")}
    tensors = record_tensors(model, samples, patterns)
    rows = {family: [errors(t, args.bits) for t in ts] for family, ts in tensors.items()}
    labels = ["uniform symmetric", "uniform asymmetric", "twin"]
    print(f"{args.model}, {args.images} {Path(args.data).name}/{args.split} images, {args.bits} "
          "bits: mean relative MSE ‖x − x̂‖²/‖x‖² (best range of each format)\n")
    print("| tensors | count | " + " | ".join(labels) + " |")
    print("|---|---:|" + "---:|" * len(labels))
    for family, errs in rows.items():
        means = [np.mean([e[label] for e in errs]) for label in labels]
        print(f"| {family} | {len(errs)} | " + " | ".join(f"{m:.2e}" for m in means) + " |")
    if args.out:
        save_results(args.out, {"config": vars(args), "rows": rows}, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
