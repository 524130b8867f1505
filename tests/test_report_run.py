"""The run (placement) report's document: what people read off the figures and tables."""

from __future__ import annotations

import pytest

from placer.errors import NotFoundError
from placer.reports import build
from placer.reports.render import render
from tests.report_fixtures import BASE_S, finite_everywhere, open_store, seed_run


@pytest.fixture
def store(sqlite_url: str):  # type: ignore[no-untyped-def]
    st = open_store(sqlite_url)
    yield st
    st.dispose()


def _series(doc: dict, name: str) -> dict[float, float]:
    s = next(x for x in doc["budget_curve"]["series"] if x["strategy"] == name)
    return {p["budget_fraction"]: p["slowdown"] for p in s["points"]}


def test_budget_curve_oracle_bounds_every_strategy_and_full_budget_costs_nothing(
    store_url: str,
) -> None:
    st = open_store(store_url)
    try:
        run_id = seed_run(st)
        doc = build(st, "run", run_id)
    finally:
        st.dispose()
    curve = doc["budget_curve"]
    assert curve["available"]
    assert curve["provenance"]["kind"] == "emulated"
    assert curve["provenance"]["tier_spec"] == "optane"
    names = {s["strategy"] for s in curve["series"]}
    assert {
        "density-greedy",
        "ecohmem-knapsack",
        "size-threshold",
        "first-touch",
        "random",
        "oracle",
    } <= names
    oracle = _series(doc, "oracle")
    # The oracle bounds every strategy priced by the same labels; "model-predicted" is the
    # model's own forecast for its plan, drawn beside them, and may promise less.
    priced = {s["strategy"] for s in curve["series"] if s["priced_by"] == "labels"}
    assert {"model", "density-greedy", "random"} <= priced
    for name in priced - {"oracle"}:
        for b, v in _series(doc, name).items():
            assert oracle[b] <= v + 1e-9, (name, b)
    for name in names:
        assert _series(doc, name)[1.0] == pytest.approx(1.0)
    # With nothing in DRAM every object pays its penalty: 10% budget is the worst point.
    assert max(oracle.values()) == oracle[0.1] > 1.0
    assert finite_everywhere(doc)


def test_object_table_ranks_sizes_and_heatmap(store) -> None:  # type: ignore[no-untyped-def]
    run_id = seed_run(store)
    doc = build(store, "run", run_id)
    table = doc["objects"]
    assert table["total"] == 10  # 7 sites, one split into 4 chunks
    assert table["footprint_bytes"] == sum(r["size_bytes"] for r in table["rows"])
    for name in ("density-greedy", "size-threshold", "first-touch", "random", "oracle"):
        ranks = sorted(r["ranks"][name] for r in table["rows"])
        assert ranks == list(range(1, 11)), name
    # With a placement model the table reads in the model's order (most critical first),
    # and says so; the density order stays available as the density-greedy rank.
    assert table["sorted_by"] == "model"
    assert [r["ranks"]["model"] for r in table["rows"]] == list(range(1, 11))
    by_density = sorted(table["rows"], key=lambda r: r["ranks"]["density-greedy"])
    dens = [r["density"] for r in by_density]
    assert dens == sorted(dens, reverse=True)
    # Site shown as file:line relative to the run's directory; the chain is kept.
    shorts = {r["site"]["short"]: r["site"] for r in table["rows"]}
    assert shorts["src/pr.cc:41"]["chain"][0] == "/home/u/gap/src/pr.cc:41"
    assert shorts["src/builder.h:120"]["chain"][0] == "/home/u/gap/src/builder.h:120"
    # The heaviest penalty (chunk 1 of the CSR neighbours) is the oracle's first choice
    # per byte among the big chunks; the hot 8 MiB arrays come first overall.
    oracle_first = min(table["rows"], key=lambda r: r["ranks"]["oracle"])
    assert oracle_first["site"]["short"] == "src/pr.cc:41"
    heat = doc["heatmap"]
    assert heat["available"] and heat["provenance"]["kind"] == "measured"
    assert len(heat["rows"]) == 10
    assert heat["time_s"] == sorted(heat["time_s"])
    # The edge list is freed at 0.6 s: no density after that.
    edge = next(r for r in heat["rows"] if r["short"] == "src/builder.h:120")
    cut = sum(1 for t in heat["time_s"][1:] if t <= 0.6)
    assert all(v is None for v in edge["values"][cut + 1 :])
    assert any(v for v in edge["values"][:cut])


def test_chosen_plan_priced_with_labels_and_what_was_achieved(store) -> None:  # type: ignore[no-untyped-def]
    run_id = seed_run(store)
    doc = build(store, "run", run_id)
    plan = doc["plan"]
    assert plan["available"] and plan["strategy"] == "model"
    assert plan["predicted_slowdown"] == pytest.approx(1.061)
    assert plan["budget_fraction"] == pytest.approx(0.5)
    # Priced by hand: base + penalties of the objects the plan sends to the slow tier.
    pen = {r["id"]: r["penalty_s"] for r in doc["objects"]["rows"]}
    slow = {(d["site"]["id"], d["chunk_index"]) for d in plan["decisions"] if d["tier"] == "slow"}
    lost = sum(
        pen[r["id"]] for r in doc["objects"]["rows"] if (r["site"]["id"], r["chunk_index"]) in slow
    )
    assert plan["label_priced_slowdown"] == pytest.approx((BASE_S + lost) / BASE_S)
    assert plan["label_provenance"]["kind"] == "emulated"
    assert plan["dram_bytes"] <= plan["budget_bytes"]
    applied = plan["applied"]
    assert len(applied) == 1
    assert applied[0]["share_on_planned_node"] == 1.0
    assert applied[0]["binds_ok"] == 7 and applied[0]["binds_failed"] == 0
    assert applied[0]["provenance"]["kind"] == "measured"
    assert "no slow tier" in applied[0]["note"]


def test_plan_labels_are_drawn_as_their_own_series(store) -> None:  # type: ignore[no-untyped-def]
    run_id = seed_run(store, plan_labels=True)
    doc = build(store, "run", run_id)
    lab = [s for s in doc["budget_curve"]["series"] if s["priced_by"] == "plan-labels"]
    assert len(lab) == 1 and "emulated" in lab[0]["label"]
    assert [p["budget_fraction"] for p in lab[0]["points"]] == [0.3, 0.5, 0.7]
    assert lab[0]["points"][0]["slowdown"] == pytest.approx((BASE_S + 0.9) / BASE_S)


def test_absent_data_is_said_plainly(store) -> None:  # type: ignore[no-untyped-def]
    run_id = seed_run(store, labels=False, plan=False)
    doc = build(store, "run", run_id)
    assert doc["plan"]["available"] is False
    assert "placer recommend" in doc["plan"]["note"]
    curve = doc["budget_curve"]
    assert not any(s["strategy"] == "oracle" for s in curve.get("series", []))
    assert "oracle" not in doc["objects"]["baselines"]
    html = render(doc, "html")
    assert "no plan is stored for this run" in html
    md = render(doc, "md")
    assert "no plan is stored for this run" in md


def test_unknown_run_is_a_not_found_error(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError, match="run 42 not found"):
        build(store, "run", 42)


def test_curve_without_the_placement_package_uses_the_objects(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from placer.reports.run import RunReport

    monkeypatch.setattr(RunReport, "_placement_view", staticmethod(lambda s, run_id: None))
    run_id = seed_run(store)
    doc = build(store, "run", run_id)
    curve = doc["budget_curve"]
    assert curve["grouping"].startswith("objects")
    oracle = _series(doc, "oracle")
    for s in curve["series"]:
        pts = {p["budget_fraction"]: p["slowdown"] for p in s["points"]}
        assert pts[1.0] == pytest.approx(1.0)
        assert all(oracle[b] <= v + 1e-9 for b, v in pts.items()), s["strategy"]


def test_knapsack_is_exact_on_small_instances() -> None:
    import itertools
    import random

    import numpy as np

    from placer.placement.planner import knapsack

    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(1, 8)
        values = [rng.uniform(0, 5) for _ in range(n)]
        weights = [rng.randint(1, 50) for _ in range(n)]
        cap = rng.randint(0, 120)
        best = max(
            sum(values[i] for i in c)
            for k in range(n + 1)
            for c in itertools.combinations(range(n), k)
            if sum(weights[i] for i in c) <= cap
        )
        got = list(np.flatnonzero(knapsack(np.array(values), np.array(weights), cap)))
        assert sum(weights[i] for i in got) <= cap
        assert sum(values[i] for i in got) == pytest.approx(best, rel=1e-6, abs=1e-9)


def test_report_opens_with_a_verdict_whose_number_is_the_plan_rows(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14, finding 4: the headline said the model's +17.0% while the plan priced with
    labels was +4.3%. The verdict, the KPI and the plan's row now quote one number."""
    from placer.reports.render import slow

    run_id = seed_run(store)
    doc = build(store, "run", run_id)
    plan, v = doc["plan"], doc["verdict"]
    assert plan["label_priced_slowdown"] != pytest.approx(plan["predicted_slowdown"])
    assert v["slowdown"] == plan["headline_slowdown"] == plan["label_priced_slowdown"]
    assert v["basis"] == plan["headline_basis"] == "emulated"
    star = next(p for p in doc["budget_curve"]["stored_plans"] if p["plan_id"] == plan["id"])
    assert star["slowdown"] == v["slowdown"]  # the plan's point on the (emulated) curve
    assert v["sentence"].startswith(f"Apply plan {plan['id']} ")
    assert f"expected {slow(v['slowdown'])} runtime over all-DRAM (emulated)" in v["sentence"]
    assert "risk: " in v["sentence"] and slow(plan["predicted_slowdown"]) in v["risk"]
    html = render(doc, "html")
    assert html.index(v["sentence"][:40]) < html.index('id="budget"')
    kpi = html[html.index("expected slowdown (emulated)") - 200 :][:400]
    assert slow(plan["label_priced_slowdown"]) in kpi
    md = render(doc, "md").splitlines()
    assert md[2].startswith("**Apply plan")
    other = open_store(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        bare = build(other, "run", seed_run(other, labels=False, plan=False))["verdict"]
    finally:
        other.dispose()
    assert "placer recommend" in bare["sentence"] and bare["basis"] is None
