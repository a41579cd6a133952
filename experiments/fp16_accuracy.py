"""The FP16 baseline's accuracy: LiteMedSAM in FP32 and in half precision, side by side.

    python experiments/fp16_accuracy.py --data ../shared/datasets/busi --split val \\
        --out experiments/results/fp16-litemedsam-busi.json [--limit N]

Both runs go through `trtq.eval.sam_eval.evaluate` in one process: FP32 PyTorch first, then
the same weights in FP16 (`trtq.eval.half`: FP16 weights and activations, every layer rounding
its output to FP16), with the FP32 masks as the reference, so the file holds each run's mIoU
against the ground truth and the FP16 masks' agreement (mean IoU) with FP32. This is the
accuracy side of "INT8 versus FP16"; no TensorRT FP16 engine ran here.
"""

from __future__ import annotations

import argparse

from _provenance import provenance, save_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    block = provenance()

    import torch

    from trtq.data import CocoBoxDataset
    from trtq.eval.backends import TorchBackend
    from trtq.eval.half import HalfBackend
    from trtq.eval.sam_eval import evaluate
    from trtq.models import load_model

    torch.set_num_threads(args.threads)
    fp32 = evaluate(TorchBackend(load_model("litemedsam")),
                    CocoBoxDataset(args.data, args.split, limit=args.limit))
    reference = {"per_instance": fp32.per_instance}
    fp16 = evaluate(HalfBackend(load_model("litemedsam")),
                    CocoBoxDataset(args.data, args.split, limit=args.limit), reference)
    below = sum(r["agreement"] < 0.99 for r in fp16.per_instance)
    result = {"config": vars(args),
              "fp32": {**fp32.summary(), "seconds": fp32.seconds},
              "fp16": {**fp16.summary(), "seconds": fp16.seconds,
                       "masks_below_0.99_agreement": below},
              "miou_drop_fp16": fp32.miou - fp16.miou}
    save_results(args.out, result, block)
    print(f"FP32 mIoU {fp32.miou:.4f}; FP16 mIoU {fp16.miou:.4f}, agreement with FP32 "
          f"{fp16.agreement_miou:.4f} ({below} of {len(fp16.per_instance)} masks < 0.99)")


if __name__ == "__main__":
    main()
