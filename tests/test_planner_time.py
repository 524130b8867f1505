"""Time-aware DRAM budgets: the per-moment knapsack, its exact and approximate solvers."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.placement import baselines, planner


def _table(objects: list[dict[str, Any]]) -> pd.DataFrame:
    """A feature table with what the planner reads; one site per object unless given."""
    rows = []
    for i, o in enumerate(objects):
        rows.append(
            {
                "object_id": i + 1,
                "site_hash": o.get("site", f"{i + 1:016x}"),
                "chunk_index": 0,
                "site_id": o.get("site_id", i + 1),
                "size_bytes": o["size"],
                "alloc_ns": o["alloc"],
                "end_ns": o["end"],
                "access_est": float(o.get("accesses", 1.0)),
                "miss_est": float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _usage(live: np.ndarray, take: np.ndarray) -> np.ndarray:
    return live @ take.astype(np.int64)


def _brute(values: np.ndarray, live: np.ndarray, cap: int) -> float:
    best = 0.0
    n = len(values)
    for k in range(n + 1):
        for sub in itertools.combinations(range(n), k):
            x = np.zeros(n, dtype=np.int64)
            x[list(sub)] = 1
            if (live @ x <= cap).all():
                best = max(best, float(values @ x))
    return best


def test_footprint_is_the_peak_live_not_the_sum_of_peaks() -> None:
    # a setup buffer freed before the main loop's arrays exist
    t = _table(
        [
            {"size": 100, "alloc": 0, "end": 10},
            {"size": 60, "alloc": 10, "end": 50},
            {"size": 30, "alloc": 20, "end": 40},
        ]
    )
    g = planner.groups(t)
    assert list(g["weight"]) == [100, 60, 30]
    assert planner.footprint(g) == 100  # not 190: the buffer is gone when the arrays live
    assert planner.parse_budget("50%", planner.footprint(g)) == (50, 0.5)
    # a site whose allocations never coexist weighs its peak, not its bytes
    same = _table(
        [
            {"size": 40, "alloc": 0, "end": 5, "site": "aa"},
            {"size": 40, "alloc": 5, "end": 9, "site": "aa"},
        ]
    )
    g = planner.groups(same)
    assert list(g["weight"]) == [40] and planner.footprint(g) == 40
    # a frame without lifetimes: every group alive at once
    assert planner.footprint(pd.DataFrame({"weight": [3, 4]})) == 7


def test_live_matrix_keeps_only_non_dominated_moments() -> None:
    items = [[(0, 10, 100)], [(10, 50, 60)], [(20, 40, 30)]]
    live = planner.live_matrix(items)
    rows = {tuple(r) for r in live}
    assert rows == {(100, 0, 0), (0, 60, 30)}  # (0, 60, 0) at t=10 is implied by t=20
    # zero-length lives still hold their bytes an instant
    assert planner.live_matrix([[planner.lifetime(5, 5, 8)]]).tolist() == [[8]]


def test_setup_object_never_displaces_the_main_loop() -> None:
    """An edge list (dead after the build) against CSR arrays the main loop reads."""
    # conflict: both alive during the build, they cannot fit together; CSR is worth more
    t = _table(
        [
            {"size": 50, "alloc": 0, "end": 10},  # edge list
            {"size": 20, "alloc": 5, "end": 100},  # CSR row_ptr
            {"size": 20, "alloc": 6, "end": 100},  # CSR col_idx
            {"size": 60, "alloc": 10, "end": 100},  # dist array of the main loop
        ]
    )
    g = planner.groups(t)
    total = planner.footprint(g)
    assert total == 100  # CSR + dist; the build peak is 90
    cap, _ = planner.parse_budget("50%", total)
    values = {1: 1.0, 2: 5.0, 3: 5.0, 4: 0.5}
    strat = baselines.ValueKnapsack("oracle", values)
    mask = strat.choose(g, cap)
    assert mask.tolist() == [False, True, True, False]
    assert strat.solver in ("dp", "milp")
    # no overlap: the CSR arrays are built after the edge list is freed; both fit in time,
    # which a single summed weight (50 + 40 > 50) would refuse
    t = _table(
        [
            {"size": 50, "alloc": 0, "end": 10},
            {"size": 20, "alloc": 10, "end": 100},
            {"size": 20, "alloc": 11, "end": 100},
            {"size": 60, "alloc": 12, "end": 100},
        ]
    )
    g = planner.groups(t)
    cap, _ = planner.parse_budget("50%", planner.footprint(g))
    assert cap == 50
    mask = strat.choose(g, cap)
    assert mask.tolist() == [True, True, True, False]
    live = planner.live(g)
    assert live is not None and (_usage(live, mask) <= cap).all()


def test_solver_flag_goes_into_the_plan_choice() -> None:
    # every group alive at once: one moment binds, the classic DP
    sol = planner.solve(np.array([3.0, 2.0, 1.0]), np.array([4, 3, 2]), 5)
    assert sol.solver == "dp" and sol.take.tolist() == [True, False, False]
    # two moments bind: the MILP
    live = np.array([[4, 3, 0], [0, 3, 4]])
    sol = planner.solve(np.array([3.0, 2.0, 3.0]), live.max(axis=0), 5, live=live)
    assert sol.solver == "milp" and sol.take.tolist() == [True, False, True]


lives = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 9)).map(
    lambda t: planner.lifetime(min(t[0], t[1]), max(t[0], t[1]), t[2])
)
item = st.lists(lives, min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(item, min_size=1, max_size=10),
    st.lists(st.integers(0, 20), min_size=10, max_size=10),
    st.floats(0.05, 1.0),
)
def test_milp_is_optimal_on_small_instances(
    items: list[list[tuple[int, int, int]]], raw: list[int], share: float
) -> None:
    live = planner.live_matrix(items)
    values = np.array(raw[: len(items)], dtype=float)
    total = int(live.sum(axis=1).max())
    cap = int(total * share)
    sol = planner.solve(values, live.max(axis=0), cap, live=live)
    assert (_usage(live, sol.take) <= cap).all()
    assert sol.solver in ("dp", "milp")
    assert float(values @ sol.take) == pytest.approx(_brute(values, live, cap), rel=1e-5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(item, min_size=1, max_size=14), st.floats(0.0, 1.0), st.integers(0, 3))
def test_every_strategy_is_feasible_at_every_moment(
    items: list[list[tuple[int, int, int]]], share: float, seed: int
) -> None:
    cands = [
        baselines.Candidate(
            id=i,
            weight=planner.live_peak(lts),
            alloc_order=min(a for a, _, _ in lts),
            accesses=float((i * 7 + seed) % 5),
            lifetimes=tuple(lts),
        )
        for i, lts in enumerate(items)
    ]
    live = planner.live_matrix(items)
    cap = int(baselines.footprint(cands) * share)
    values = {i: float((i * 3 + seed) % 4) for i in range(len(items))}
    strategies = [*baselines.heuristics(seed), baselines.ValueKnapsack("oracle", values)]
    for s in strategies:
        take = s.pick(cands, cap)
        assert (_usage(live, take) <= cap).all(), s.name


def test_large_problems_are_approximate_feasible_and_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(planner, "MILP_MAX_ITEMS", 3)
    rng = np.random.default_rng(1)
    items = [
        [planner.lifetime(int(a), int(a) + int(d), int(z))]
        for a, d, z in zip(
            rng.integers(0, 100, 30), rng.integers(1, 40, 30), rng.integers(1, 50, 30), strict=True
        )
    ]
    live = planner.live_matrix(items)
    assert len(live) > 1
    values = rng.random(30)
    cap = int(live.sum(axis=1).max() * 0.4)
    sol = planner.solve(values, live.max(axis=0), cap, live=live)
    assert sol.solver == "greedy-feasible"
    assert (_usage(live, sol.take) <= cap).all()
    assert sol.take.any()
    # the exact solve on the same problem is at least as good
    monkeypatch.setattr(planner, "MILP_MAX_ITEMS", 400)
    exact = planner.solve(values, live.max(axis=0), cap, live=live)
    assert exact.solver == "milp" and values @ exact.take >= values @ sol.take - 1e-9
