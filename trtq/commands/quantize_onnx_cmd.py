"""`trtq quantize-onnx`: a user's float ONNX file → calibrated INT8 Q/DQ ONNX."""

from __future__ import annotations


def run(args) -> int:
    from trtq.onnx_ptq.feeds import ImageOptions
    from trtq.onnx_ptq.quantize import OnnxQuantConfig, quantize_onnx

    cfg = OnnxQuantConfig(args.onnx, args.calib_data, args.out, recipe=args.recipe,
                          target=args.target, num_images=args.num_images, force=args.force,
                          observer=args.observer, percentile=args.percentile)
    images = ImageOptions(size=tuple(args.input_size) if args.input_size else None,
                          mean=tuple(args.mean), std=tuple(args.std), resize=args.resize)
    record = quantize_onnx(cfg, images, show_progress=args.progress)
    lint = record["lint_errors"]
    checked = "passed" if lint == [] else "not applicable (onnxruntime target)"
    print(f"{args.out}: {record['activation_quantizers']} activation and "
          f"{record['weight_quantizers']} weight quantizers on {record['calibration']['samples']}"
          f" samples; INT8 MAC coverage {record['int8_mac_coverage']:.1%}; TensorRT lint "
          f"{checked}; max rel. diff vs the float model {record['max_rel_diff_vs_float']:.2e}")
    return 0
