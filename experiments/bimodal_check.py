"""`litemedsam-bimodal` computes the same function as LiteMedSAM: the largest difference of the
decoder outputs (low-resolution mask logits, IoU scores) between the two models, in float.

    python experiments/bimodal_check.py --data ../shared/datasets/busi --split calib \\
        --images 8 --out experiments/results/bimodal-check.json

The variant (`trtq.models.bimodal`) adds ±c per channel to the token→image k_proj biases, which
softmax over keys ignores in exact arithmetic; what is left is float rounding. Both decoders run
on the same image embeddings (the encoders are identical), with each image's annotation boxes.
"""

from __future__ import annotations

import argparse
import sys

from _provenance import provenance, save_results


def differences(data: str, split: str, images: int) -> dict:
    import torch

    from trtq.data.calibration import calibration_samples
    from trtq.models import load_model

    base, bimodal = load_model("litemedsam").eval(), load_model("litemedsam-bimodal").eval()
    pre = base.preprocess
    rows = []
    with torch.no_grad():
        for sample in calibration_samples(data, split, images):
            if sample.boxes is None or len(sample.boxes) == 0:
                continue
            emb = base.image_encoder(torch.from_numpy(pre.image(sample.rgb)))
            boxes = torch.from_numpy(pre.boxes(sample.boxes, sample.rgb.shape[:2]))
            masks_a, iou_a = base.box_decoder()(emb, boxes)
            masks_b, iou_b = bimodal.box_decoder()(emb, boxes)
            rows.append({"boxes": len(boxes),
                         "mask_logits_max_abs_diff": float((masks_a - masks_b).abs().max()),
                         "mask_logits_max_abs": float(masks_a.abs().max()),
                         "iou_max_abs_diff": float((iou_a - iou_b).abs().max())})
    return {"images": rows,
            "max_abs_diff": max(max(r["mask_logits_max_abs_diff"], r["iou_max_abs_diff"])
                                for r in rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="COCO dataset root (images with boxes)")
    p.add_argument("--split", default="calib")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--out", required=True, help="results JSON")
    args = p.parse_args(argv)
    block = provenance()
    result = differences(args.data, args.split, args.images)
    save_results(args.out, {"config": vars(args), **result}, block)
    print(f"largest decoder output difference over {len(result['images'])} images: "
          f"{result['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
