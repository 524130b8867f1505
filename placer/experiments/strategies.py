"""Candidate plans of a labeling experiment: which objects go slow under a DRAM budget.

The strategies are the registry's (:mod:`placer.placement.baselines`, the same rules as
``placer recommend`` and ``placer evaluate``), applied per object (or chunk) of a profiled
run: the baselines use only signals a production run has (sampled density, size,
allocation order); ``oracle`` is the knapsack on the emulator's (or measurement's)
per-object penalties, which is what the labels know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from placer.emulator.model import RunProfile
from placer.errors import InvalidInputError
from placer.placement.baselines import Candidate, footprint, strategy

#: The plans every experiment labels per budget (``ExperimentRequest.strategies``).
STRATEGIES = ("density-greedy", "size-threshold", "first-touch", "random", "oracle")


def parse_budgets(text: str) -> list[float]:
    """``30,50,70`` (percent of the footprint) → [0.3, 0.5, 0.7]; 0 or >100 refused."""
    out: list[float] = []
    for part in str(text).split(","):
        part = part.strip().rstrip("%")
        try:
            value = float(part)
        except ValueError:
            raise InvalidInputError(
                f"budget {part!r} is not a number (e.g. --budgets 30,50,70)"
            ) from None
        if not 0 < value <= 100:
            raise InvalidInputError(
                f"budget {part}% is outside (0, 100]: a DRAM budget is a share of the footprint"
            )
        out.append(value / 100.0)
    if not out:
        raise InvalidInputError("no budget given")
    return sorted(set(out))


def candidates(profile: RunProfile) -> list[Candidate]:
    """The run's objects in allocation (id) order; accesses = sampled density x bytes.

    The emulator's profile has no perf-mem misses, so touched pages are the signal.
    """
    out = []
    for i, o in enumerate(sorted(profile.objects, key=lambda o: o.object_id)):
        active = [d for d in o.density_series if d is not None]
        density = sum(active) / len(active) if active else 0.0
        out.append(
            Candidate(
                id=o.object_id, weight=o.size_bytes, alloc_order=i, accesses=density * o.size_bytes
            )
        )
    return out


def slow_set(
    name: str,
    cands: Sequence[Candidate],
    budget_fraction: float,
    *,
    seed: int = 0,
    penalties: Mapping[int, float] | None = None,
) -> set[int]:
    """Object ids strategy ``name`` sends to the slow tier under ``budget_fraction``.

    ``penalties`` (per object id) are the oracle's values; the baselines never see them.
    """
    strat = strategy(name, seed=seed, values=penalties)
    dram = strat.pick(cands, int(budget_fraction * footprint(cands)))
    return {c.id for c, keep in zip(cands, dram, strict=True) if not keep}
