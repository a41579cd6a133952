"""Check PTQ4ViT's Hessian-guided search on a real model: are its gradients real, and does it
choose other scales than the same search scored by plain output MSE?

    python experiments/hessian_check.py --data ../shared/datasets/busi --images 4 --bits 6 \\
        --out experiments/results/hessian-check.json

Records every quantized layer of LiteMedSAM (recipe w{bits}a{bits}-hessian) on `--images`
calibration images with the mask loss (`trtq.models.sam_calibration`), and also with the
reference code's self-KL loss, whose gradient is zero in exact arithmetic. Then searches each
layer twice, with the Hessian metric and with output MSE, and counts the quantizers whose
chosen scale differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _provenance import provenance, save_results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="calib")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--bits", type=int, default=6)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    block = provenance()

    import torch

    from trtq.calib.calibrate import quantize
    from trtq.calib.capture import Recorder
    from trtq.calib.modules import quantizers
    from trtq.calib.search import search_layer
    from trtq.data.calibration import calibration_samples
    from trtq.models import adapter_for, load_model
    from trtq.models.sam_calibration import SamTask, self_kl_loss
    from trtq.recipes import SearchOptions, get_recipe

    samples = calibration_samples(args.data, args.split, args.images)
    options = SearchOptions(candidates=args.candidates, rows=args.rows)
    model = load_model(args.model)
    quantize(model, get_recipe(f"w{args.bits}a{args.bits}-hessian",
                               adapter_for(args.model).rules))
    owners = sorted({n.rsplit(".", 1)[0] for n, q in quantizers(model) if q.spec is not None})
    start = time.perf_counter()
    records = Recorder(model, owners, args.rows)
    records.run(SamTask(samples))
    kl = Recorder(model, owners, args.rows)
    kl.run(SamTask(samples, self_kl_loss))
    record_s = time.perf_counter() - start
    modules = dict(model.named_modules())
    layers, differ, total = [], 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for name in owners:
            rec = records.records[name]
            _, _, g = rec.tensors()
            _, _, g_kl = kl.records[name].tensors()
            h = search_layer(name, modules[name], rec, options, metric="hessian")
            m = search_layer(name, modules[name], rec, options, metric="output_mse")
            changed = {}
            for qname, chosen in h["quantizers"].items():
                key = "scale" if "scale" in chosen else "scale_mean"
                a, b = chosen[key], m["quantizers"][qname][key]
                total += 1
                if abs(a - b) > 1e-6 * max(abs(a), abs(b)):
                    differ += 1
                    changed[qname] = {"hessian": a, "output_mse": b}
            layers.append({"layer": name, "grad_mean_abs": float(g.abs().mean()),
                           "grad_zero_fraction": float((g == 0).double().mean()),
                           "self_kl_grad_mean_abs": float(g_kl.abs().mean()),
                           "changed": changed})
    search_s = time.perf_counter() - start
    ratios = [la["self_kl_grad_mean_abs"] / la["grad_mean_abs"] for la in layers
              if la["grad_mean_abs"] > 0]
    summary = {"layers": len(layers), "quantizers_searched": total, "scales_differ": differ,
               "layers_with_zero_gradient": sum(la["grad_mean_abs"] == 0 for la in layers),
               "grad_mean_abs_median": statistics.median(la["grad_mean_abs"] for la in layers),
               "grad_zero_fraction_max": max(la["grad_zero_fraction"] for la in layers),
               "self_kl_over_mask_grad_median": statistics.median(ratios),
               "self_kl_over_mask_grad_max": max(ratios),
               "record_seconds": record_s, "search_seconds": search_s}
    save_results(args.out, {"config": vars(args), "summary": summary, "layers": layers}, block)
    for key, value in summary.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
