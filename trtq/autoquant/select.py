"""Choosing the INT8 groups: the most measured time saved under an agreement floor.

Rules, in order:
1. A group whose INT8 time is not below its float time (gain ≤ 0) stays float, whatever its
   accuracy: INT8 must pay for itself.
2. The others are ranked by gain per unit of cost (cost = 1 − the group's agreement alone with
   FP32; a floor of 1e-4 keeps free groups finite) and added greedily while the predicted
   agreement, 1 − the sum of the chosen costs, stays at or above the floor.
3. The chosen set is then measured as a whole; while the measured agreement is below the
   floor, the last group added (the least gain per cost) is dropped and the set measured again.
4. Add-back: summed single-group costs overestimate the loss of a set (errors of different
   groups partly cancel; on LiteMedSAM 0.019 predicted, 0.010 measured), so the groups the
   prediction left out are tried again, in rank order, each measured with the set: kept where
   the measured agreement stays at or above the floor. `jobs` candidates are measured at once
   as a chain (set + g1, set + g1 + g2, ...); the longest passing prefix is kept and the first
   failing group stays float. Groups dropped in rule 3 are not retried. It measures the set at
   the floor on the held-out images, so it needs enough of them: on `trtq run`'s 4 photos it
   fitted their noise (0.955 on them, 0.893 on the run's held-out photos), and `trtq run` does
   not use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MIN_COST = 1e-4

Measure = Callable[[Sequence[Sequence[str]]], Sequence[float]]


def rank(rows: dict[str, dict]) -> list[str]:
    """Groups with a positive gain, best gain per cost first."""
    faster = [g for g, r in rows.items() if r["gain_ms"] > 0]
    return sorted(faster, key=lambda g: rows[g]["gain_ms"] / max(rows[g]["cost"], MIN_COST),
                  reverse=True)


def _predicted(rows: dict[str, dict], groups: Sequence[str]) -> float:
    return 1.0 - sum(max(rows[g]["cost"], 0.0) for g in groups)


def choose(rows: dict[str, dict], floor: float, measure: Measure, jobs: int = 1,
           add_back: bool = True) -> tuple[list[str], list[dict]]:
    """(chosen groups, the measurements made). `rows[g]` has "cost" and "gain_ms";
    `measure(sets)` is the agreement of each set of groups quantized together (the sets may
    be measured in parallel, up to `jobs` at a time); `add_back` runs rule 4."""
    chosen, spent = [], 0.0
    for group in rank(rows):
        cost = max(rows[group]["cost"], 0.0)
        if 1.0 - (spent + cost) >= floor:
            chosen.append(group)
            spent += cost
    history, dropped = [], []

    def record(sets, step):
        results = list(measure(sets))
        history.extend({"groups": list(s), "agreement": a, "predicted": _predicted(rows, s),
                        "step": step} for s, a in zip(sets, results, strict=True))
        return results

    while chosen:
        if record([chosen], "verify")[0] >= floor:
            break
        dropped.append(chosen.pop())
    remaining = [g for g in rank(rows) if g not in chosen and g not in dropped] \
        if add_back else []
    while remaining:
        batch = remaining[:max(1, jobs)]
        chain = [chosen + batch[:i + 1] for i in range(len(batch))]
        results = record(chain, "add-back")
        passed = next((i for i, a in enumerate(results) if a < floor), len(batch))
        if passed:
            chosen = list(chain[passed - 1])
        remaining = batch[passed + 1:] + remaining[len(batch):]
    return chosen, history


def final_agreement(history: Sequence[dict], chosen: Sequence[str]) -> float | None:
    """The measured agreement of the chosen set (None when nothing was chosen or measured)."""
    for entry in reversed(history):
        if sorted(entry["groups"]) == sorted(chosen):
            return entry["agreement"]
    return None


def decisions(rows: dict[str, dict], chosen: Sequence[str], floor: float,
              history: Sequence[dict] = ()) -> dict[str, str]:
    """Why each group ended where it did, in one line."""
    failed = {}
    for entry in history:
        if entry["agreement"] < floor and entry["groups"]:
            failed[entry["groups"][-1]] = entry["agreement"]
    out = {}
    for group, row in rows.items():
        if group in chosen:
            out[group] = "int8"
        elif row["gain_ms"] <= 0:
            out[group] = f"float: not faster in INT8 ({row['gain_ms']:+.2f} ms)"
        elif group in failed:
            out[group] = (f"float: with it the measured agreement was {failed[group]:.4f} < "
                          f"{floor}")
        else:
            out[group] = (f"float: its cost ({row['cost']:.4f}) would take the agreement below "
                          f"{floor}")
    return out
