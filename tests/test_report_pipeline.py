"""The pipeline and fleet reports' documents."""

from __future__ import annotations

import pytest

from placer.errors import NotFoundError
from placer.reports import build
from placer.reports.render import render
from tests.report_fixtures import open_store, seed_daemon, seed_pipeline


@pytest.fixture
def store(sqlite_url: str):  # type: ignore[no-untyped-def]
    st = open_store(sqlite_url)
    yield st
    st.dispose()


def test_stages_bottleneck_cpu_share_and_bound(store) -> None:  # type: ignore[no-untyped-def]
    pid = seed_pipeline(store)
    doc = build(store, "pipeline", pid)
    stages = doc["stages"]
    assert stages["available"] and stages["provenance"]["kind"] == "measured"
    hot = [r["name"] for r in stages["rows"] if r["bottleneck"]]
    assert hot == ["decode"]
    assert sum(r["cpu_share"] for r in stages["rows"]) == pytest.approx(1.0)
    decode = next(r for r in stages["rows"] if r["name"] == "decode")
    assert decode["cpu_share"] == max(r["cpu_share"] for r in stages["rows"])
    # Per-core rate in samples/s: batch size / CPU seconds per batch.
    assert decode["samples_per_core_second"] == pytest.approx(32 / 0.110)
    assert stages["upper_bound_samples_per_second"] == pytest.approx(402.0)
    assert [r["position"] for r in stages["rows"]] == list(range(6))


def test_tuning_history_from_optuna_best_so_far(store_url: str) -> None:
    st = open_store(store_url)
    try:
        pid = seed_pipeline(st)
        doc = build(st, "pipeline", pid)
    finally:
        st.dispose()
    tuning = doc["tuning"]
    assert tuning["source"] == "optuna"
    trials = tuning["trials"]
    assert [t["number"] for t in trials] == list(range(8))
    assert {t["state"] for t in trials} == {"complete", "pruned", "fail"}
    best = [t["best_so_far"] for t in trials]
    assert best == sorted(best)  # never decreases
    assert best[-1] == max(t["samples_per_second"] for t in trials if t["state"] == "complete")
    assert trials[0]["origin"] == "analysis"
    thr = doc["throughput"]
    assert thr["speedup"] == pytest.approx(371.0 / 196.0)
    assert thr["share_of_upper_bound"] == pytest.approx(371.0 / 402.0)
    html = render(doc, "html")
    assert "Tuning history" in html and "decode" in html


def test_tuning_history_falls_back_to_stored_trial_runs(store) -> None:  # type: ignore[no-untyped-def]
    pid = seed_pipeline(store, optuna_trials=False)
    tuning = build(store, "pipeline", pid)["tuning"]
    assert tuning["source"] == "store"
    assert len(tuning["trials"]) == 8
    assert tuning["trials"][-1]["best_so_far"] == 371.0


def test_untuned_pipeline_says_so(store) -> None:  # type: ignore[no-untyped-def]
    pid = seed_pipeline(store, study=False)
    doc = build(store, "pipeline", pid)
    assert doc["tuning"]["available"] is False
    assert "placer tune" in doc["tuning"]["note"]
    assert doc["stages"]["available"]
    assert "has not been tuned" in render(doc, "html")


def test_unknown_pipeline_is_a_not_found_error(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError, match="pipeline 7 not found"):
        build(store, "pipeline", 7)


def test_fleet_totals_and_knob_changes(store) -> None:  # type: ignore[no-untyped-def]
    seed_daemon(store)
    seed_pipeline(store)
    doc = build(store, "fleet")
    tot = doc["totals"]
    assert tot["jobs"] == 2 and tot["active_jobs"] == 1
    assert tot["decisions"] == 5  # three listed decisions + a count of two
    assert tot["bytes_migrated"] == 96 << 20
    assert tot["knob_changes"] == 2
    pipe_job = next(j for j in doc["jobs"]["rows"] if j["kind"] == "pipeline")
    assert pipe_job["knob_changes"][0] == {
        "knob": "num_workers",
        "old": 0,
        "new": 2,
        "at": "2026-11-21T14:03:00+00:00",
    }
    assert doc["studies"]["rows"][0]["speedup"] == pytest.approx(371.0 / 196.0)
    assert doc["plans"]["available"] is False


def test_empty_store_fleet_report_is_all_plain_notes(store) -> None:  # type: ignore[no-untyped-def]
    doc = build(store, "fleet")
    assert [doc[k]["available"] for k in ("jobs", "plans", "studies")] == [False] * 3
    html = render(doc, "html")
    assert "no daemon jobs in the store" in html
    assert "<svg" not in html


def test_pipeline_and_fleet_reports_open_with_a_verdict(store) -> None:  # type: ignore[no-untyped-def]
    """Issue 14, finding 4: what to do, the effect and its basis, the risk; numbers from the
    sections below."""
    pid = seed_pipeline(store)
    doc = build(store, "pipeline", pid)
    v, t = doc["verdict"], doc["throughput"]
    assert v["sentence"].startswith("Apply the tuned configuration (")
    assert v["basis"] == "measured" and v["samples_per_second"] == t["best_samples_per_second"]
    assert f"{t['speedup']:.2f}x" in v["sentence"] and "risk: " in v["sentence"]
    from placer.reports.render import md

    assert render(doc, "md").splitlines()[2] == f"**{md(v['sentence'])}**"
    from placer.reports.pipeline import PipelineReport

    untuned = PipelineReport(store, pid).verdict({**doc, "throughput": {"available": False}})
    assert "placer tune" in untuned["sentence"] and untuned["basis"] is None

    seed_daemon(store)
    fleet = build(store, "fleet")
    fv = fleet["verdict"]
    best = max(r["speedup"] for r in fleet["studies"]["rows"] if r["speedup"])
    assert fv["speedup"] == best and fv["basis"] == "measured"
    assert fv["sentence"] in render(fleet, "html")


def test_fleet_verdict_names_the_newest_unapplied_plan(sqlite_url: str) -> None:
    from tests.report_fixtures import seed_run

    st = open_store(sqlite_url)
    try:
        seed_run(st, applied=False)
        doc = build(st, "fleet")
    finally:
        st.dispose()
    row = next(r for r in doc["plans"]["rows"] if not r["applied"])
    v = doc["verdict"]
    assert v["plan_id"] == row["id"] and v["slowdown"] == row["predicted_slowdown"]
    assert v["basis"] == "predicted" and v["sentence"].startswith(f"Apply plan {row['id']} ")
