"""w8a8-ptq4sam exports: LogQuant as standard ops and as trtq::LogQuant nodes, identical to the
PyTorch quantizers inside the real model, lint-clean, and parsed/built by TensorRT-RTX."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from trtq.calib.modules import quantizers
from trtq.calib.state_dir import load_calibrated
from trtq.export import logquant_ort
from trtq.models import load_model
from trtq.models.sam_adapter import SAM, sam_parts


def test_sidecars_and_lint(tiny_ptq4sam_qdq):
    for form, folder in tiny_ptq4sam_qdq.items():
        encoder = json.loads((folder / "encoder.onnx.json").read_text())
        decoder = json.loads((folder / "decoder.onnx.json").read_text())
        assert encoder["logquant_form"] == form and len(encoder["logquant"]) == 11
        assert encoder["logquant_nodes"] == 4 and decoder["logquant_nodes"] == 7
        assert encoder["lint_errors"] == decoder["lint_errors"] == []
        assert decoder["parity_max_rel_diff"] < 1e-3
        assert not any(name.endswith("av_matmul") and "encoder" in name
                       for name in encoder["quantized_layers"])  # log2 inputs are not INT8
        model = onnx.load(str(folder / "decoder.onnx"))
        custom = [n for n in model.graph.node if n.domain == "trtq"]
        assert len(custom) == (7 if form == "plugin" else 0)
        if form == "plugin":
            assert {(o.domain, o.version) for o in model.opset_import} >= {("trtq", 1)}


def _sites(model: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(quantizer name, softmax output, quantized attn·v input) of each LogQuant site."""
    sites = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and "/av_matmul/" in node.name:
            prefix = node.name.rsplit("/", 1)[0]
            name = ".".join(p for p in prefix.split("/") if p) + ".input_quantizer"
            softmax = prefix.rsplit("/", 1)[0] + "/softmax/Softmax_output_0"
            sites.append((name, softmax, node.input[0]))
    return sites


def _run_with_extra_outputs(path, names, feeds):
    model = onnx.load(str(path))
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    options = ort.SessionOptions()
    source = (logquant_ort.prepare(model, options) if logquant_ort.has_logquant_nodes(model)
              else model.SerializeToString())
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, feeds), strict=True))


@pytest.mark.parametrize("model_name, fixture", [
    ("tiny_litemedsam-bimodal", "tiny_ptq4sam"),
    ("litemedsam", "litemedsam_ptq4sam"),
])
def test_logquant_sites_match_pytorch_bit_for_bit(request, tmp_path, model_name, fixture):
    """At every LogQuant site of the exported decoder (both forms), onnxruntime's output equals
    the PyTorch quantizer applied to onnxruntime's input there: real weights, real calibrated
    (τ, scale), real softmax tensors."""
    from trtq.export.onnx_qdq import export_mode, export_qdq_part

    model = load_model(model_name)
    load_calibrated(model, model_name, request.getfixturevalue(fixture), "tensorrt")
    named = dict(quantizers(model))
    decoder = next(p for p in sam_parts(model) if p.name == "decoder")
    feeds = decoder.parity_feeds[0]
    for form in ("onnx", "plugin"):
        path = tmp_path / f"decoder_{form}.onnx"
        with export_mode(model, form):
            export_qdq_part(decoder, path, 17, "tensorrt", logquant=form)
        sites = _sites(onnx.load(str(path)))
        assert len(sites) == 7
        got = _run_with_extra_outputs(path, [s for site in sites for s in site[1:]], feeds)
        for name, x, y in sites:
            with torch.no_grad():
                want = named[name](torch.from_numpy(got[x])).numpy()
            assert np.array_equal(got[y], want), f"{form}: {name} differs"
            assert np.count_nonzero(want) > 0.5 * want.size  # real probabilities, not zeros


def test_simulation_only_ptq4sam_recipes_are_not_exported(tiny_ptq4sam):
    from trtq.errors import ArtifactError
    from trtq.export.onnx_qdq import check_exportable
    from trtq.recipes import get_recipe

    check_exportable(get_recipe("w8a8-ptq4sam", SAM.rules))
    with pytest.raises(ArtifactError, match="simulation-only"):
        check_exportable(get_recipe("w6a6-ptq4sam", SAM.rules))


def test_plugin_graph_without_extensions_says_what_to_do(tiny_ptq4sam_qdq, monkeypatch):
    import sys

    from trtq.errors import BackendError
    from trtq.export.onnxruntime_session import create_session

    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)
    monkeypatch.setattr(logquant_ort, "_REGISTERED", False)
    with pytest.raises(BackendError, match="onnxruntime-extensions.*--logquant onnx"):
        create_session(tiny_ptq4sam_qdq["plugin"] / "decoder.onnx")
