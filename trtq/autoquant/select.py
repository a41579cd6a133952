"""Choosing the INT8 groups: the most measured time saved under an agreement floor.

Rules, in order:
1. A group whose INT8 time is not below its float time (gain ≤ 0) stays float, whatever its
   accuracy: INT8 must pay for itself.
2. The others are ranked by gain per unit of cost (cost = 1 − the group's agreement alone with
   FP32; a floor of 1e-4 keeps free groups finite) and added greedily while the predicted
   agreement, 1 − the sum of the chosen costs, stays at or above the floor.
3. The chosen set is then measured as a whole; while the measured agreement is below the
   floor, the last group added (the least gain per cost) is dropped and the set measured again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MIN_COST = 1e-4


def rank(rows: dict[str, dict]) -> list[str]:
    """Groups with a positive gain, best gain per cost first."""
    faster = [g for g, r in rows.items() if r["gain_ms"] > 0]
    return sorted(faster, key=lambda g: rows[g]["gain_ms"] / max(rows[g]["cost"], MIN_COST),
                  reverse=True)


def choose(rows: dict[str, dict], floor: float,
           measure: Callable[[Sequence[str]], float]) -> tuple[list[str], list[dict]]:
    """(chosen groups, the measurements made). `rows[g]` has "cost" and "gain_ms";
    `measure(groups)` is the agreement with those groups quantized together."""
    chosen, spent = [], 0.0
    for group in rank(rows):
        cost = max(rows[group]["cost"], 0.0)
        if 1.0 - (spent + cost) >= floor:
            chosen.append(group)
            spent += cost
    history = []
    while chosen:
        agreement = measure(chosen)
        history.append({"groups": list(chosen), "agreement": agreement,
                        "predicted": 1.0 - sum(max(rows[g]["cost"], 0.0) for g in chosen)})
        if agreement >= floor:
            break
        chosen.pop()
    return chosen, history


def decisions(rows: dict[str, dict], chosen: Sequence[str], floor: float) -> dict[str, str]:
    """Why each group ended where it did, in one line."""
    out = {}
    for group, row in rows.items():
        if group in chosen:
            out[group] = "int8"
        elif row["gain_ms"] <= 0:
            out[group] = f"float: not faster in INT8 ({row['gain_ms']:+.2f} ms)"
        else:
            out[group] = (f"float: its cost ({row['cost']:.4f}) would take the agreement below "
                          f"{floor}")
    return out
