"""The `trtq` command line: one subcommand per pipeline stage, plus `run` (the whole pipeline).

Only argparse and the standard library are imported at start-up; each subcommand imports its
implementation (and torch, onnx, onnxruntime, TensorRT) when it runs, so `--help` is instant
and works with only the core dependencies installed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from trtq import __version__
from trtq.commands._dispatch import dispatch, sigterm_raises
from trtq.errors import one_line

DEFAULT_MODEL = "litemedsam"
MODEL_HELP = ("model name: litemedsam, mobile_sam, sam_vit_b, sam_vit_l, sam_vit_h, "
              "or a tiny_* test config (default: %(default)s); calibrate, export, inspect and "
              "classify also take a ViT/DeiT classifier or your own model as "
              "package.module:factory or path/to/file.py:factory (a function returning the "
              "nn.Module, or (module, preprocess))")

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), like trtq's own."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


POSITIVE, NON_NEGATIVE = _count(1), _count(0)
OBSERVERS = ("minmax", "avg_minmax", "percentile", "entropy", "mse")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    p.add_argument("--checkpoint", metavar="PATH",
                   help="weights file (.pth); LiteMedSAM's is fetched and verified if omitted")


def _force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="box-prompted mask mIoU on a COCO-format split",
                       description="Box-prompted mask evaluation against ground truth (mIoU), "
                       "optionally against a reference run (agreement), with PyTorch or "
                       "onnxruntime.")
    _model_args(p)
    p.add_argument("--data", required=True, metavar="DIR",
                   help="COCO dataset root (DIR/annotations/instances_SPLIT.json, DIR/SPLIT/)")
    p.add_argument("--split", required=True, help="split name, e.g. val or val2017")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--onnx-dir", metavar="D", help="folder from `trtq export` (onnxruntime)")
    p.add_argument("--calibrated", metavar="DIR",
                   help="torch backend: a `trtq calibrate` folder (fake-quantized model)")
    p.add_argument("--target", choices=("tensorrt", "onnxruntime"),
                   help="with --calibrated: simulate that target's activation format")
    p.add_argument("--reference", metavar="FILE.json",
                   help="an earlier eval result: report mask agreement with it")
    p.add_argument("--limit", type=POSITIVE, metavar="N", help="evaluate the first N images only")
    p.add_argument("--box-source", choices=("mask", "bbox"), default="mask",
                   help="box prompt: tight box of the GT mask (default) or the COCO bbox field")
    p.add_argument("--threads", type=POSITIVE,
                   help="onnxruntime intra-op threads (default: all)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="result JSON")
    _force_arg(p)


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="classifier top-1 accuracy / agreement on images",
                       description="Top-1/top-5 accuracy of a ViT/DeiT classifier on a folder "
                       "of class sub-folders, or top-1 agreement with a reference run on any "
                       "image folder; float or a calibrated (fake-quantized) model.")
    p.add_argument("--model", required=True,
                   help="vit_small_patch16_224, vit_base_patch16_224, deit_tiny_patch16_224, "
                   "deit_small_patch16_224, deit_base_patch16_224, "
                   "deit_base_distilled_patch16_224 (these need --checkpoint), or the test "
                   "configs vit_test, deit_distilled_test; or your own classifier as "
                   "package.module:factory or path/to/file.py:factory, returning (module, "
                   "preprocess)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="timm state dict (.pth/.bin; DeiT's {'model': ...} wrapper too)")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="DIR/<class>/<image> (labelled) or a flat folder of images")
    p.add_argument("--classes", metavar="FILE",
                   help="class folder names in the model's class order, one per line "
                   "(default: sorted folder names)")
    p.add_argument("--calibrated", metavar="DIR", help="a `trtq calibrate` folder")
    p.add_argument("--reference", metavar="FILE.json",
                   help="an earlier classify result: report top-1 agreement with it")
    p.add_argument("--limit", type=POSITIVE, metavar="N", help="the first N images only")
    p.add_argument("--batch-size", type=POSITIVE, default=8, metavar="N",
                   help="images per forward pass (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="result JSON")
    _force_arg(p)


def _recipe_args(p: argparse.ArgumentParser) -> None:
    """Options that adjust a preset recipe (calibrate, inspect --recipe)."""
    p.add_argument("--observer", choices=OBSERVERS,
                   help="activation range observer (default: percentile 99.99)")
    p.add_argument("--percentile", type=float, help="percentile for --observer percentile")
    p.add_argument("--target", choices=("tensorrt", "onnxruntime"),
                   help="tensorrt: symmetric int8 activations (default); onnxruntime: uint8")


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrate a model with a quantization recipe",
                       description="Post-training calibration in PyTorch: install quantizers "
                       "per the recipe, run calibration images (and their box prompts) through "
                       "encoder and decoder, and save the quantizer scales. Writes "
                       "DIR/quant_state.pt and its sidecar.")
    _model_args(p)
    p.add_argument("--recipe", default="w8a8",
                   help="fp16, w8a8 (TensorRT-deployable) or w{N}a{N} (simulation; e.g. w4a4)"
                   " (default: %(default)s)")
    p.add_argument("--calib-data", metavar="DIR",
                   help="a folder of images, or a COCO dataset root with --split; for your own "
                   "model a folder of .npz files (see --images)")
    p.add_argument("--split", help="COCO split to calibrate on (e.g. calib, train2017)")
    p.add_argument("--num-images", type=POSITIVE, default=32,
                   help="calibration images (default: %(default)s)")
    _recipe_args(p)
    p.add_argument("--allow-eval-split", action="store_true",
                   help="allow calibrating on a split named val*/test* (inflates results)")
    _user_model_data_args(p, "calibration data")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _force_arg(p)


def _user_model_data_args(p: argparse.ArgumentParser, what: str, npz: bool = False) -> None:
    """Inputs of your own model (--model path/to/file.py:factory): pictures or tensors."""
    p.add_argument("--images", metavar="DIR",
                   help=f"your own model's {what}: a folder of pictures, each run through the "
                   "factory's preprocess (or --calib-data DIR: .npz files, one forward call's "
                   "arguments each, keyed by forward's parameter names or arr_0, arr_1, ...)")
    if npz:
        p.add_argument("--calib-data", metavar="DIR",
                       help=f"your own model's {what}: a folder of .npz files (see --images)")


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="lint Q/DQ ONNX, print a recipe's quantizer table",
                       description="--onnx: TensorRT explicit-quantization lint and INT8 MAC "
                       "coverage of an ONNX graph (--predict: and how TensorRT will run it). "
                       "--recipe: the quantizer table the recipe "
                       "resolves to on --model.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnx", metavar="FILE", help="ONNX graph to lint")
    what.add_argument("--recipe", metavar="R", help="recipe whose quantizer table to print")
    p.add_argument("--predict", action="store_true",
                   help="with --onnx: predict TensorRT's per-layer precision, standalone Q/DQ "
                   "reformats and fused-MHA eligibility from its documented fusion rules")
    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    _recipe_args(p)
    p.add_argument("--out", metavar="FILE.json", help="also write the result as JSON")
    _force_arg(p)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export encoder and decoder ONNX",
                       description="Export the image encoder and the prompt+mask decoder as "
                       "FP32 ONNX (checked, compared with PyTorch in onnxruntime).")
    _model_args(p)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument("--calibrated", metavar="DIR",
                   help="a `trtq calibrate` folder: export INT8 Q/DQ ONNX instead of FP32")
    p.add_argument("--target", choices=("tensorrt", "onnxruntime"), default="tensorrt",
                   help="Q/DQ flavour: tensorrt (symmetric int8, TensorRT-legal; default) or "
                   "onnxruntime (uint8 activations, int8 weights; fast on CPU)")
    p.add_argument("--float-attention", action="store_true",
                   help="keep the attention matmuls in float (onnxruntime target)")
    p.add_argument("--logquant", choices=("auto", "onnx", "plugin"), default="auto",
                   help="how AGQ's log2 quantizers are written: plugin (one trtq::LogQuant node "
                   "for trtq's TensorRT plugin; onnxruntime runs it via onnxruntime-extensions), "
                   "onnx (standard ops every runtime parses), or auto (default: plugin when "
                   "the plugin library is built here, $TRTQ_LOGQUANT_PLUGIN or "
                   "~/.cache/trtq/plugins/liblogquant_trt.so; else onnx)")
    _user_model_data_args(p, "example inputs for tracing and the parity check (default: "
                          "synthetic pictures through the preprocess)", npz=True)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: DIR/encoder.onnx, DIR/decoder.onnx (+ .json sidecars); "
                   "a classifier or your own model: DIR/model.onnx (+ .json)")
    _force_arg(p)


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="build TensorRT engines from ONNX (INT8 or FP16)",
                       description="Build a TensorRT engine (TensorRT 8.5-11 on the target GPU, "
                       "or TensorRT-RTX ahead of time without a GPU) with a sidecar recording "
                       "the TensorRT version, device and flags. --print-trtexec prints the "
                       "equivalent trtexec command instead of building.")
    p.add_argument("--onnx", required=True, metavar="FILE|DIR",
                   help="an ONNX file, or a `trtq export` folder (builds encoder and decoder)")
    p.add_argument("--out", required=True, metavar="FILE.engine|DIR",
                   help="engine file, or a folder (DIR/<part>.<precision>.engine)")
    p.add_argument("--precision", choices=("int8", "fp16", "fp32"),
                   help="int8 for a Q/DQ export, fp16 for the FP32 export (default: int8 when "
                   "the ONNX has Q/DQ nodes, else fp16)")
    p.add_argument("--workspace", type=POSITIVE, metavar="MIB",
                   help="builder workspace limit in MiB (lower it on small Jetsons)")
    p.add_argument("--dla", type=NON_NEGATIVE, metavar="N",
                   help="build for DLA core N with GPU fallback (AGX Orin / Orin NX)")
    p.add_argument("--timing-cache", metavar="FILE",
                   help="timing cache to read and update (faster rebuilds)")
    p.add_argument("--plugins", nargs="+", metavar="LIB.so", help="plugin libraries to load")
    p.add_argument("--shapes", nargs="+", metavar="NAME:MIN:OPT:MAX",
                   help="profile of a dynamic input, e.g. boxes:1x4:1x4:16x4 (default 1..16)")
    p.add_argument("--strongly-typed", action="store_true",
                   help="strongly typed network on TensorRT 9.1-10.x (always on 11 and RTX)")
    p.add_argument("--print-trtexec", action="store_true",
                   help="print the equivalent trtexec command line and build nothing")
    p.add_argument("--trt-version", metavar="X.Y",
                   help="with --print-trtexec: the target release (8.5, 8.6, 10.3, 11.4 ...)")
    p.add_argument("--engine-info", action="store_true",
                   help="print layer precisions (engine inspector on a GPU; else the network's)")
    _force_arg(p)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency of ONNX (onnxruntime) or engines (TensorRT)",
                       description="Latency and throughput: an ONNX model in onnxruntime (CPU, "
                       "or the CUDA/TensorRT providers), or a TensorRT engine (CUDA events, "
                       "optional CUDA graph, or trtexec), with warm-up, median/p90/p95/p99, FPS "
                       "and memory; on a Jetson optionally power from tegrastats. --compare puts "
                       "earlier results side by side. Writes FILE.json and FILE.md (+ PNG plots "
                       "for --compare).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnx", metavar="FILE", help="ONNX model to time in onnxruntime")
    what.add_argument("--engine", metavar="FILE", help="TensorRT engine to time (needs a GPU)")
    what.add_argument("--compare", nargs="+", metavar="FILE.json",
                      help="earlier bench results to compare (first FP16, else FP32, is the "
                      "baseline unless --baseline)")
    p.add_argument("--iterations", type=POSITIVE, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=NON_NEGATIVE, default=5, help="warm-up runs (default 5)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="engine: keep timing until S seconds have passed")
    p.add_argument("--threads", type=POSITIVE,
                   help="onnxruntime intra-op threads (default: all)")
    p.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), default="cpu",
                   help="onnxruntime execution provider (default cpu)")
    p.add_argument("--shape", action="append", metavar="NAME:DIMS",
                   help="shape of a dynamic input, e.g. boxes:4x4 (repeatable; default 1)")
    p.add_argument("--cuda-graph", action="store_true", help="engine: replay as a CUDA graph")
    p.add_argument("--trtexec", action="store_true",
                   help="engine: time it with trtexec (--useCudaGraph --noDataTransfers "
                   "--separateProfileRun) instead of trtq's runner")
    p.add_argument("--tegrastats", action="store_true",
                   help="Jetson: sample tegrastats during the run (power, energy, RAM, GPU load)")
    p.add_argument("--interval", type=POSITIVE, default=100, metavar="MS",
                   help="tegrastats sampling interval (default 100 ms)")
    p.add_argument("--accuracy", nargs="+", metavar="EVAL.json",
                   help="--compare: `trtq eval`/`trtq classify` results, in the same order")
    p.add_argument("--labels", nargs="+", help="--compare: a label per result")
    p.add_argument("--baseline", metavar="LABEL", help="--compare: the baseline's label")
    p.add_argument("--allow-mixed-devices", action="store_true",
                   help="--compare: allow results from different devices (not comparable)")
    p.add_argument("--label", help="a label stored in the result (e.g. 'INT8 engine')")
    p.add_argument("--out", required=True, metavar="FILE.json", help="result JSON")
    _force_arg(p)


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="the whole pipeline on embedded defaults",
                       description="Export LiteMedSAM (or --model) to ONNX, check PyTorch vs "
                       "onnxruntime agreement on the bundled sample images, calibrate INT8 "
                       "(w8a8-ptq4sam) on half of them and compare it with FP32 on the other "
                       "half, evaluate mIoU on --data/--split when given, benchmark FP32 and INT8 "
                       "(onnxruntime CPU; TensorRT FP16/INT8 engines where TensorRT and a GPU "
                       "exist), and write report.json, report.md and report.png.")
    _model_args(p)
    p.add_argument("--images", metavar="DIR",
                   help="images for the PyTorch-vs-ONNX agreement check (default: bundled samples)")
    p.add_argument("--data", metavar="DIR", help="COCO dataset root for mIoU (optional)")
    p.add_argument("--split", default="val", help="split of --data (default: %(default)s)")
    p.add_argument("--limit", type=POSITIVE, metavar="N", help="evaluate the first N images only")
    p.add_argument("--recipe", default="w8a8-ptq4sam",
                   help="INT8 recipe (default: %(default)s; see `trtq inspect --recipe`)")
    p.add_argument("--no-int8", action="store_true", help="FP32 only: skip calibration and INT8")
    p.add_argument("--min-agreement", type=float, default=0.95, metavar="A",
                   help="autoquant the onnxruntime INT8: keep INT8 only in the layer groups "
                   "measured faster here, while the agreement with FP32 on the calibration "
                   "images stays >= A (default: %(default)s; 0: every group INT8)")
    p.add_argument("--iterations", type=POSITIVE, default=20, help="timed bench runs (default 20)")
    p.add_argument("--warmup", type=NON_NEGATIVE, default=3, help="warm-up bench runs (default 3)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: runs/<model>-<timestamp>)")
    _force_arg(p)


def _add_autoquant(sub) -> None:
    p = sub.add_parser("autoquant", help="latency-aware mixed precision: INT8 where it pays",
                       description="Per layer group, measure what quantizing it costs "
                       "(agreement with FP32 on held-out calibration images, the group alone "
                       "quantized) and what it saves (onnxruntime: per-node profiles of the "
                       "FP32 and INT8 exports on this machine; tensorrt: per-layer profiles "
                       "of the FP16 and INT8 engines from trtexec --exportProfile). Keep INT8 "
                       "where it is faster, most time saved first, while the agreement stays "
                       "at --min-agreement; verify the choice. Writes a calibration folder "
                       "(`trtq export --calibrated OUT`), OUT/autoquant.json and "
                       "OUT/recipe.json (`trtq calibrate --recipe OUT/recipe.json`).")
    _model_args(p)
    p.add_argument("--recipe", default="w8a8-ptq4sam",
                   help="deployable recipe to start from, a preset or a recipe .json "
                   "(default: %(default)s)")
    p.add_argument("--calib-data", required=True, metavar="DIR", help="COCO dataset root")
    p.add_argument("--split", required=True, help="calibration split, e.g. calib")
    p.add_argument("--num-images", type=POSITIVE, default=32,
                   help="calibration images: the first N of the split (default: %(default)s)")
    p.add_argument("--held-out", type=POSITIVE, default=16,
                   help="the next N images of the split measure agreement (default: "
                   "%(default)s)")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                   help="where the time is measured (default: %(default)s)")
    p.add_argument("--profile", nargs=2, action="append", metavar=("FP16.json", "INT8.json"),
                   help="tensorrt: trtexec --exportProfile files of one part's FP16 and INT8 "
                   "engines (file names containing encoder/decoder); repeat per part")
    p.add_argument("--profile-dir", metavar="DIR",
                   help="tensorrt: a `trtq deploy --out` folder (reads device/PART.fp16."
                   "profile.json and device/PART.int8.profile.json)")
    p.add_argument("--min-agreement", type=float, required=True, metavar="A",
                   help="mean mask IoU with FP32 on the held-out images to keep, e.g. 0.98")
    p.add_argument("--jobs", type=POSITIVE, default=2,
                   help="parallel processes for the per-group measurements (default: "
                   "%(default)s)")
    p.add_argument("--no-add-back", dest="add_back", action="store_false",
                   help="skip the measured add-back of the groups the summed costs left out "
                   "(it needs enough held-out images: with 4 it fitted their noise)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _force_arg(p)


def _add_deploy(sub) -> None:
    p = sub.add_parser(
        "deploy", help="push, build and benchmark on a Jetson over SSH; pull the report back",
        description="Detect the Jetson (module, L4T/JetPack, TensorRT, DLA, memory, disk), push "
        "the ONNX models, the LogQuant plugin sources and a runner, build the plugin and the "
        "engines there (trtq if installed, else trtexec), benchmark them with trtexec while "
        "tegrastats samples power, and pull logs, sidecars and the report into --out. Uses the "
        "system ssh and rsync; transfers resume and are checked by SHA-256.")
    p.add_argument("--host", required=True, help="user@jetson, or a Host from ~/.ssh/config")
    p.add_argument("--port", type=POSITIVE, help="SSH port (default: ssh's, usually 22)")
    p.add_argument("--key", metavar="FILE", help="private key file (ssh -i)")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh_config file to use (ssh -F)")
    p.add_argument("--ssh-option", action="append", metavar="KEY=VALUE",
                   help="extra ssh -o option, e.g. ProxyJump=gateway (repeatable)")
    p.add_argument("--onnx", action="append", required=True, metavar="PATH",
                   help="an .onnx file, a `trtq export` folder or a `trtq run` folder "
                   "(repeatable); Q/DQ models build as INT8, others as the FP16 baseline")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="local results folder (report.json, report.md, device/, engines/)")
    p.add_argument("--remote-dir", default="trtq-deploy", metavar="DIR",
                   help="folder on the device, relative to the login's home "
                   "(default: %(default)s)")
    p.add_argument("--iterations", type=POSITIVE, default=100,
                   help="trtexec --iterations (default: %(default)s)")
    p.add_argument("--duration", type=NON_NEGATIVE, default=10, metavar="S",
                   help="trtexec --duration in seconds (default: %(default)s)")
    p.add_argument("--dla", type=NON_NEGATIVE, metavar="CORE",
                   help="build for this DLA core with GPU fallback (AGX Orin, Orin NX)")
    p.add_argument("--workspace", type=POSITIVE, metavar="MIB", help="builder workspace, MiB")
    p.add_argument("--reserve-mib", type=NON_NEGATIVE, default=512,
                   help="device disk to leave free after the deploy (default: %(default)s)")
    p.add_argument("--bwlimit", type=POSITIVE, metavar="KIB_S",
                   help="cap transfers at this many KiB/s (rsync --bwlimit)")
    p.add_argument("--no-trtq", action="store_true",
                   help="build with trtexec even where trtq is installed on the device")
    p.add_argument("--dry-run", action="store_true",
                   help="print every command a deploy would run; only the read-only probe "
                   "connects (none with --jetpack)")
    p.add_argument("--jetpack", metavar="X.Y",
                   help="with --dry-run: plan for this JetPack without connecting")
    p.add_argument("--module", default="NVIDIA Jetson (module not probed)",
                   help="with --jetpack: the module name to plan for, e.g. 'Jetson Orin Nano'")
    _force_arg(p)


def _numbers(count: int, what: str, kind=float):
    return {"nargs": count, "type": kind, "metavar": tuple(what.split())}


def _add_quantize_onnx(sub) -> None:
    p = sub.add_parser(
        "quantize-onnx", help="quantize a float ONNX file (yours) to INT8 Q/DQ ONNX",
        description="Calibrate a float ONNX model in onnxruntime with trtq's observers and write "
        "Q/DQ ONNX: Q/DQ on the inputs of Conv/ConvTranspose/MatMul/Gemm by TensorRT's rules "
        "(per-channel symmetric weights, per-tensor activations, both operands of attention "
        "matmuls), LayerNorm/Softmax/GELU float unless --recipe says otherwise. Checked: the "
        "TensorRT lint, INT8 MAC coverage, parity with the float model; a sidecar OUT.onnx.json.")
    p.add_argument("--onnx", required=True, metavar="IN.onnx",
                   help="the float ONNX model (FP32; external data beside it is read)")
    p.add_argument("--calib-data", required=True, metavar="DIR",
                   help="calibration inputs: a folder of images (one NCHW input), or of .npz "
                   "files with one array per graph input, keyed by input name")
    p.add_argument("--num-images", type=POSITIVE, default=32,
                   help="calibration samples, the first N by file name (default: %(default)s)")
    p.add_argument("--input-size", **_numbers(2, "H W", POSITIVE),
                   help="image input size (default: the input's static H and W)")
    p.add_argument("--resize", choices=("stretch", "letterbox"), default="stretch",
                   help="images: stretch to H×W, or letterbox (longest side, centred zero "
                   "padding) (default: %(default)s)")
    p.add_argument("--mean", **_numbers(3, "R G B"), default=(0.0, 0.0, 0.0),
                   help="images: per-channel mean on [0, 1] pixels (ImageNet: 0.485 0.456 "
                   "0.406; default 0 0 0)")
    p.add_argument("--std", **_numbers(3, "R G B"), default=(1.0, 1.0, 1.0),
                   help="images: per-channel std on [0, 1] pixels (ImageNet: 0.229 0.224 "
                   "0.225; default 1 1 1)")
    p.add_argument("--recipe", default="w8a8",
                   help="a uniform preset (w8a8, w{N}a{N}) or a recipe .json file whose rules "
                   "match the quantizer names of the ONNX nodes (see `trtq quantize-onnx` in "
                   "docs/cli.md) (default: %(default)s)")
    p.add_argument("--observer", choices=OBSERVERS,
                   help="activation range observer (default: the recipe's, percentile 99.99)")
    p.add_argument("--percentile", type=float, help="percentile for --observer percentile")
    p.add_argument("--target", choices=("tensorrt", "onnxruntime"), default="tensorrt",
                   help="tensorrt (symmetric INT8, TensorRT-legal; default) or onnxruntime "
                   "(uint8 activations, integer weights, convolutions float; fast on CPU)")
    p.add_argument("--out", required=True, metavar="OUT.onnx", help="the quantized model")
    _force_arg(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trtq",
        description="Quantize vision transformers post-training and deploy them with TensorRT.")
    parser.add_argument("--version", action="version", version=f"trtq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="warnings only, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_calibrate(sub)
    _add_eval(sub)
    _add_classify(sub)
    _add_export(sub)
    _add_build(sub)
    _add_inspect(sub)
    _add_bench(sub)
    _add_run(sub)
    _add_autoquant(sub)
    _add_deploy(sub)
    _add_quantize_onnx(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it is replaced under test capture)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("trtq: %(message)s"))
    root = logging.getLogger("trtq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    args.progress = not args.quiet and sys.stderr.isatty()
    with sigterm_raises():
        return dispatch(args)


if __name__ == "__main__":
    raise SystemExit(main())
