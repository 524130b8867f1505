"""The planner: 0/1 knapsack over sites (and chunks) under a DRAM budget.

A plan is applied at allocation time by the shim, which knows an allocation only by its
site (and the chunk within it), so every object of one ``(site, chunk)`` goes to the same
tier. Planning items are therefore *groups* of objects: weight = the group's peak live
bytes (allocations of a site that never coexist share space), value = the sum of its
objects' values (for the model: predicted penalty avoided by keeping them in DRAM).

The knapsack is solved by dynamic programming over capacity buckets: weights are divided
by their greatest common divisor (page-sized chunks make this exact), and if that still
leaves more buckets than :data:`CELLS` allows, scaled and rounded *up* so a plan never
exceeds the budget; capacity the rounding leaves is then filled greedily by value density.
It is placer's one knapsack: every knapsack strategy of :mod:`placer.placement.baselines`
(model, oracle, ecoHMEM) solves with it, for recommendations, evaluation, labeling
experiments and reports alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from placer.contracts.units import parse_size
from placer.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

RESOLUTION = 2000  # fewest capacity buckets
CELLS = 20_000_000  # DP table cells allowed (items x buckets): exact for most real runs
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def peak_live(starts: list[int], ends: list[int], sizes: list[int]) -> int:
    """Largest sum of sizes alive at one time (intervals ``[start, end)``)."""
    events = sorted(
        [(s, 1, z) for s, z in zip(starts, sizes, strict=True)]
        + [(max(e, s), 0, -z) for s, e, z in zip(starts, ends, sizes, strict=True)]
    )
    live = peak = 0
    for _, _, delta in events:  # frees (0) sort before allocations (1) at the same time
        live += delta
        peak = max(peak, live)
    return peak


def groups(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (site, chunk) of a run: weight, object ids, signals the baselines use."""
    import pandas as pd  # lazy: heavy

    rows = []
    for (site_hash, chunk), g in table.groupby(["site_hash", "chunk_index"], sort=False):
        miss = g["miss_est"].sum(min_count=1)
        rows.append(
            {
                "site_hash": site_hash,
                "chunk_index": int(chunk),
                "site_id": int(g["site_id"].iat[0]),
                "objects": list(map(int, g["object_id"])),
                "count": len(g),
                "bytes": int(g["size_bytes"].sum()),
                "weight": peak_live(list(g["alloc_ns"]), list(g["end_ns"]), list(g["size_bytes"])),
                "first_alloc_ns": int(g["alloc_ns"].min()),
                "access_est": float(g["access_est"].sum()),
                "miss_est": float(miss) if pd.notna(miss) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def footprint(grouped: pd.DataFrame) -> int:
    """Bytes the plan places: the sum of the groups' peak live bytes."""
    return int(grouped["weight"].sum())


def parse_budget(text: str, total: int) -> tuple[int, float]:
    """``50%`` of ``total`` or a size (``8GiB``) → (bytes, fraction); errors are one line."""
    if total <= 0:
        raise InvalidInputError("the run's footprint is 0 bytes: nothing to place")
    m = _BUDGET.match(str(text))
    if m:
        pct = float(m.group(1))
        if not 0 <= pct <= 100:
            raise InvalidInputError(f"DRAM budget {text} is not between 0% and 100%")
        nbytes = int(total * pct / 100)
    else:
        nbytes = parse_size(text, "DRAM budget")
        if nbytes > total:
            raise InvalidInputError(
                f"DRAM budget {text} ({nbytes} bytes) is larger than the run's footprint "
                f"({total} bytes): everything fits in DRAM, there is nothing to plan"
            )
    return nbytes, nbytes / total


def knapsack(
    values: np.ndarray,
    weights: np.ndarray,
    capacity: int,
    resolution: int = RESOLUTION,
    cells: int = CELLS,
) -> np.ndarray:
    """Boolean mask of the items to take: max sum of values with sum of weights <= capacity.

    ``cells`` bounds the DP table (items x buckets); fewer cells round weights up more
    coarsely (never over the budget), for callers that plan many times (model selection).
    """
    import numpy as np  # lazy: heavy

    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=np.int64)
    n = len(values)
    take = np.zeros(n, dtype=bool)
    if n == 0 or capacity <= 0:
        return take
    useful = (values > 0) & (weights <= capacity)
    free = useful & (weights == 0)
    take |= free
    cand = np.flatnonzero(useful & ~free)
    if len(cand):
        unit = int(np.gcd.reduce(weights[cand]))
        units = int(capacity) // unit
        cap = min(units, max(resolution, cells // len(cand)))
        w = np.ceil(weights[cand] / unit * cap / units).astype(np.int64)
        best = np.zeros(cap + 1)
        keep = np.zeros((len(cand), cap + 1), dtype=bool)
        for k, (wi, vi) in enumerate(zip(w, values[cand], strict=True)):
            if wi > cap:
                continue
            shifted = np.full(cap + 1, -np.inf)
            shifted[wi:] = best[: cap + 1 - wi] + vi
            better = shifted > best
            keep[k] = better
            best = np.where(better, shifted, best)
        c = int(np.argmax(best))
        for k in range(len(cand) - 1, -1, -1):
            if keep[k, c]:
                take[cand[k]] = True
                c -= int(w[k])
    # fill what rounding left, best value density first
    left = capacity - int(weights[take].sum())
    rest = [i for i in np.flatnonzero(useful & ~take)]
    rest.sort(key=lambda i: -values[i] / max(weights[i], 1))
    for i in rest:
        if weights[i] <= left:
            take[i] = True
            left -= int(weights[i])
    return take


def greedy(
    order: list[int], weights: np.ndarray, capacity: int, *, stop_at_first: bool = False
) -> np.ndarray:
    """Take items in ``order`` while they fit (skip misfits, or stop at the first one)."""
    import numpy as np  # lazy: heavy

    take = np.zeros(len(weights), dtype=bool)
    left = capacity
    for i in order:
        if weights[i] <= left:
            take[i] = True
            left -= int(weights[i])
        elif stop_at_first:
            break
    return take


def plan_value(grouped: pd.DataFrame, dram: np.ndarray, shares: dict[int, float]) -> float:
    """Slowdown (runtime / all-DRAM runtime) when groups not in ``dram`` are slow.

    Per-object penalties add up, as in the emulator (runtime = base + sum of penalties of
    the slow objects); objects without a value count 0.
    """
    return price(grouped["objects"], dram, shares)


def price(
    members: Iterable[Sequence[int]], dram: Iterable[bool], shares: dict[int, float]
) -> float:
    """:func:`plan_value` over any candidates: ``members`` lists each one's object ids."""
    total = 0.0
    for objs, in_dram in zip(members, dram, strict=True):
        if not in_dram:
            total += sum(shares.get(o, 0.0) for o in objs)
    return 1.0 + total


def group_values(grouped: pd.DataFrame, shares: dict[int, float]) -> Any:
    """Each group's value: the sum of its objects' ``shares``."""
    import numpy as np  # lazy: heavy

    return np.array([sum(shares.get(o, 0.0) for o in objs) for objs in grouped["objects"]])


def describe_choice(grouped: pd.DataFrame, dram: np.ndarray) -> dict[str, Any]:
    return {
        "groups_in_dram": int(dram.sum()),
        "groups": int(len(dram)),
        "dram_bytes": int(grouped["weight"].to_numpy()[dram].sum()),
    }


__all__ = [
    "groups",
    "footprint",
    "parse_budget",
    "knapsack",
    "greedy",
    "plan_value",
    "price",
    "peak_live",
    "RESOLUTION",
]
