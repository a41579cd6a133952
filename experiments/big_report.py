"""BIG's verdict for every decoder attention of a model, on the first calibration image:
KDE peaks, K range, and symmetric K quantization RMSE before and after sign flip and centring
(nothing is calibrated; the model is folded in memory only).

    python experiments/big_report.py --model litemedsam-bimodal --data ../shared/datasets/busi \\
        --split calib --bits 8 4 --out experiments/results/big-verdicts-bimodal.json
"""

from __future__ import annotations

import argparse
import sys

from _provenance import provenance, save_results


def big_verdicts(model_name: str, data: str, split: str, bits: int) -> dict:
    """BIG's report (per-layer verdicts, K RMSE, decoder change) for one bit width."""
    from trtq.calib.big import apply_big
    from trtq.data.calibration import calibration_samples
    from trtq.models import adapter_for, load_model
    from trtq.models.sam_calibration import run_sample
    from trtq.recipes import BigOptions

    sample = calibration_samples(data, split, 1)[0]
    model = load_model(model_name)
    big = BigOptions(layers=adapter_for(model_name).rules.big_layers)  # the presets' BIG
    return apply_big(model, big, lambda m: run_sample(m, sample), bits=bits)


def table(model_name: str, split: str, bits: int, report: dict) -> str:
    lines = [f"{model_name}, first {split} image, INT{bits} symmetric per-tensor K (min/max); "
             f"decoder outputs changed by {report['decoder_max_abs_change']:.1e} by the fold",
             "", "| attention | peaks (K value, share of density) | bimodal | K range | "
             f"INT{bits} K RMSE: before / flip / flip+centre |", "|---|---|---|---|---|"]
    for r in report["layers"]:
        peaks = ", ".join(f"{p:+.2f} ({h:.3f})" for p, h in zip(r["peaks"], r["peak_heights"],
                                                              strict=True))
        name = r["layer"].replace("mask_decoder.transformer.", "")
        lo, hi = r["k_range_before"]
        rmse = (f"{r['k_rmse_before']:.4f} / {r['k_rmse_after_flip']:.4f} / "
                f"{r['k_rmse_after']:.4f}" if r["folded"] else f"{r['k_rmse_before']:.4f} / — / —")
        lines.append(f"| {name} | {peaks} | {'yes' if r['bimodal'] else 'no'} | "
                     f"[{lo:.2f}, {hi:.2f}] | {rmse} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="calib")
    p.add_argument("--bits", type=int, nargs="+", default=[8])
    p.add_argument("--out", help="results JSON (the reports per bit width, with provenance)")
    args = p.parse_args(argv)
    block = provenance()
    reports = {}
    for bits in args.bits:
        reports[str(bits)] = big_verdicts(args.model, args.data, args.split, bits)
        print(table(args.model, args.split, bits, reports[str(bits)]), end="\n\n")
    if args.out:
        save_results(args.out, {"config": vars(args), "reports": reports}, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
