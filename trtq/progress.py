"""Progress bars for long loops, shown only when asked (the CLI asks on a terminal)."""

from __future__ import annotations

from collections.abc import Iterable


def progress(iterable: Iterable, enabled: bool, total: int | None = None, desc: str = ""):
    """`iterable`, wrapped in a tqdm bar when `enabled`."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img")
