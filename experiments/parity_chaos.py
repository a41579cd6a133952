"""How far a W8A8 model's masks move when its input moves by rounding noise: the floor under any
parity figure between two implementations of the same quantized model.

    python experiments/parity_chaos.py --calibrated CAL --data ../shared/datasets/busi \\
        --split val [--noise 1e-6] [--limit N] --out experiments/results/parity-chaos-busi.json

Each image is run twice through the same PyTorch model, once as given and once with every
input value multiplied by (1 + noise·z), z standard normal (seeded per image): a change of the
order of float32 rounding. The mean mask IoU between the two runs is measured for the FP32
model and for the fake-quantized model of CAL. FP32 is smooth (≈ 1.0); the quantized model
is not: a value that moves across a rounding boundary in one quantizer changes an 8-bit code,
the change moves values across boundaries in later quantizers, and masks differ. Two exact
implementations of the same Q/DQ graph (PyTorch fake-quant, onnxruntime, TensorRT) differ by
accumulation order, which is a change of this size, so their mask agreement cannot be expected
above the figure measured here. The exactness of trtq's export is checked where it is
meaningful, step by step (`forced_parity` in the export sidecar, docs/quantization.md).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _provenance import provenance, save_results

from trtq.calib.state_dir import load_calibrated
from trtq.data import CocoBoxDataset
from trtq.eval.backends import TorchBackend
from trtq.eval.sam_eval import evaluate
from trtq.models import load_model


class NoisyInput(TorchBackend):
    """A PyTorch backend whose image input is scaled by (1 + noise·z), seeded per image."""

    def __init__(self, model, noise: float) -> None:
        super().__init__(model)
        self.noise, self.calls = noise, 0

    def encode(self, image: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.calls)
        self.calls += 1
        z = rng.standard_normal(image.shape).astype(np.float32)
        return super().encode((image * (1 + self.noise * z)).astype(np.float32))


def sensitivity(model, samples, noise: float) -> dict:
    """The model's masks on `samples`, and how well the noisy-input run agrees with them."""
    clean = evaluate(TorchBackend(model), samples)
    noisy = evaluate(NoisyInput(model, noise), samples,
                     reference={"per_instance": clean.per_instance})
    moved = [r["agreement"] for r in noisy.per_instance]
    return {"miou": clean.miou, "noisy_miou": noisy.miou, "instances": len(moved),
            "agreement_miou": noisy.agreement_miou,
            "instances_below_0.99": int(sum(a < 0.99 for a in moved)),
            "min_agreement": float(min(moved))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="litemedsam")
    ap.add_argument("--calibrated", required=True, help="a `trtq calibrate` folder")
    ap.add_argument("--data", required=True, help="COCO dataset root")
    ap.add_argument("--split", default="val")
    ap.add_argument("--noise", type=float, default=1e-6, help="relative input noise (default "
                    "1e-6, about 8 float32 ulps)")
    ap.add_argument("--limit", type=int, help="first N images only (a smoke run)")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    block = provenance()
    samples = list(CocoBoxDataset(args.data, args.split, limit=args.limit))
    results = {"config": {k: v for k, v in vars(args).items()}}
    results["fp32"] = sensitivity(load_model(args.model), samples, args.noise)
    print("fp32", results["fp32"], flush=True)
    model = load_model(args.model)
    recipe, record = load_calibrated(model, args.model, args.calibrated)
    results["calibration"] = {"recipe": recipe.name, "calibration_id": record["calibration_id"]}
    results["fake_quant"] = sensitivity(model, samples, args.noise)
    print("fake_quant", results["fake_quant"], flush=True)
    save_results(args.out, results, block)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
