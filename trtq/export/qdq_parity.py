"""Teacher-forced parity of a Q/DQ export: the graph cut at every quantizer, fed PyTorch's codes.

A quantized network amplifies float rounding. Where the runtime rounds one value the other way
(its convolutions sum in another order), one code flips, the next layer's inputs change by a
step, more codes flip, and so on: on LiteMedSAM's W8A8 encoder a relative perturbation of 1e-6
of the input image changes the box masks by 2.5 % IoU. The free-running difference between the
exported graph and the fake-quantized model therefore cannot tell a correct export from a
wrong one (a per-channel scale on the wrong axis, a missing Q/DQ pair, a wrong bias fold).

This check removes that amplification. Every activation quantizer of the exported graph is
cut: its output (QuantizeLinear's codes, or a LogQuant site's decoded levels) becomes a graph
input fed with what the PyTorch quantizer produced on the same example, and its float input
becomes a graph output. Between two cuts both sides then compute from identical inputs, so they
differ by float rounding only, far below one quantization step, unless the graph itself
differs. Per cut the difference of the quantizer inputs is measured in steps of that
quantizer; the graph outputs relative to their largest magnitude.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx

from trtq.calib.logquant_onnx import DOMAIN as LOGQUANT_DOMAIN
from trtq.errors import ArtifactError
from trtq.export.onnx_graph import Graph

MAX_STEP_ERROR = 0.05  # of one quantization step, at every cut
MAX_MISMATCH = 1e-3  # fraction of a quantizer's outputs on another code than PyTorch's
MAX_OUTPUT_ERROR = 1e-3  # relative to max(1, max |output|)


@dataclass
class Site:
    """One quantization point of the graph."""

    quantizer: str  # the PyTorch quantizer's name, relative to the exported module
    probe: str  # tensor: the quantizer's float input
    forced: str  # tensor: its output, turned into a graph input
    kind: str  # "uniform" (integer codes) or "log2" (decoded levels)
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    # standard ops compute the site's own output for comparison; a trtq::LogQuant plugin node
    # is removed (onnxruntime needs a custom op for it; its arithmetic has tests of its own)
    runtime: bool = True


def _owner(node: onnx.NodeProto) -> str:
    """The module that wrote `node`, from the exporter's scope path:
    `/layers.0/blocks.0/conv1/input_quantizer/QuantizeLinear_2` →
    `layers.0.blocks.0.conv1.input_quantizer`. A called container (nn.Sequential) has a scope
    of its own before its children's (`/neck/neck.0/...`): it is dropped."""
    parts = [p for p in node.name.split("/")[:-1] if p]
    kept = [p for i, p in enumerate(parts)
            if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    return ".".join(kept)


def _decomposed_site(g: Graph, log_node, bits: int) -> tuple[str, str]:
    """(x, output) of a LogQuant decomposition around its Log node: x feeds the Max before the
    Div before the Log; the output is the Gather from the 2^bits-entry level table."""
    div = g.producer[log_node.input[0]]
    x = g.producer[div.input[0]].input[0]
    seen, frontier = set(), [log_node]
    while frontier:
        node = frontier.pop()
        for out in node.output:
            for user in g.consumers.get(out, []):
                if id(user) in seen:
                    continue
                seen.add(id(user))
                table = g.constant(user.input[0]) if user.op_type == "Gather" else None
                if table is not None and table.size == 2 ** bits:
                    return x, user.output[0]
                frontier.append(user)
    raise ArtifactError(f"{log_node.name}: no level-table Gather after this Log; the LogQuant "
                        "decomposition is not the one trtq writes")


def find_sites(model: onnx.ModelProto, log2_bits: dict[str, int],
               base_dir: str | None = None) -> list[Site]:
    """Activation QuantizeLinear nodes and LogQuant sites (plugin node or decomposition) in
    graph order; `log2_bits` gives each log2 quantizer's bit width."""
    g = Graph(model, base_dir)
    sites = []
    for node in model.graph.node:
        owner = _owner(node)
        if node.op_type == "QuantizeLinear" and g.constant(node.input[0]) is None:
            zero = g.constant(node.input[2]) if len(node.input) > 2 else None
            dtype = np.dtype(np.uint8) if zero is not None and zero.dtype == np.uint8 \
                else np.dtype(np.int8)
            sites.append(Site(owner, node.input[0], node.output[0], "uniform", dtype))
        elif node.domain == LOGQUANT_DOMAIN:
            sites.append(Site(owner, node.input[0], node.output[0], "log2", runtime=False))
        elif node.op_type == "Log" and owner in log2_bits:
            x, out = _decomposed_site(g, node, log2_bits[owner])
            sites.append(Site(owner, x, out, "log2"))
    return sites


RUNTIME = "__runtime"  # suffix of a site's own output, kept for comparison


def cut_model(model: onnx.ModelProto, sites: list[Site], shapes: dict[str, tuple]):
    """A copy of `model` in which every site's consumers read a graph input of the site output's
    name; the site still computes its own output (renamed with RUNTIME), and it and the site's
    float input are graph outputs."""
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    runtime = {s.forced for s in sites if s.runtime}
    dropped = {s.forced for s in sites if not s.runtime}
    keep = [n for n in cut.graph.node if not set(n.output) & dropped]
    del cut.graph.node[:]
    cut.graph.node.extend(keep)
    for node in cut.graph.node:
        for i, name in enumerate(node.output):
            if name in runtime:
                node.output[i] = name + RUNTIME
    value = onnx.helper.make_tensor_value_info
    for s in sites:
        elem = onnx.helper.np_dtype_to_tensor_dtype(s.dtype)
        cut.graph.input.append(value(s.forced, elem, shapes[s.forced]))
        cut.graph.output.append(value(s.probe, onnx.TensorProto.FLOAT, None))
        if s.runtime:
            cut.graph.output.append(value(s.forced + RUNTIME, elem, None))
    if dropped:
        imports = [o for o in cut.opset_import if o.domain != LOGQUANT_DOMAIN]
        del cut.opset_import[:]
        cut.opset_import.extend(imports)
    return cut


class _Recorder:
    """Forward hooks on the enabled activation quantizers of a module: (input, output) per call,
    in call order, by name relative to the module."""

    def __init__(self, module) -> None:
        from trtq.calib.modules import quantizers

        self.calls: dict[str, list] = defaultdict(list)
        self.quantizers = {name: q for name, q in quantizers(module)
                           if q.enabled and not name.endswith("weight_quantizer")}
        self.handles = [q.register_forward_hook(self._hook(name))
                        for name, q in self.quantizers.items()]

    def _hook(self, name):
        def hook(_module, inputs, output):
            self.calls[name].append((inputs[0].detach(), output.detach()))
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _qparams(quantizer) -> tuple[np.float32, int]:
    """(scale, zero point) a uniform site's QuantizeLinear uses: a shifted quantizer is
    exported as Sub(x, c) and a symmetric Q/DQ, so its zero point there is 0."""
    zero = 0 if quantizer.is_shifted else int(quantizer.zero_point)
    return np.float32(float(quantizer.scale)), zero


def _site_values(site: Site, quantizer, x, y) -> tuple[np.ndarray, np.ndarray]:
    """(expected probe, forced value) of one site from the PyTorch quantizer's call."""
    x, y = x.float().numpy(), y.float().numpy()
    if site.kind == "log2":
        return x, y.astype(np.float32)
    scale, zero = _qparams(quantizer)
    if quantizer.is_shifted:  # exported as Sub(x, c) → Q → DQ: the probe is x − c
        x = x - np.float32(quantizer.shift())
    codes = np.round(y / scale) + zero
    return x, codes.astype(site.dtype)


@dataclass
class ForcedParity:
    """The worst figures over every cut. A quantizer input differs by float rounding only
    (≪ one step: `MAX_STEP_ERROR`); the graph's own quantization of that input gives PyTorch's
    codes except where that rounding lands on the other side of a rounding threshold. Such a
    tie flip is told apart by re-quantizing the graph's own input with PyTorch's parameters:
    the graph's code must equal that. Codes off for any other reason may reach `MAX_MISMATCH`
    of a site's values (by at most one code); tie flips are counted, not refused: how many
    values sit within float rounding of a threshold depends on the data (a float attn·v over
    4096 tokens of log2 levels puts many there), not on the export."""

    cuts: int
    max_step_error: float  # |Δ quantizer input| in steps of that quantizer (log2: of its scale)
    worst_site: str | None
    code_mismatch: float  # fraction of a site's outputs that differ from PyTorch's, tie flips
    worst_code_site: str | None  # excepted
    max_code_diff: float  # uniform sites: largest |Δ code|
    output_max_rel_diff: float
    tie_flips: float = 0.0  # largest fraction of a site's codes that differ from PyTorch's
    # only because the graph's input lay on the other side of a rounding threshold (the
    # graph's code is the exact quantization of its own input); bounded by MAX_STEP_ERROR

    def problems(self) -> list[str]:
        found = []
        if self.max_step_error > MAX_STEP_ERROR:
            found.append(f"the input of {self.worst_site} differs by {self.max_step_error:.3g} "
                         f"quantization steps (bound {MAX_STEP_ERROR})")
        if self.code_mismatch > MAX_MISMATCH or self.max_code_diff > 1:
            found.append(f"{self.worst_code_site} quantizes {self.code_mismatch:.2%} of its "
                         f"values to other codes than PyTorch (by up to {self.max_code_diff:g})")
        if self.output_max_rel_diff > MAX_OUTPUT_ERROR:
            found.append(f"the outputs differ by {self.output_max_rel_diff:.2e} (relative, "
                         f"bound {MAX_OUTPUT_ERROR:.0e})")
        return found

    def to_dict(self) -> dict:
        return {"cuts": self.cuts, "max_step_error": self.max_step_error,
                "code_mismatch": self.code_mismatch, "tie_flips": self.tie_flips,
                "max_code_diff": self.max_code_diff,
                "output_max_rel_diff": self.output_max_rel_diff}


def forced_parity(part, model: onnx.ModelProto, feeds: dict,
                  base_dir: str | None = None) -> ForcedParity:
    """Run `part.module` (fake-quantized PyTorch) and the cut `model` in onnxruntime on `feeds`,
    the cut graph fed PyTorch's quantizer outputs; see the module docstring. `base_dir`: the
    folder of a graph loaded without its external weights."""
    import onnxruntime as ort
    import torch

    recorder = _Recorder(part.module)
    try:
        with torch.inference_mode():
            expected = part.module(*(torch.from_numpy(feeds[n]) for n in part.inputs))
    finally:
        recorder.close()
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    log2 = {n: q.spec.bits for n, q in recorder.quantizers.items() if q.is_log2}
    sites = find_sites(model, log2, base_dir)
    _check_matching(sites, recorder)
    forced_feeds, probes, order = dict(feeds), {}, defaultdict(int)
    for site in sites:
        x, y = recorder.calls[site.quantizer][order[site.quantizer]]
        order[site.quantizer] += 1
        probes[site.probe], forced_feeds[site.forced] = _site_values(
            site, recorder.quantizers[site.quantizer], x, y)
    cut = cut_model(model, sites, {s.forced: forced_feeds[s.forced].shape for s in sites})
    session = _session(ort, cut, base_dir)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, forced_feeds), strict=True))
    steps, codes, ties = [(0.0, None)], [(0.0, 0.0, None)], [0.0]
    for site in sites:
        scale = float(recorder.quantizers[site.quantizer].scale)
        error = float(np.abs(got[site.probe] - probes[site.probe]).max(initial=0.0)) / scale
        steps.append((error if math.isfinite(error) else math.inf, site.quantizer))
        if not site.runtime:
            continue
        mine, theirs = got[site.forced + RUNTIME], forced_feeds[site.forced]
        differ = mine != theirs
        flips = np.zeros_like(differ)
        if site.kind != "log2":
            own = _requantize(got[site.probe], recorder.quantizers[site.quantizer], site.dtype)
            flips = differ & (mine == own)
            differ = differ & ~flips
        diff = 0.0 if site.kind == "log2" else float(
            np.abs(mine.astype(np.int32) - theirs.astype(np.int32)).max(initial=0))
        size = max(differ.size, 1)
        codes.append((float(differ.sum()) / size, diff, site.quantizer))
        ties.append(float(flips.sum()) / size)
    out_diff = max(float(np.abs(got[name] - ref.numpy()).max())
                   / max(1.0, float(np.abs(ref.numpy()).max()))
                   for name, ref in zip(part.outputs, expected, strict=True))
    worst, worst_site = max(steps, key=lambda t: t[0])
    mismatch, _, code_site = max(codes, key=lambda t: t[0])
    return ForcedParity(len(sites), worst, worst_site, mismatch, code_site,
                        max(c[1] for c in codes), out_diff, max(ties))


def _requantize(x: np.ndarray, quantizer, dtype: np.dtype) -> np.ndarray:
    """ONNX QuantizeLinear of `x` with the PyTorch quantizer's scale and zero point (x / scale,
    round half to even, saturate to `dtype`), the arithmetic both sides use."""
    scale, zero = _qparams(quantizer)
    info = np.iinfo(dtype)
    codes = np.round(x.astype(np.float32) / scale) + zero
    return np.clip(codes, info.min, info.max).astype(dtype)


def _session(ort, model: onnx.ModelProto, base_dir: str | None):
    """An onnxruntime session of an in-memory graph; one whose weights stay in an external data
    file is written (graph only) beside that file and opened from there."""
    from trtq.export.onnx_files import external_data_files

    if not external_data_files(model):
        return ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix=".parity-", suffix=".onnx", dir=base_dir)
    os.close(fd)
    try:
        onnx.save(model, path)
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    finally:
        os.unlink(path)


def _check_matching(sites: list[Site], recorder: _Recorder) -> None:
    """Every PyTorch activation quantizer call has its site in the graph, and back."""
    in_graph = defaultdict(int)
    for site in sites:
        in_graph[site.quantizer] += 1
    calls = {name: len(c) for name, c in recorder.calls.items()}
    missing = sorted(n for n, k in calls.items() if in_graph.get(n, 0) < k)
    extra = sorted(n for n, k in in_graph.items() if calls.get(n, 0) < k)
    if missing or extra:
        detail = (f"no quantization node for {missing[0]}" if missing
                  else f"a quantization node for {extra[0]} that the model does not run")
        raise ArtifactError(f"the exported graph does not match the fake-quantized model: "
                            f"{detail} ({len(missing)} missing, {len(extra)} extra); the export "
                            "is wrong")
