"""The accuracy figures a comparison shows: which metrics, read from eval/classify results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

ACCURACY_METRICS = {"miou": "mIoU", "agreement_miou": "agreement mIoU", "top1": "top-1",
                    "agreement_top1": "agreement top-1"}


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def accuracy_summary(data: Mapping[str, Any]) -> dict[str, float]:
    """The accuracy metrics of an eval/classify JSON (classify's `agreement` is top-1 agreement);
    absent, null and NaN values are left out."""
    picked = {m: data.get(m) for m in ACCURACY_METRICS}
    if picked["agreement_top1"] is None and "top1" in data:
        picked["agreement_top1"] = data.get("agreement")
    return {m: float(v) for m, v in picked.items() if is_number(v)}
