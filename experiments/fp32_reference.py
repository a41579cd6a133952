"""FP32 LiteMedSAM reference figures: box-prompted mIoU in PyTorch and onnxruntime, and the
onnxruntime CPU latency of the exported encoder and decoder.

    python experiments/fp32_reference.py --datasets ../shared/datasets \\
        --out experiments/results/fp32-litemedsam-cpu.json [--work DIR]

Everything goes through the trtq CLI, as a user would run it (each command is recorded under
"steps"): `trtq export`; per dataset `trtq eval` in PyTorch and in onnxruntime with the PyTorch
run as the reference (mask agreement); `trtq bench` on the encoder and on the decoder with 1 and
4 boxes (2 threads, 5 warm-ups, 30 timed runs) and on the encoder with one thread. Two figures
have no CLI flag and are measured in this process: the PyTorch encoder latency (median of 10
after 2 warm-ups, 2 threads) and the PyTorch mIoU with unrounded boxes (MedSAM's own inference
truncates the scaled boxes to integers; trtq follows it by default).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from _steps import Steps, read_keys, run_and_save

# (name, dataset folder, evaluation split)
SPLITS = (("busi", "busi", "val"), ("tiny_coco", "tiny_coco", "val2017"))
BENCH = {  # name: (model part, extra trtq bench flags)
    "encoder": ("encoder", ["--threads", "2", "--warmup", "5", "--iterations", "30"]),
    "decoder_1_box": ("decoder", ["--threads", "2", "--warmup", "5", "--iterations", "30",
                                  "--shape", "boxes:1x4"]),
    "decoder_4_boxes": ("decoder", ["--threads", "2", "--warmup", "5", "--iterations", "30",
                                    "--shape", "boxes:4x4"]),
    "encoder_1_thread": ("encoder", ["--threads", "1", "--warmup", "2", "--iterations", "10"]),
}
EVAL_KEYS = ("miou", "instances", "images", "agreement_miou")
BENCH_KEYS = ("latency_ms", "fps", "peak_rss_mib", "rss_delta_mib", "threads", "warmup",
              "iterations", "input_shapes", "onnxruntime_version", "device")


def unrounded_miou(root: str, split: str, limit: int | None) -> dict:
    """PyTorch mIoU with the boxes scaled to the 256 frame but not truncated."""
    import dataclasses

    from trtq.data import CocoBoxDataset
    from trtq.eval.backends import TorchBackend
    from trtq.eval.sam_eval import evaluate
    from trtq.models import load_model

    backend = TorchBackend(load_model("litemedsam"))
    backend.preprocess = dataclasses.replace(backend.preprocess, box_rounding="none")
    return evaluate(backend, CocoBoxDataset(root, split, limit=limit)).summary()


def torch_encoder_latency(iterations: int = 10, warmup: int = 2, threads: int = 2) -> dict:
    import torch

    from trtq.bench.latency import summarize, time_calls
    from trtq.models import load_model

    torch.set_num_threads(threads)
    model = load_model("litemedsam").eval()
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        samples = time_calls(lambda: model.image_encoder(image), iterations, warmup)
    return {"latency_ms": summarize(samples), "threads": threads, "warmup": warmup,
            "iterations": iterations, "torch_version": torch.__version__}


def accuracy(steps: Steps, datasets: Path, work: Path, onnx: Path,
             limit: int | None) -> dict:
    out = {}
    extra = ["--limit", str(limit)] if limit else []
    for name, folder, split in SPLITS:
        root = str(datasets / folder)
        torch_json, ort_json = work / f"{name}-torch.json", work / f"{name}-ort.json"
        steps.trtq("eval", "--data", root, "--split", split, *extra, "--out",
                   str(torch_json), "--force")
        steps.trtq("eval", "--data", root, "--split", split, "--backend", "onnxruntime",
                   "--onnx-dir", str(onnx), "--threads", "2", "--reference", str(torch_json),
                   *extra, "--out", str(ort_json), "--force")
        pt, ort = read_keys(torch_json, EVAL_KEYS), read_keys(ort_json, EVAL_KEYS)
        unrounded = unrounded_miou(root, split, limit)
        out[f"{name}/{split}"] = {
            "instances": pt["instances"], "images": pt["images"],
            "miou_torch": pt["miou"], "miou_onnxruntime": ort["miou"],
            "agreement_onnxruntime_vs_torch": ort["agreement_miou"],
            "miou_torch_unrounded_boxes": unrounded["miou"]}
        print(f"{name}/{split}: {out[f'{name}/{split}']}", flush=True)
    return out


def latency(steps: Steps, work: Path, onnx: Path) -> dict:
    out = {}
    for name, (part, flags) in BENCH.items():
        path = work / f"bench-{name}.json"
        steps.trtq("bench", "--onnx", str(onnx / f"{part}.onnx"), *flags, "--out", str(path),
                   "--force")
        # The machine may be shared: the load right after each run says how busy it was.
        out[name] = read_keys(path, BENCH_KEYS) | {"load_average_after": list(os.getloadavg())}
    return out


def measure(args, work: Path, steps: Steps) -> dict:
    onnx = work / "onnx"
    steps.trtq("export", "--out", str(onnx), "--force")
    # Latency first, while this process is small: Linux carries a parent's peak RSS into the
    # child it starts, so `trtq bench`'s peak RSS would otherwise report this process's model.
    timing = latency(steps, work, onnx)
    results = {"accuracy": accuracy(steps, args.datasets, work, onnx, args.limit)}
    timing["encoder_pytorch"] = torch_encoder_latency() | {"load_average_after":
                                                             list(os.getloadavg())}
    return results | {"latency": timing}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", required=True, type=Path,
                    help="folder holding busi/ and tiny_coco/ (COCO format)")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--work", type=Path, help="folder for the ONNX and raw JSON (default: temp)")
    ap.add_argument("--limit", type=int, help="evaluate the first N images of each split only "
                    "(a smoke run; the published figures use the full splits)")
    args = ap.parse_args(argv)
    run_and_save(args, "fp32ref_", measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
