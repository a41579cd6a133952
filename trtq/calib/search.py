"""PTQ4ViT's alternating candidate search, scored by the Hessian-guided metric (ALGORITHMS.md §6).

For one layer with full-precision output O and quantized output Ô, a candidate is scored by

    hessian:     Σ (g ⊙ (O − Ô))²      g = ∂L/∂O, recorded by `trtq.calib.capture`
    output_mse:  Σ (O − Ô)²

(smaller is better; PTQ4ViT maximises the negative). The searched quantizers of a layer (weight
and input of a Linear/Conv, or the two operands of an attention matmul) are optimised in turn
for `rounds` rounds, the others held at their calibrated value (or float). Candidates:

* uniform: ranges of scale Δ_i = Δ0·(α + i(β − α)/n), Δ0 = max|x| / (2^(b−1) − 0.5), one Δ0
  per output channel for per-channel weights (each channel scored on its own outputs, which
  only it affects); asymmetric ranges shrink [lo, hi] by the same factors;
* twin_softmax: split 2^0 … 2^−19; twin_gelu: Δpos = Δ0·(…), tied to Δneg·2^j when asked.

Each searched quantizer starts from its candidate with the smallest plain quantization error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from trtq.calib import twin
from trtq.calib.capture import LayerRecord
from trtq.calib.observers import range_to_qparams
from trtq.calib.qdq import fake_quant
from trtq.calib.quantizer import TensorQuantizer
from trtq.recipes import SearchOptions

log = logging.getLogger("trtq.calib")


def factors(options: SearchOptions) -> torch.Tensor:
    n = options.candidates
    return options.alpha + torch.arange(n + 1, dtype=torch.float64) * \
        (options.beta - options.alpha) / n


def uniform_fake_quant(x: torch.Tensor, spec, lo: torch.Tensor, hi: torch.Tensor):
    scale, zero = range_to_qparams(lo, hi, spec)
    return fake_quant(x, scale, zero, spec.qmin, spec.qmax, None if scale.dim() == 0 else 0)


@dataclass
class Candidate:
    """A uniform range (lo, hi) or a twin quantizer's (scale, scale2)."""

    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None
    scale: float | None = None
    scale2: float | None = None

    def quantize(self, x: torch.Tensor, spec) -> torch.Tensor:
        if spec.kind in ("twin_softmax", "twin_gelu"):
            return twin.twin_fake_quant(x, spec.kind, spec.bits, self.scale, self.scale2)
        return uniform_fake_quant(x, spec, self.lo, self.hi)


def candidates(spec, data: torch.Tensor, options: SearchOptions) -> list[Candidate]:
    """The candidate list of one quantizer for `data` (a weight as (channels, …))."""
    f = factors(options).to(torch.float32)
    half = 2 ** (spec.bits - 1) - 0.5
    if spec.kind == "twin_softmax":
        return [Candidate(scale=s, scale2=twin.softmax_scale2(spec.bits))
                for s in twin.split_scales(spec.bits)]
    if spec.kind == "twin_gelu":
        neg = twin.gelu_scale2(spec.bits)
        top = max(float(data.max()), 1e-8) / half
        scales = [float(top * v) for v in f]
        if spec.twin_tie:
            scales = list(dict.fromkeys(twin.tie_to_power_of_two(s, neg) for s in scales))
        return [Candidate(scale=s, scale2=neg) for s in scales]
    f = f.to(data.device)
    if spec.axis is not None:
        flat = data.reshape(data.shape[0], -1)
        amax = flat.abs().amax(1).clamp_min(1e-12)
    else:
        amax = data.abs().max().clamp_min(1e-12)
    if spec.symmetric:
        # Δ = Δ0·f with Δ0 = amax / (2^(b−1) − 0.5); the range that gives it is Δ·qmax
        top = amax / half * spec.qmax
        return [Candidate(lo=-top * v, hi=top * v) for v in f]
    lo = torch.clamp(data.min(), max=0.0)
    hi = torch.clamp(data.max(), min=0.0)
    return [Candidate(lo=lo * v, hi=hi * v) for v in f]


def _fixed(q: TensorQuantizer, data: torch.Tensor) -> torch.Tensor:
    """`data` through a quantizer that is not searched (float if the recipe keeps it so)."""
    if q.spec is None or q.scale is None:
        return data
    enabled, q.enabled = q.enabled, True
    try:
        return q(data)
    finally:
        q.enabled = enabled


def gemm(x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    """Patches (rows, groups, k) times weights (out, k) → (rows, out)."""
    if groups == 1:
        return x[:, 0] @ w.T
    out = torch.einsum("rgk,gok->rgo", x, w.reshape(groups, -1, w.shape[1]))
    return out.reshape(x.shape[0], -1)


@dataclass
class Slot:
    """One quantizer of the layer: its data, candidates and current choice."""

    name: str
    q: TensorQuantizer
    data: torch.Tensor
    cands: list[Candidate] | None = None  # None: not searched
    choice: torch.Tensor | int | None = None  # per-channel: index per channel
    metric: str | None = None

    @property
    def per_channel(self) -> bool:
        return self.cands is not None and self.q.spec.axis is not None

    def value(self, index=None) -> torch.Tensor:
        if self.cands is None:
            return _fixed(self.q, self.data)
        index = self.choice if index is None else index
        return self.current(index).quantize(self.data, self.q.spec)

    def current(self, index) -> Candidate:
        if isinstance(index, torch.Tensor):  # per channel
            lo = torch.stack([c.lo for c in self.cands])
            hi = torch.stack([c.hi for c in self.cands])
            rows = torch.arange(lo.shape[1], device=lo.device)
            return Candidate(lo=lo[index, rows], hi=hi[index, rows])
        return self.cands[index]

    def initial(self) -> None:
        """The candidate with the smallest plain quantization error of the data itself."""
        errors = []
        for cand in self.cands:
            diff = (cand.quantize(self.data, self.q.spec) - self.data).pow(2)
            errors.append(diff.reshape(diff.shape[0], -1).sum(1) if self.per_channel
                          else diff.sum())
        self.choice = _argmin(errors, self.per_channel)


def _argmin(errors, per_channel: bool):
    """The candidate index with the smallest error (per channel: one index per channel; ties
    keep the earliest candidate)."""
    stacked = torch.stack(errors)
    return stacked.argmin(0) if per_channel else int(stacked.argmin())


def _search_slot(slot: Slot, output, reference: torch.Tensor, weight: torch.Tensor) -> None:
    """Pick `slot`'s candidate minimising Σ weight·(O − Ô)²; `output(value)` is the layer's
    output with `slot` quantized to `value` and the other operand held fixed."""
    errors = []
    for i in range(len(slot.cands)):
        diff = (reference - output(slot.value(i))).pow(2).mul_(weight)
        errors.append(diff.reshape(-1, diff.shape[-1]).sum(0) if slot.per_channel
                      else diff.sum())
    slot.choice = _argmin(errors, slot.per_channel)


def _store(slot: Slot) -> dict:
    """Write the chosen candidate into the quantizer; returns its summary for the report."""
    q, spec = slot.q, slot.q.spec
    cand = slot.current(slot.choice)
    if spec.kind in ("twin_softmax", "twin_gelu"):
        q.set_twin(cand.scale, cand.scale2)
        return {"scale": cand.scale, "scale2": cand.scale2, "candidate": slot.choice}
    q.set_range(cand.lo, cand.hi)
    if spec.axis is None and not spec.shifted:
        other = replace(spec, symmetric=not spec.symmetric)
        lo = torch.clamp(torch.maximum(cand.lo, slot.data.min()), max=0.0)
        hi = torch.clamp(torch.minimum(cand.hi, slot.data.max()), min=0.0)
        scale, zero = range_to_qparams(lo, hi, other)
        q.alt = {"scale": scale, "zero_point": zero}
    if slot.per_channel:
        return {"scale_mean": float(q.scale.mean()), "candidate_mean": float(
            slot.choice.double().mean())}
    return {"scale": float(q.scale), "zero_point": int(q.zero_point), "candidate": slot.choice}


def search_layer(name: str, module: nn.Module, record: LayerRecord, options: SearchOptions,
                 metric: str | None = None) -> dict:
    """Search the quantizers of one layer whose observer is a search observer, in place.
    `metric` overrides each quantizer's own ("hessian" or "output_mse"). Returns a report."""
    x, other, grad = record.tensors()
    x, grad = x.float(), grad.float()
    if record.kind == "matmul":
        slots = [Slot(f"{name}.input_quantizer", module.input_quantizer, x),
                 Slot(f"{name}.other_quantizer", module.other_quantizer, other.float())]

        def product(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            return torch.matmul(first, second)
    else:
        w = module.quant_weight().detach().float()
        slots = [Slot(f"{name}.input_quantizer", module.input_quantizer, x),
                 Slot(f"{name}.weight_quantizer", module.weight_quantizer,
                      w.reshape(w.shape[0], -1))]

        def product(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            return gemm(first, second, record.groups)
    reference = product(slots[0].data, slots[1].data)

    def output_with(slot: Slot):
        """Ô as a function of `slot`'s quantized value, the other operand quantized once."""
        if slot is slots[0]:
            held = slots[1].value()
            return lambda value: product(value, held)
        held = slots[0].value()
        return lambda value: product(held, value)

    no_gradient = not bool(grad.abs().max() > 0)
    for slot in slots:
        spec = slot.q.spec
        if spec is not None and spec.searched:
            slot.metric = metric or spec.observer
            if slot.metric == "hessian" and no_gradient:
                slot.metric = "output_mse"  # the output never reaches the loss
            slot.cands = candidates(spec, slot.data, options)
            slot.initial()
    # the weight is searched before the input (and operand A before B), as in PTQ4ViT
    searched = [s for s in (slots[::-1] if record.kind == "gemm" else slots)
                if s.cands is not None]
    weights = {"hessian": grad.pow(2), "output_mse": torch.ones((), device=grad.device)}
    rounds = options.rounds if len(searched) > 1 else 1
    for _ in range(rounds):
        for slot in searched:
            _search_slot(slot, output_with(slot), reference, weights[slot.metric])
    err = float((reference - product(slots[0].value(), slots[1].value())).pow(2).mean())
    return {"layer": name, "kind": record.kind, "rows": int(reference.reshape(
                -1, reference.shape[-1]).shape[0]),
            "grad_mean_abs": float(grad.abs().mean()),
            "grad_zero_fraction": float((grad == 0).double().mean()),
            "output_rms": float(reference.pow(2).mean().sqrt()),
            "output_mse": err, "no_gradient": no_gradient,
            "quantizers": {s.name: {"metric": s.metric, **_store(s)} for s in searched}}
