"""The gain share and `placer evaluate --model`: a model scored as it is, never retrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.placement import evaluation, planner
from placer.placement.features import run_features
from placer.placement.labels import load_labels
from placer.placement.recommend import Nodes, recommend
from placer.placement.registry import default_files, resolve_model
from placer.store import Store
from tests.placement_store import make_corpus

MiB = 1 << 20


def _row(
    app: str, g: float, o: float, m: float, budget: int = 50, chunk: int | None = None
) -> dict[str, Any]:
    """A scored row as score_run writes it (only the fields the gain share reads)."""
    return {
        "app": app,
        "budget": budget,
        "chunk_bytes": chunk,
        "slowdown": {"model": m, "density-greedy": g, "oracle": o},
    }


# ------------------------------------------------------------------ arithmetic by hand
def test_gain_share_by_hand() -> None:
    rows = [
        _row("a", 1.20, 1.10, 1.13),  # captures 70% of a 0.10 room
        _row("a", 1.10, 1.00, 1.05, budget=30),  # 50%
        _row("a", 1.05, 1.05, 1.06),  # no choice (and the model loses 1/105 there)
        _row("b", 1.30, 1.10, 1.34, chunk=8 * MiB),  # -20%: model worse than greedy
        _row("b", 1.00, 1.01, 1.00),  # oracle above greedy: an approximate knapsack
    ]
    assert evaluation.row_gain_share(rows[0]) == pytest.approx(0.7)
    assert evaluation.row_gain_share(rows[2]) is None
    assert evaluation.row_gain_share(rows[4]) is None

    g = evaluation.gain_summary(rows)
    assert (g["rows_with_choice"], g["no_choice_rows"], g["oracle_above_greedy_rows"]) == (3, 1, 1)
    # share of summed gains, not the mean of the row shares
    assert g["share"] == pytest.approx((0.07 + 0.05 - 0.04) / (0.10 + 0.10 + 0.20), abs=1e-6)
    assert g["mean_degradation"]["oracle"] == pytest.approx((0.10 + 0.0 + 0.10) / 3, abs=1e-6)
    a, b = g["per_app"]["a"], g["per_app"]["b"]
    assert a["share"] == pytest.approx(0.6, abs=1e-6)
    assert a["by_budget"]["50"]["share"] == pytest.approx(0.7, abs=1e-6)
    assert a["by_budget"]["30"]["share"] == pytest.approx(0.5, abs=1e-6)
    assert a["model_over_greedy"] == pytest.approx((1.13 / 1.2 + 1.05 / 1.1) / 2 - 1, abs=1e-6)
    assert a["model_over_greedy_all_rows"] == pytest.approx(
        (1.13 / 1.2 + 1.05 / 1.1 + 1.06 / 1.05) / 3 - 1, abs=1e-6
    )
    assert b["share"] == pytest.approx(-0.2, abs=1e-6)
    assert b["model_over_greedy"] == pytest.approx(1.34 / 1.30 - 1, abs=1e-6)
    # b is 3.1% worse than density-greedy on its rows with a choice: the 2% goal fails
    assert g["worst_app"]["app"] == "b"
    assert g["goal"] == {
        "gain_share_at_least_70pct": False,
        "no_app_over_2pct_worse_than_density_greedy": False,
    }
    assert g["by_chunking"]["chunked"]["share"] == pytest.approx(-0.2, abs=1e-6)
    assert g["by_chunking"]["unchunked"]["share"] == pytest.approx(0.6, abs=1e-6)


def test_no_choice_anywhere_gives_no_share() -> None:
    g = evaluation.gain_summary([_row("a", 1.1, 1.1, 1.2), _row("a", 1.0, 1.0, 1.0)])
    assert g["share"] is None and g["rows_with_choice"] == 0 and g["no_choice_rows"] == 2
    assert g["worst_app"] is None
    assert g["goal"] == {
        "gain_share_at_least_70pct": None,
        "no_app_over_2pct_worse_than_density_greedy": None,
    }
    # what the model lost where there was nothing to gain is still reported
    assert g["worst_app_all_rows"] == {"app": "a", "model_over_greedy_all_rows": 0.045455}


room = st.tuples(
    st.floats(1.0, 3.0), st.floats(0.001, 1.0), st.floats(0.0, 1.0), st.sampled_from([30, 50, 70])
)


@settings(max_examples=80, deadline=None)
@given(st.lists(room, min_size=1, max_size=12))
def test_share_is_one_at_the_oracle_zero_at_greedy_and_between(parts: list[Any]) -> None:
    def rows(at: float) -> list[dict[str, Any]]:
        # model at `at` of the way from greedy to the oracle on every row
        return [_row("x", o + r, o, o + r - at * r, budget=b) for o, r, _, b in parts]

    assert evaluation.gain_share(rows(1.0))["share"] == pytest.approx(1.0, abs=1e-9)
    assert evaluation.gain_share(rows(0.0))["share"] == pytest.approx(0.0, abs=1e-9)
    mixed = [_row("x", o + r, o, o + r - t * r, budget=b) for o, r, t, b in parts]
    share = evaluation.gain_share(mixed)["share"]
    assert -1e-9 <= share <= 1 + 1e-9
    assert evaluation.gain_summary(mixed)["share"] == share


def test_evaluate_scores_the_plan_recommend_makes(tmp_path: Path) -> None:
    """The model's row is the labels' price of exactly the plan `placer recommend` makes."""
    url = f"sqlite:///{tmp_path / 'rec.db'}"
    make_corpus(url, apps=2, runs_per_app=2, n=10, seed=3)
    if default_files() is None:
        pytest.skip("no default model shipped in this checkout")
    store = Store(url)
    with store.session() as s:
        loaded = resolve_model(s, "default")
        data = evaluation.training_labels(s, "all", "optane")
        doc = evaluation.score_model(data, loaded.model, [50])
        for lab in load_labels(s):
            rec = recommend(s, lab.run_id, "50%", loaded, Nodes(0, 0), store_plan=False)
            grouped = planner.groups(run_features(s, lab.run_id))
            tiers = {(d["site"], d["chunk"]): d["tier"] for d in rec["plan"]["decisions"]}
            mask = np.array(
                [
                    tiers[(h, int(c))] == "dram"
                    for h, c in zip(grouped["site_hash"], grouped["chunk_index"], strict=True)
                ]
            )
            price = planner.plan_value(grouped, mask, lab.shares())
            row = next(r for r in doc["rows"] if r["run"] == lab.run_id)
            assert row["slowdown"]["model"] == pytest.approx(price, abs=1e-6)
    store.dispose()
