"""`trtq export`: FP32 encoder/decoder ONNX with sidecars."""

from __future__ import annotations

import logging

from trtq.errors import TrtqError

log = logging.getLogger("trtq.export")


def run(args) -> int:
    from trtq.export.onnx_fp32 import ExportSpec, export_fp32
    from trtq.models import checkpoint_provenance, load_model

    if args.opset < 17:
        raise TrtqError(f"--opset {args.opset} is too old: LayerNormalization needs opset >= 17")
    record = checkpoint_provenance(args.model, args.checkpoint)
    model = load_model(args.model, record["checkpoint"])
    spec = ExportSpec(args.model, record["checkpoint_sha256"], args.opset)
    result = export_fp32(model, spec, args.out, force=args.force)
    print(f"encoder: {result['encoder']} (max rel. diff vs PyTorch {result['encoder_parity']:.1e})")
    print(f"decoder: {result['decoder']} (max rel. diff vs PyTorch {result['decoder_parity']:.1e})")
    return 0
