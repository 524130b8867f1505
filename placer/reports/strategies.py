"""Placement strategies the run report compares, computed from stored rows.

The object table ranks each object under every baseline (the orders below, per object).
The DRAM-budget curve uses :mod:`placer.placement` (the planner's site/chunk groups, the
same code as ``placer recommend``) and falls back to :func:`select_dram` here only when
that package is not installed. The strategies are the design map's baselines (§6):

- ``density-greedy``: Moura et al.'s greedy: hottest per byte first (LLC misses per byte when
  perf mem sampled the run, else the page-poison access density), fill DRAM;
- ``ecohmem-knapsack``: ecoHMEM-style 0/1 knapsack, value = accesses (density x size or LLC
  misses), weight = bytes;
- ``size-threshold``: memtier's size threshold: small objects first;
- ``first-touch``: Linux's default: DRAM fills in allocation order;
- ``random``: a seeded shuffle (seed in the report);
- ``oracle``: 0/1 knapsack on the labels' own penalties (only where labels exist).

Greedy strategies take objects in order and skip one that does not fit, as a filling
allocator would. Knapsacks are solved exactly with :func:`scipy.optimize.milp`.
"""

from __future__ import annotations

import random as _random
from collections.abc import Sequence
from dataclasses import dataclass

GREEDY = ("density-greedy", "size-threshold", "first-touch", "random")
KNAPSACK = ("ecohmem-knapsack", "oracle")
#: Strategy names as :mod:`placer.placement.baselines` spells them, and their legends.
LABELS = {
    "model": "model plan",
    "density-greedy": "density greedy (Moura et al.)",
    "ecohmem-knapsack": "ecoHMEM knapsack",
    "size-threshold": "size threshold (memtier)",
    "first-touch": "first-touch (Linux)",
    "random": "random",
    "oracle": "oracle (labels)",
}


@dataclass(frozen=True)
class Candidate:
    """What a strategy may look at for one object (or chunk)."""

    id: int
    size_bytes: int
    alloc_order: tuple[int, int, int]  # (alloc_ns, alloc_seq, chunk_index)
    density: float | None  # page-poison touched share (None: never sampled)
    llc_misses: int | None = None  # perf mem LLC misses (None: no perf mem)
    penalty_s: float | None = None  # label: seconds lost if this object alone is slow

    def accesses(self) -> float:
        """Relative memory traffic: LLC misses when sampled, else density x size."""
        if self.llc_misses is not None:
            return float(self.llc_misses)
        return (self.density or 0.0) * self.size_bytes


def order(strategy: str, objs: Sequence[Candidate], seed: int = 0) -> list[int]:
    """Object ids, most deserving of DRAM first."""
    if strategy in ("density-greedy", "ecohmem-knapsack"):
        return [
            o.id for o in sorted(objs, key=lambda o: (-o.accesses() / max(o.size_bytes, 1), o.id))
        ]
    if strategy == "size-threshold":
        return [o.id for o in sorted(objs, key=lambda o: (o.size_bytes, o.alloc_order))]
    if strategy == "first-touch":
        return [o.id for o in sorted(objs, key=lambda o: o.alloc_order)]
    if strategy == "random":
        ids = sorted(o.id for o in objs)
        _random.Random(seed).shuffle(ids)
        return ids
    if strategy == "oracle":
        return [
            o.id
            for o in sorted(
                objs, key=lambda o: (-(o.penalty_s or 0.0) / max(o.size_bytes, 1), o.id)
            )
        ]
    raise ValueError(f"unknown strategy {strategy!r}")


def ranks(strategy: str, objs: Sequence[Candidate], seed: int = 0) -> dict[int, int]:
    """1-based rank of each object under ``strategy``."""
    return {oid: i + 1 for i, oid in enumerate(order(strategy, objs, seed))}


def _greedy(ids: list[int], sizes: dict[int, int], budget: int) -> set[int]:
    chosen: set[int] = set()
    used = 0
    for oid in ids:
        if used + sizes[oid] <= budget:
            chosen.add(oid)
            used += sizes[oid]
    return chosen


def knapsack(values: Sequence[float], weights: Sequence[int], capacity: int) -> list[int]:
    """Indices of the items of greatest total value whose weights fit ``capacity`` (exact)."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    n = len(values)
    if n == 0 or capacity <= 0:
        return []
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    take = [i for i in range(n) if w[i] <= 0]  # free items always fit
    rest = [i for i in range(n) if w[i] > 0 and w[i] <= capacity and v[i] > 0]
    if not rest:
        return take
    scale = float(w[rest].max())  # keep the constraint well conditioned
    res = milp(
        c=-v[rest],
        constraints=LinearConstraint(w[rest][None, :] / scale, -np.inf, capacity / scale),
        integrality=np.ones(len(rest)),
        bounds=Bounds(0, 1),
    )
    if res.x is None:  # solver failure: fall back to greedy by value per byte
        chosen = _greedy(
            sorted(rest, key=lambda i: -v[i] / w[i]), {i: int(w[i]) for i in rest}, capacity
        )
        return sorted(take + list(chosen))
    return sorted(take + [i for i, x in zip(rest, res.x, strict=True) if x > 0.5])


def select_dram(
    strategy: str, objs: Sequence[Candidate], budget_bytes: int, seed: int = 0
) -> set[int]:
    """Ids of the objects ``strategy`` keeps in DRAM under ``budget_bytes``."""
    if strategy in KNAPSACK:
        if strategy == "ecohmem-knapsack":
            values = [o.accesses() for o in objs]
        else:
            values = [max(o.penalty_s or 0.0, 0.0) for o in objs]
        picked = knapsack(values, [o.size_bytes for o in objs], budget_bytes)
        return {objs[i].id for i in picked}
    sizes = {o.id: o.size_bytes for o in objs}
    return _greedy(order(strategy, objs, seed), sizes, budget_bytes)


def slowdown(objs: Sequence[Candidate], dram: set[int], base_seconds: float) -> float:
    """Runtime over all-DRAM runtime when every object not in ``dram`` is slow (additive)."""
    lost = sum(max(o.penalty_s or 0.0, 0.0) for o in objs if o.id not in dram)
    return (base_seconds + lost) / base_seconds
