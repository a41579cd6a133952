"""How far a W8A8 model's masks move when its input moves by rounding noise: the floor under any
parity figure between two implementations of the same quantized model.

    python experiments/parity_chaos.py --calibrated CAL --data ../shared/datasets/busi \\
        --split val [--noise 1e-6] [--seeds 2] [--limit N] \\
        --out experiments/results/parity-chaos-litemedsam-busi.json

Each image is run twice through the same PyTorch model, once as given and once with every
input value multiplied by (1 + noise·z), z standard normal (seeded per image): a change of the
order of float32 rounding. The mean mask IoU between the two runs is measured for the FP32
model and for the fake-quantized model of CAL (`--seeds` perturbations), with the quantized
runs' agreement with the FP32 masks, which shows how far that figure moves between runs.
FP32 is smooth (≈ 1.0); the quantized model is not: a value that moves across a rounding
boundary in one quantizer changes an 8-bit code, the change moves values across boundaries in
later quantizers, and masks differ. Two exact implementations of the same Q/DQ graph (PyTorch
fake-quant, onnxruntime, TensorRT) differ by accumulation order, a change of this size, so
their mask agreement cannot be expected above the figure measured here. The exactness of
trtq's export is checked where it is meaningful, quantizer by quantizer (`forced_parity` in the
export sidecar, docs/quantization.md).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _provenance import provenance, save_results

from trtq.calib.state_dir import load_calibrated
from trtq.data import CocoBoxDataset
from trtq.eval.backends import TorchBackend
from trtq.eval.masks import decode_rle, mask_iou
from trtq.eval.sam_eval import evaluate
from trtq.models import load_model


class NoisyInput(TorchBackend):
    """A PyTorch backend whose image input is scaled by (1 + noise·z), z seeded per image."""

    def __init__(self, model, noise: float, seed: int) -> None:
        super().__init__(model)
        self.noise, self.seed, self.calls = noise, seed, 0

    def encode(self, image: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.calls])
        self.calls += 1
        z = rng.standard_normal(image.shape).astype(np.float32)
        return super().encode((image * (1 + self.noise * z)).astype(np.float32))


def _agreement(rows: list[dict], reference: list[dict]) -> float:
    """Mean mask IoU of eval rows against another run's rows (matched by annotation id)."""
    masks = {r["ann_id"]: decode_rle(r["rle"]) for r in reference}
    return float(np.mean([mask_iou(decode_rle(r["rle"]), masks[r["ann_id"]]) for r in rows]))


def sensitivity(model, samples, noise: float, seeds: int,
                fp32: list[dict] | None) -> tuple[dict, list[dict]]:
    """The model's masks on `samples` as given and under `seeds` input perturbations: how well
    each perturbed run agrees with the unperturbed one (and, for a quantized model, how much
    its agreement with the FP32 masks `fp32` moves). Returns the figures and the unperturbed
    run's eval rows."""
    clean = evaluate(TorchBackend(model), samples,
                     reference=None if fp32 is None else {"per_instance": fp32})
    out = {"miou": clean.miou, "instances": len(clean.per_instance), "runs": []}
    if fp32 is not None:
        out["agreement_with_fp32"] = clean.agreement_miou
    for seed in range(seeds):
        noisy = evaluate(NoisyInput(model, noise, seed), samples,
                         reference={"per_instance": clean.per_instance})
        moved = [r["agreement"] for r in noisy.per_instance]
        run = {"seed": seed, "miou": noisy.miou, "agreement_with_unperturbed": noisy.agreement_miou,
               "instances_below_0.99": int(sum(a < 0.99 for a in moved)),
               "min_agreement": float(min(moved))}
        if fp32 is not None:
            run["agreement_with_fp32"] = _agreement(noisy.per_instance, fp32)
        out["runs"].append(run)
        print(run, flush=True)
    return out, clean.per_instance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="litemedsam")
    ap.add_argument("--calibrated", required=True, help="a `trtq calibrate` folder")
    ap.add_argument("--data", required=True, help="COCO dataset root")
    ap.add_argument("--split", default="val")
    ap.add_argument("--noise", type=float, default=1e-6, help="relative input noise (default "
                    "1e-6, about 8 float32 ulps)")
    ap.add_argument("--seeds", type=int, default=2,
                    help="perturbed runs of the quantized model (default 2)")
    ap.add_argument("--limit", type=int, help="first N images only (a smoke run)")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    block = provenance()
    samples = list(CocoBoxDataset(args.data, args.split, limit=args.limit))
    results = {"config": dict(vars(args))}
    results["fp32"], fp32_masks = sensitivity(load_model(args.model), samples, args.noise, 1, None)
    model = load_model(args.model)
    recipe, record = load_calibrated(model, args.model, args.calibrated)
    results["calibration"] = {"recipe": recipe.name, "calibration_id": record["calibration_id"]}
    results["fake_quant"], _ = sensitivity(model, samples, args.noise, args.seeds, fp32_masks)
    save_results(args.out, results, block)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
