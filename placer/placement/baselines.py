"""Placement strategies: the model's knapsack, the heuristics it must beat, and the oracle.

Every strategy answers the same question: given a run's groups (one per site and chunk,
:func:`placer.placement.planner.groups`) and a DRAM capacity in bytes, which groups stay in
DRAM? The heuristics see only profile signals; the oracle sees the labels.

* ``density-greedy`` (Moura et al.'s baseline): sort by memory accesses per byte (perf-mem
  LLC misses when the run has them, else page-poison touched pages), fill DRAM.
* ``ecohmem-knapsack`` (ecoHMEM): 0/1 knapsack with value = misses (or touched pages).
* ``size-threshold`` (memkind memtier's dynamic threshold): allocations under a size
  threshold go to DRAM; the threshold is the largest that keeps them within the budget.
* ``first-touch`` (Linux default): DRAM fills in allocation order until it is full.
* ``random``: groups in a seeded random order, fill DRAM.
* ``oracle``: knapsack on the true per-object penalties from the labels.
* ``model``: knapsack on the model's predicted penalties.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from placer.placement import planner

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class Strategy(ABC):
    """Contract: ``choose(grouped, capacity)`` returns a boolean mask over ``grouped``'s rows
    (True = DRAM) whose ``weight`` sum is at most ``capacity``; it never reads labels unless
    it is built from them (the oracle)."""

    name: str = ""

    @abstractmethod
    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray: ...


def _signal(grouped: pd.DataFrame) -> np.ndarray:
    """Accesses of each group: perf-mem misses when the run has them, else touched pages."""
    import numpy as np

    miss = grouped["miss_est"].to_numpy(dtype=float)
    if np.isfinite(miss).any() and np.nansum(miss) > 0:
        return np.nan_to_num(miss, nan=0.0)
    return grouped["access_est"].to_numpy(dtype=float)


class DensityGreedy(Strategy):
    name = "density-greedy"

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        import numpy as np

        w = grouped["weight"].to_numpy()
        density = _signal(grouped) / np.maximum(w, 1)
        order = sorted(range(len(w)), key=lambda i: (-density[i], i))
        return planner.greedy(order, w, capacity)


class EcoHmemKnapsack(Strategy):
    name = "ecohmem-knapsack"

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        return planner.knapsack(_signal(grouped), grouped["weight"].to_numpy(), capacity)


class SizeThreshold(Strategy):
    name = "size-threshold"

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        w = grouped["weight"].to_numpy()
        order = sorted(range(len(w)), key=lambda i: (w[i], i))
        return planner.greedy(order, w, capacity, stop_at_first=True)


class FirstTouch(Strategy):
    name = "first-touch"

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        w = grouped["weight"].to_numpy()
        t = grouped["first_alloc_ns"].to_numpy()
        order = sorted(range(len(w)), key=lambda i: (t[i], i))
        return planner.greedy(order, w, capacity, stop_at_first=True)


class RandomFill(Strategy):
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        import numpy as np

        w = grouped["weight"].to_numpy()
        order = list(np.random.default_rng(self.seed).permutation(len(w)))
        return planner.greedy(order, w, capacity)


class ValueKnapsack(Strategy):
    """Knapsack on per-object values (seconds or shares) summed per group."""

    def __init__(self, name: str, values: dict[int, float]) -> None:
        self.name = name
        self.values = values

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        return planner.knapsack(
            planner.group_values(grouped, self.values), grouped["weight"].to_numpy(), capacity
        )


def heuristics(seed: int = 0) -> list[Strategy]:
    """The label-free baselines, in report order."""
    return [DensityGreedy(), EcoHmemKnapsack(), SizeThreshold(), FirstTouch(), RandomFill(seed)]


BASELINE_NAMES = [s.name for s in heuristics()]
