"""The one registry of placement strategies: the model's knapsack, the heuristics, the oracle.

Every strategy answers the same question: given candidates and a DRAM capacity in bytes,
which candidates stay in DRAM? A candidate is a planner group (one per site and chunk,
:func:`placer.placement.planner.groups`: what ``placer recommend``, ``placer evaluate`` and
the run report's curve plan) or a single object (what ``placer experiment`` labels and the
report's object table ranks). The heuristics see only profile signals; the oracle and the
model see per-object values (labels, predictions). The rules (docs/placement.md,
"Baselines"):

* ``density-greedy`` (Moura et al.'s baseline): sort by memory accesses per byte (perf-mem
  LLC misses when the run has them, else page-poison touched pages), fill DRAM, skipping a
  candidate that does not fit.
* ``ecohmem-knapsack`` (ecoHMEM): 0/1 knapsack with value = those accesses.
* ``size-threshold`` (memkind memtier's dynamic threshold): smallest first, until the first
  that does not fit (the largest threshold whose candidates fit).
* ``first-touch`` (Linux default): DRAM fills in allocation order until the first candidate
  that does not fit.
* ``random``: candidates in a seeded random order (numpy's ``default_rng(seed)``), fill DRAM.
* ``oracle``: knapsack on the true per-object penalties from the labels.
* ``model``: knapsack on the model's predicted penalties.

Ties go to the candidate listed first; callers list candidates in allocation order. Every
knapsack is :func:`placer.placement.planner.solve`, and every strategy respects the same
per-moment capacity: with lifetimes, a candidate is taken only if DRAM stays within the
budget at every moment of the run (:func:`placer.placement.planner.live_matrix`); without
them every candidate counts as alive at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from placer.errors import InvalidInputError
from placer.placement import planner

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Candidate:
    """One planning item as every strategy sees it: an object, or a planner group."""

    id: int  # the object's id, or the group's row in the planner's frame
    weight: int  # bytes it takes in DRAM (a group: its peak live bytes)
    alloc_order: int  # when it was (first) allocated: first-touch's order
    accesses: float  # memory traffic: LLC misses when the run has them, else touched pages
    objects: tuple[int, ...] = ()  # object ids it stands for (a group); empty: just ``id``
    #: its objects' (alloc_ns, end_ns, size) (:func:`planner.lifetime`); empty: unknown,
    #: the candidate counts as alive for the whole run
    lifetimes: tuple[tuple[int, int, int], ...] = ()

    def members(self) -> tuple[int, ...]:
        """The object ids whose values (labels, predictions) this candidate adds up."""
        return self.objects or (self.id,)


def group_candidates(grouped: pd.DataFrame) -> list[Candidate]:
    """The planner's groups as candidates, in the frame's row order.

    Accesses are perf-mem misses when the run has any, else touched pages, for every group
    alike (a run's groups are never ranked on two different scales).
    """
    import numpy as np  # lazy: heavy

    miss = grouped["miss_est"].to_numpy(dtype=float)
    lives = grouped["lifetimes"] if "lifetimes" in grouped.columns else [()] * len(grouped)
    if np.isfinite(miss).any() and np.nansum(miss) > 0:
        signal = np.nan_to_num(miss, nan=0.0)
    else:
        signal = grouped["access_est"].to_numpy(dtype=float)
    return [
        Candidate(
            id=i,
            weight=int(w),
            alloc_order=int(t),
            accesses=float(a),
            objects=tuple(int(o) for o in objs),
            lifetimes=tuple(tuple(lt) for lt in lts),
        )
        for i, (w, t, a, objs, lts) in enumerate(
            zip(
                grouped["weight"],
                grouped["first_alloc_ns"],
                signal,
                grouped["objects"],
                lives,
                strict=True,
            )
        )
    ]


def _weights(cands: Sequence[Candidate]) -> np.ndarray:
    import numpy as np  # lazy: heavy

    return np.array([c.weight for c in cands], dtype=np.int64)


def live(cands: Sequence[Candidate]) -> np.ndarray | None:
    """The candidates' live bytes per moment; None unless every candidate has lifetimes."""
    if not cands or not all(c.lifetimes for c in cands):
        return None
    return _live(tuple(c.lifetimes for c in cands))


@lru_cache(maxsize=4)
def _live(lifetimes: tuple[tuple[tuple[int, int, int], ...], ...]) -> np.ndarray:
    # a report or an evaluation plans the same candidates for many budgets and strategies
    out = planner.live_matrix(lifetimes)
    out.setflags(write=False)
    return out


def footprint(cands: Sequence[Candidate]) -> int:
    """What a budget share is of: the candidates' peak live bytes (sum of weights without
    lifetimes)."""
    if not cands or not all(c.lifetimes for c in cands):
        return sum(c.weight for c in cands)
    return planner.live_peak([lt for c in cands for lt in c.lifetimes])


class Strategy(ABC):
    """Contract: ``pick(cands, capacity)`` returns a boolean mask over ``cands`` (True =
    DRAM) whose live bytes stay within ``capacity`` at every moment (:func:`live`; without
    lifetimes, whose weights sum to at most it); ``order(cands)`` is the strategy's
    ranking (positions, most deserving of DRAM first). It never reads labels unless it is
    built from them (the oracle)."""

    name: str = ""

    @abstractmethod
    def order(self, cands: Sequence[Candidate]) -> list[int]: ...

    @abstractmethod
    def pick(self, cands: Sequence[Candidate], capacity: int) -> np.ndarray: ...

    def choose(self, grouped: pd.DataFrame, capacity: int) -> np.ndarray:
        """The mask over the planner's groups (``grouped``'s rows)."""
        return self.pick(group_candidates(grouped), capacity)

    def ranks(self, cands: Sequence[Candidate]) -> dict[int, int]:
        """1-based rank of each candidate id."""
        return {cands[i].id: r + 1 for r, i in enumerate(self.order(cands))}


class Greedy(Strategy):
    """Take candidates in :meth:`order` while they fit (skip misfits, or stop at the first)."""

    stop_at_first = False

    def pick(self, cands: Sequence[Candidate], capacity: int) -> np.ndarray:
        return planner.greedy(
            self.order(cands),
            _weights(cands),
            capacity,
            stop_at_first=self.stop_at_first,
            live=live(cands),
        )


class DensityGreedy(Greedy):
    name = "density-greedy"

    def order(self, cands: Sequence[Candidate]) -> list[int]:
        return sorted(
            range(len(cands)), key=lambda i: (-cands[i].accesses / max(cands[i].weight, 1), i)
        )


class SizeThreshold(Greedy):
    name = "size-threshold"
    stop_at_first = True

    def order(self, cands: Sequence[Candidate]) -> list[int]:
        return sorted(range(len(cands)), key=lambda i: (cands[i].weight, i))


class FirstTouch(Greedy):
    name = "first-touch"
    stop_at_first = True

    def order(self, cands: Sequence[Candidate]) -> list[int]:
        return sorted(range(len(cands)), key=lambda i: (cands[i].alloc_order, i))


class RandomFill(Greedy):
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def order(self, cands: Sequence[Candidate]) -> list[int]:
        import numpy as np  # lazy: heavy

        return [int(i) for i in np.random.default_rng(self.seed).permutation(len(cands))]


class Knapsack(Strategy):
    """0/1 knapsack on :meth:`values`; its ranking is value per byte. ``solver`` says how
    the last :meth:`pick` was solved (:class:`placer.placement.planner.Solution`)."""

    solver: str = ""

    @abstractmethod
    def values(self, cands: Sequence[Candidate]) -> list[float]: ...

    def order(self, cands: Sequence[Candidate]) -> list[int]:
        v = self.values(cands)
        return sorted(range(len(cands)), key=lambda i: (-v[i] / max(cands[i].weight, 1), i))

    def pick(self, cands: Sequence[Candidate], capacity: int) -> np.ndarray:
        import numpy as np  # lazy: heavy

        sol = planner.solve(
            np.array(self.values(cands), dtype=float), _weights(cands), capacity, live=live(cands)
        )
        self.solver = sol.solver
        return sol.take


class EcoHmemKnapsack(Knapsack):
    name = "ecohmem-knapsack"

    def values(self, cands: Sequence[Candidate]) -> list[float]:
        return [c.accesses for c in cands]


class ValueKnapsack(Knapsack):
    """Knapsack on per-object values (seconds or shares) summed per candidate."""

    def __init__(self, name: str, values: Mapping[int, float]) -> None:
        self.name = name
        self.per_object = values

    def values(self, cands: Sequence[Candidate]) -> list[float]:
        return [sum(self.per_object.get(o, 0.0) for o in c.members()) for c in cands]


def heuristics(seed: int = 0) -> list[Strategy]:
    """The label-free baselines, in report order."""
    return [DensityGreedy(), EcoHmemKnapsack(), SizeThreshold(), FirstTouch(), RandomFill(seed)]


BASELINE_NAMES = [s.name for s in heuristics()]
#: Strategies built from per-object values (labels or predictions) rather than signals.
VALUE_NAMES = ("oracle", "model")
NAMES = (*BASELINE_NAMES, *VALUE_NAMES)


def strategy(name: str, *, seed: int = 0, values: Mapping[int, float] | None = None) -> Strategy:
    """The strategy called ``name``; ``oracle`` and ``model`` need ``values`` (per object)."""
    if name in VALUE_NAMES:
        if values is None:
            raise InvalidInputError(f"strategy {name!r} needs per-object values")
        return ValueKnapsack(name, values)
    for s in heuristics(seed):
        if s.name == name:
            return s
    raise InvalidInputError(f"unknown strategy {name!r} (one of {', '.join(NAMES)})")
