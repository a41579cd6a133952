"""Optimization-profile shapes for dynamic inputs (the decoder's number of boxes).

One resolution serves the builder, the engine sidecar and the printed trtexec line, so the
three always agree: each dynamic dimension the user does not cover gets DEFAULT_DYNAMIC_RANGE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from trtq.errors import BackendError

# (min, opt, max) given to a dynamic input dimension that the user's shapes leave out.
DEFAULT_DYNAMIC_RANGE = (1, 1, 16)
Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]


def onnx_input_dims(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Graph inputs of an ONNX file with -1 for each dynamic dimension (weights not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    dims = {}
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        shape = tensor.type.tensor_type.shape.dim
        dims[tensor.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in shape)
    return dims


def _check(name: str, dims: Sequence[int], triple) -> tuple[Shape, Shape, Shape]:
    try:
        low, opt, high = (tuple(int(v) for v in shape) for shape in triple)
    except (TypeError, ValueError):
        raise BackendError(f"shapes for {name!r} must be three shapes (min, opt, max)") from None
    for shape in (low, opt, high):
        if len(shape) != len(dims):
            raise BackendError(f"input {name!r} has rank {len(dims)} ({'x'.join(map(str, dims))}"
                               f" with -1 dynamic); got shape {'x'.join(map(str, shape))}")
        fixed = [(d, s) for d, s in zip(dims, shape, strict=True) if d != -1 and d != s]
        if fixed:
            raise BackendError(f"input {name!r}: static dimension {fixed[0][0]} cannot be set to "
                               f"{fixed[0][1]}; change only the dynamic (-1) dimensions")
    if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)) or min(low) < 0:
        raise BackendError(f"input {name!r}: need 0 <= min <= opt <= max in every dimension, got "
                           f"{low}, {opt}, {high}")
    return low, opt, high


def resolve_profile(inputs: Mapping[str, Sequence[int]],
                    shapes: Mapping[str, Sequence[Sequence[int]]] | None = None) -> Profile:
    """(min, opt, max) for every dynamic input: the user's where given, else the default range."""
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise BackendError(f"shapes names {unknown}, which are not inputs of this model "
                           f"(inputs: {sorted(inputs)})")
    profile: Profile = {}
    for name, dims in inputs.items():
        dims = tuple(dims)
        if name in shapes:
            profile[name] = _check(name, dims, shapes[name])
        elif -1 in dims:
            profile[name] = tuple(tuple(r if d == -1 else d for d in dims)
                                  for r in DEFAULT_DYNAMIC_RANGE)
    return {name: profile[name] for name in sorted(profile)}


def parse_shape_arg(text: str) -> tuple[str, tuple[Shape, Shape, Shape]]:
    """'boxes:1x4:4x4:16x4' → ('boxes', ((1, 4), (4, 4), (16, 4)))."""
    parts = text.split(":")
    if len(parts) != 4 or not parts[0]:
        raise BackendError(f"--shapes {text!r}: write NAME:MIN:OPT:MAX with dimensions joined by "
                           "'x', e.g. boxes:1x4:4x4:16x4")
    try:
        triple = tuple(tuple(int(v) for v in part.split("x")) for part in parts[1:])
    except ValueError:
        raise BackendError(f"--shapes {text!r}: dimensions must be integers joined by 'x'") \
            from None
    return parts[0], triple


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)
