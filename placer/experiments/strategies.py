"""Candidate plans under a DRAM budget: which objects stay in DRAM, the rest go slow.

Each strategy ranks objects and fills the DRAM budget greedily in rank order (an object
that does not fit is skipped, smaller ones after it may still fit). The baselines use only
signals a production run has (sampled density, size, allocation order); ``oracle`` ranks by
the emulator's (or measurement's) penalty per byte, which is what the labels know.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from placer.emulator.model import ObjectTraffic
from placer.errors import InvalidInputError

STRATEGIES = ("density-greedy", "size-threshold", "first-touch", "random", "oracle")


@dataclass(frozen=True)
class Candidate:
    """One object as the strategies see it."""

    obj: ObjectTraffic
    alloc_order: int
    density: float  # sampled touched / sampled pages (0 when never sampled)
    penalty: float  # label-side knowledge, used by the oracle only


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


def _fill(order: Sequence[Candidate], budget_bytes: float) -> set[int]:
    dram: set[int] = set()
    used = 0
    for c in order:
        if used + c.obj.size_bytes <= budget_bytes:
            dram.add(c.obj.object_id)
            used += c.obj.size_bytes
    return dram


def rank(strategy: str, cands: Sequence[Candidate], seed: int = 0) -> list[Candidate]:
    """Objects in the order the strategy wants them in DRAM."""
    keys: dict[str, Callable[[Candidate], object]] = {
        "density-greedy": lambda c: (-c.density, c.obj.size_bytes, c.alloc_order),
        "size-threshold": lambda c: (c.obj.size_bytes, c.alloc_order),
        "first-touch": lambda c: (c.alloc_order,),
        "oracle": lambda c: (-c.penalty / max(c.obj.size_bytes, 1), c.alloc_order),
    }
    if strategy == "random":
        order = list(cands)
        random.Random(seed).shuffle(order)
        return order
    if strategy not in keys:
        raise InvalidInputError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
    return sorted(cands, key=keys[strategy])  # type: ignore[arg-type]


def slow_set(
    strategy: str, cands: Sequence[Candidate], budget_fraction: float, seed: int = 0
) -> set[int]:
    """Object ids the strategy sends to the slow tier under ``budget_fraction``."""
    footprint = sum(c.obj.size_bytes for c in cands)
    dram = _fill(rank(strategy, cands, seed), budget_fraction * footprint)
    return {c.obj.object_id for c in cands} - dram
