"""The planner: a time-aware 0/1 knapsack over sites (and chunks) under a DRAM budget.

A plan is applied at allocation time by the shim, which knows an allocation only by its
site (and the chunk within it), so every object of one ``(site, chunk)`` goes to the same
tier. Planning items are therefore *groups* of objects; a group's value is the sum of its
objects' values (for the model: predicted penalty avoided by keeping them in DRAM).

DRAM is constrained at every instant of the run, not once for the sum of the items: objects
whose lifetimes do not overlap share the budget. Each object holds its bytes over
``[alloc_ns, max(end_ns, alloc_ns + 1))``. The *moments* are the instants where the live
set has just grown (the last allocation before a free); ``live[m, g]`` is the bytes of group
``g`` alive at moment ``m``, reduced to the distinct, non-dominated rows (a row no larger
than another everywhere is a constraint the other already implies). With ``x`` the 0/1
choice, the planner solves

    maximize  values @ x   subject to  live @ x <= capacity  at every moment.

The run's *footprint* (what ``--dram-budget 50%`` is a share of) is its peak live bytes, the
largest row sum over all objects (:func:`peak_live`), not the sum of the groups' peaks.

:func:`solve` says how it solved (``Solution.solver``):

* ``dp``: one moment binds (every moment whose candidates' bytes exceed the capacity is
  implied by one row): the classic knapsack, solved by dynamic programming over capacity
  buckets. Weights are divided by their greatest common divisor (page-sized chunks make
  this exact); beyond :data:`CELLS` they are scaled and rounded *up* (never over the
  budget) and capacity the rounding leaves is filled greedily by value density.
* ``milp``: several moments bind and the problem is small (at most
  :data:`MILP_MAX_ITEMS` candidate groups and :data:`MILP_MAX_MOMENTS` binding moments):
  solved exactly by ``scipy.optimize.milp`` (HiGHS), stopped after
  :data:`MILP_TIME_LIMIT_S` seconds.
* ``milp-incumbent``: HiGHS hit its time limit; its best feasible plan is kept (it beat the
  approximation below), optimality is not proven.
* ``greedy-feasible`` (approximate): larger problems, or a time-out the approximation
  beats. The DP on each group's peak bytes (feasible at every moment: peaks sum within the
  budget), then a fill by value density that takes a group only if every moment stays
  within the budget; the better of that and the density fill alone.

Every plan is checked, in integers, against every moment before it is returned. It is
placer's one knapsack: every knapsack strategy of :mod:`placer.placement.baselines` (model,
oracle, ecoHMEM) solves with it, and the greedy strategies take an item with
:func:`greedy` under the same per-moment capacity, for recommendations, evaluation,
labeling experiments and reports alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from placer.contracts.streams import stdout_to_stderr
from placer.contracts.units import parse_budget_spec
from placer.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

RESOLUTION = 2000  # fewest capacity buckets
CELLS = 20_000_000  # DP table cells allowed (items x buckets): exact for most real runs
#: Exact (MILP) solve limits; larger problems take the ``greedy-feasible`` approximation.
MILP_MAX_ITEMS = 400
MILP_MAX_MOMENTS = 2000
MILP_TIME_LIMIT_S = 5.0
#: Cells of the live matrix built at once (rows are reduced block by block).
BLOCK_CELLS = 4_000_000
#: Element comparisons the dominance filter may spend; past it the rest stay (redundant).
DOMINANCE_WORK = 200_000_000

#: One object's life: (alloc_ns, end_ns, size_bytes), holding its bytes over [alloc, end).
Lifetime = tuple[int, int, int]


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


def lifetime(alloc_ns: int, end_ns: int, size: int) -> Lifetime:
    """An object's interval; one that ends when it starts still holds its bytes an instant."""
    return int(alloc_ns), max(int(end_ns), int(alloc_ns) + 1), int(size)


def groups(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (site, chunk) of a run: weight (peak live bytes), object ids, their
    lifetimes (for the per-moment budget), signals the baselines use.

    Grouped over plain columns (a pandas group per site cost ~1 ms: seconds for a program
    of 10,000 sites), in order of first appearance.
    """
    import pandas as pd  # lazy: heavy

    cols = {
        c: table[c].tolist()
        for c in (
            "site_hash",
            "chunk_index",
            "site_id",
            "object_id",
            "alloc_ns",
            "end_ns",
            "size_bytes",
            "access_est",
            "miss_est",
        )
    }
    members: dict[tuple[Any, Any], list[int]] = {}
    for i, key in enumerate(zip(cols["site_hash"], cols["chunk_index"], strict=True)):
        members.setdefault(key, []).append(i)
    rows = []
    for (site_hash, chunk), idx in members.items():
        misses = [float(cols["miss_est"][i]) for i in idx]
        misses = [m for m in misses if not math.isnan(m)]
        lives = [
            lifetime(cols["alloc_ns"][i], cols["end_ns"][i], cols["size_bytes"][i]) for i in idx
        ]
        rows.append(
            {
                "site_hash": site_hash,
                "chunk_index": int(chunk),
                "site_id": int(cols["site_id"][idx[0]]),
                "objects": [int(cols["object_id"][i]) for i in idx],
                "count": len(idx),
                "bytes": int(sum(int(cols["size_bytes"][i]) for i in idx)),
                "weight": live_peak(lives),
                "lifetimes": lives,
                "first_alloc_ns": int(min(cols["alloc_ns"][i] for i in idx)),
                "access_est": float(sum(float(cols["access_est"][i]) for i in idx)),
                "miss_est": float(sum(misses)) if misses else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def live_peak(lives: Sequence[Lifetime]) -> int:
    return peak_live([a for a, _, _ in lives], [e for _, e, _ in lives], [z for _, _, z in lives])


def _lifetimes(grouped: pd.DataFrame) -> list[list[Lifetime]] | None:
    """The groups' lifetimes; None for a frame built without them (all groups coexist)."""
    if "lifetimes" not in grouped.columns:
        return None
    return [list(lives) for lives in grouped["lifetimes"]]


def footprint(grouped: pd.DataFrame) -> int:
    """The run's peak live bytes: the most its objects hold at one time (the budget's 100%).

    A frame without lifetimes counts every group alive at once (sum of peaks).
    """
    lives = _lifetimes(grouped)
    if lives is None:
        return int(grouped["weight"].sum())
    return live_peak([lt for group in lives for lt in group])


def live(grouped: pd.DataFrame) -> np.ndarray | None:
    """:func:`live_matrix` of the planner's groups (None: a frame without lifetimes)."""
    lives = _lifetimes(grouped)
    return None if lives is None else live_matrix(lives)


def live_matrix(items: Sequence[Sequence[Lifetime]]) -> np.ndarray:
    """``live[moment, item]``: bytes of each item alive at each moment the live set grows
    to a local maximum, reduced to distinct, non-dominated rows (int64)."""
    import numpy as np  # lazy: heavy

    n = len(items)
    flat = [(a, e, z, i) for i, lives in enumerate(items) for a, e, z in lives if z > 0]
    if not flat:
        return np.zeros((0, n), dtype=np.int64)
    a, e, z, g = np.array(flat, dtype=np.int64).T
    e = np.maximum(e, a + 1)
    t = np.concatenate([a, e])
    kind = np.concatenate([np.ones(len(a), np.int8), np.zeros(len(a), np.int8)])
    order = np.lexsort((kind, t))  # by time; frees (0) before allocations (1)
    kind, delta, gg = kind[order], np.concatenate([z, -z])[order], np.concatenate([g, g])[order]
    # a local maximum: an allocation followed by a free (or by nothing)
    peaks = np.flatnonzero((kind == 1) & np.append(kind[1:] == 0, True))
    seg = np.searchsorted(peaks, np.arange(len(kind)))  # the first peak at or after each event
    block = max(1, BLOCK_CELLS // max(n, 1))
    carry = np.zeros(n, dtype=np.int64)
    parts = []
    for r0 in range(0, len(peaks), block):
        r1 = min(len(peaks), r0 + block)
        lo, hi = np.searchsorted(seg, r0), np.searchsorted(seg, r1)
        d = np.zeros((r1 - r0, n), dtype=np.int64)
        np.add.at(d, (seg[lo:hi] - r0, gg[lo:hi]), delta[lo:hi])
        rows = carry + np.cumsum(d, axis=0)
        carry = rows[-1].copy()
        parts.append(np.unique(rows, axis=0))
    return undominated(np.unique(np.concatenate(parts), axis=0))


def undominated(rows: np.ndarray) -> np.ndarray:
    """``rows`` without those another row bounds everywhere (largest total first).

    Past :data:`DOMINANCE_WORK` comparisons the remaining rows are kept unfiltered: a
    dominated row is only a redundant constraint.
    """
    import numpy as np  # lazy: heavy

    if len(rows) <= 1:
        return rows
    ordered = rows[np.argsort(-rows.sum(axis=1), kind="stable")]
    kept = np.empty_like(ordered)
    k = work = 0
    for i, row in enumerate(ordered):
        if work > DOMINANCE_WORK:
            rest = ordered[i:]
            return np.concatenate([kept[:k], rest])
        if k and bool((kept[:k] >= row).all(axis=1).any()):
            continue
        work += k * ordered.shape[1]
        kept[k] = row
        k += 1
    return kept[:k]


def parse_budget(text: str, total: int) -> tuple[int, float]:
    """``50%`` of ``total`` or a size (``8GiB``) → (bytes, fraction); errors are one line."""
    if total <= 0:
        raise InvalidInputError("the run's footprint is 0 bytes: nothing to place")
    pct, size = parse_budget_spec(text)
    if pct is not None:
        nbytes = int(total * pct / 100)
    else:
        nbytes = int(size or 0)
        if nbytes > total:
            raise InvalidInputError(
                f"DRAM budget {text} ({nbytes} bytes) is larger than the run's footprint "
                f"({total} bytes): everything fits in DRAM, there is nothing to plan"
            )
    return nbytes, nbytes / total


@dataclass(frozen=True)
class Solution:
    """The items to take and how they were chosen (``dp``, ``milp``, ``milp-incumbent``,
    ``greedy-feasible``: see the module docstring)."""

    take: np.ndarray
    solver: str


def knapsack(
    values: np.ndarray,
    weights: np.ndarray,
    capacity: int,
    resolution: int = RESOLUTION,
    cells: int = CELLS,
    *,
    live: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of the items to take: :func:`solve`'s plan."""
    return solve(values, weights, capacity, resolution, cells, live=live).take


def solve(
    values: np.ndarray,
    weights: np.ndarray,
    capacity: int,
    resolution: int = RESOLUTION,
    cells: int = CELLS,
    *,
    live: np.ndarray | None = None,
    time_limit: float = MILP_TIME_LIMIT_S,
) -> Solution:
    """Max sum of values with ``live @ x <= capacity`` at every moment (``live`` None: all
    items coexist, one moment of ``weights``). Only items of positive value are taken.

    ``cells`` bounds the DP table (items x buckets); fewer cells round weights up more
    coarsely (never over the budget), for callers that plan many times (model selection).
    """
    import numpy as np  # lazy: heavy

    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=np.int64)
    n = len(values)
    rows = weights[None, :] if live is None else np.asarray(live, dtype=np.int64)
    take = np.zeros(n, dtype=bool)
    if n == 0 or capacity <= 0:
        return Solution(take, "dp")
    peak = rows.max(axis=0) if len(rows) else np.zeros(n, dtype=np.int64)
    useful = (values > 0) & (peak <= capacity)
    take |= useful & (peak == 0)  # never alive: free
    cand = np.flatnonzero(useful & (peak > 0))
    sub = rows[:, cand]
    sub = sub[sub.sum(axis=1) > capacity]  # moments where not every candidate fits
    if len(cand) == 0 or len(sub) == 0:
        take[cand] = True
        return Solution(take, "dp")
    sub = undominated(np.unique(sub, axis=0))
    v = values[cand]
    if len(sub) == 1:
        pick, solver = _dp(v, sub[0], capacity, resolution, cells), "dp"
    else:
        approx = _approximate(v, sub, capacity, resolution, cells)
        pick, solver = approx, "greedy-feasible"
        if len(cand) <= MILP_MAX_ITEMS and len(sub) <= MILP_MAX_MOMENTS:
            exact, optimal = _milp(v, sub, capacity, time_limit)
            if exact is not None and (optimal or v @ exact > v @ approx):
                pick, solver = exact, "milp" if optimal else "milp-incumbent"
    take[cand] = pick
    if not bool((rows @ take.astype(np.int64) <= capacity).all()):  # never: the solvers check
        raise AssertionError("planner produced a plan over the DRAM budget")
    return Solution(take, solver)


def _dp(
    values: np.ndarray, weights: np.ndarray, capacity: int, resolution: int, cells: int
) -> np.ndarray:
    """The classic knapsack (positive values, weights in 1..capacity) by DP over buckets."""
    import numpy as np  # lazy: heavy

    n = len(values)
    take = np.zeros(n, dtype=bool)
    unit = int(np.gcd.reduce(weights))
    units = int(capacity) // unit
    cap = min(units, max(resolution, cells // n))
    w = np.ceil(weights / unit * cap / units).astype(np.int64)
    best = np.zeros(cap + 1)
    keep = np.zeros((n, cap + 1), dtype=bool)
    for k, (wi, vi) in enumerate(zip(w.tolist(), values.tolist(), strict=True)):
        if wi > cap:
            continue
        # in place over the buckets the item can reach (10,000 sites x 10 budgets in a report)
        shifted = best[: cap + 1 - wi] + vi  # a copy: read before best changes
        np.greater(shifted, best[wi:], out=keep[k, wi:])
        np.maximum(best[wi:], shifted, out=best[wi:])
    c = int(np.argmax(best))
    for k in range(n - 1, -1, -1):
        if keep[k, c]:
            take[k] = True
            c -= int(w[k])
    return _fill(take, _density(values, weights), weights[None, :], capacity)


def _density(values: np.ndarray, weights: np.ndarray) -> list[int]:
    """Items by value per byte, best first (ties: listed first)."""
    return sorted(range(len(values)), key=lambda i: (-values[i] / max(int(weights[i]), 1), i))


def _fill(take: np.ndarray, order: Sequence[int], rows: np.ndarray, capacity: int) -> np.ndarray:
    """Add items in ``order`` that keep every moment (row) within ``capacity``."""
    import numpy as np  # lazy: heavy

    take = take.copy()
    used = rows @ take.astype(np.int64)
    for i in order:
        if not take[i] and bool((used + rows[:, i] <= capacity).all()):
            take[i] = True
            used += rows[:, i]
    return take


def _approximate(
    values: np.ndarray, rows: np.ndarray, capacity: int, resolution: int, cells: int
) -> np.ndarray:
    """Feasible, not optimal: DP on peaks then a per-moment fill, or the fill alone."""
    import numpy as np  # lazy: heavy

    peak = rows.max(axis=0)
    order = _density(values, peak)
    base = _fill(_dp(values, peak, capacity, resolution, cells), order, rows, capacity)
    alone = _fill(np.zeros(len(values), dtype=bool), order, rows, capacity)
    return base if values @ base >= values @ alone else alone


def _milp(
    values: np.ndarray, rows: np.ndarray, capacity: int, time_limit: float
) -> tuple[np.ndarray | None, bool]:
    """HiGHS on the per-moment knapsack: (plan or None, proven optimal)."""
    import numpy as np  # lazy: heavy
    from scipy.optimize import Bounds, LinearConstraint, milp  # lazy: heavy

    with stdout_to_stderr():  # HiGHS prints some diagnostics to fd 1 whatever disp says
        res = milp(
            c=-values / values.max(),
            constraints=LinearConstraint(rows / capacity, -np.inf, 1.0),
            integrality=np.ones(len(values)),
            bounds=Bounds(0, 1),
            options={"time_limit": time_limit, "mip_rel_gap": 1e-6},
        )
    if res.x is None:
        return None, False
    take = res.x > 0.5
    used = rows @ take.astype(np.int64)
    if bool((used > capacity).any()):  # a solver tolerance: drop the least dense until it fits
        for i in reversed(_density(values, rows.max(axis=0))):
            if take[i] and bool((used > capacity).any()):
                take[i] = False
                used -= rows[:, i]
        return _fill(take, _density(values, rows.max(axis=0)), rows, capacity), False
    return take, res.status == 0


def greedy(
    order: list[int],
    weights: np.ndarray,
    capacity: int,
    *,
    stop_at_first: bool = False,
    live: np.ndarray | None = None,
) -> np.ndarray:
    """Take items in ``order`` while they fit at every moment of ``live`` (None: all items
    coexist, one moment of ``weights``); skip misfits, or stop at the first one."""
    import numpy as np  # lazy: heavy

    rows = np.asarray(weights, dtype=np.int64)[None, :] if live is None else live
    if len(rows) == 1:  # one moment binds: plain integers, no array per item (10,000 sites)
        return _greedy_one(order, rows[0].tolist(), capacity, stop_at_first)
    take = np.zeros(rows.shape[1], dtype=bool)
    used = np.zeros(len(rows), dtype=np.int64)
    for i in order:
        if bool((used + rows[:, i] <= capacity).all()):
            take[i] = True
            used += rows[:, i]
        elif stop_at_first:
            break
    return take


def _greedy_one(order: list[int], weights: list[int], capacity: int, stop: bool) -> np.ndarray:
    """:func:`greedy` with a single moment (row): the same choices, in Python integers."""
    import numpy as np  # lazy: heavy

    take = np.zeros(len(weights), dtype=bool)
    used = 0
    for i in order:
        if used + weights[i] <= capacity:
            take[i] = True
            used += weights[i]
        elif stop:
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


def slowdown(values: Sequence[float], dram: Iterable[bool]) -> float:
    """:func:`price` from each candidate's value summed once (:func:`group_values`): the
    same sum in the same order, for callers that price many plans of one run."""
    total = 0.0
    for v, in_dram in zip(values, dram, strict=True):
        if not in_dram:
            total += v
    return 1.0 + total


def group_values(grouped: pd.DataFrame, shares: dict[int, float]) -> Any:
    """Each group's value: the sum of its objects' ``shares``."""
    import numpy as np  # lazy: heavy

    return np.array([sum(shares.get(o, 0.0) for o in objs) for objs in grouped["objects"]])


def describe_choice(grouped: pd.DataFrame, dram: np.ndarray) -> dict[str, Any]:
    """How many groups stay in DRAM and the most DRAM bytes they hold at one time."""
    lives = _lifetimes(grouped)
    chosen = (
        int(grouped["weight"].to_numpy()[dram].sum())
        if lives is None
        else live_peak(
            [lt for group, keep in zip(lives, dram, strict=True) if keep for lt in group]
        )
    )
    return {"groups_in_dram": int(dram.sum()), "groups": int(len(dram)), "dram_bytes": chosen}


__all__ = [
    "groups",
    "footprint",
    "live",
    "live_matrix",
    "parse_budget",
    "knapsack",
    "solve",
    "Solution",
    "greedy",
    "plan_value",
    "price",
    "peak_live",
    "live_peak",
    "RESOLUTION",
]
