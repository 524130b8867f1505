"""The labels repository: experiments and labels, model versions, plans and applied plans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from placer.store import Store
from placer.store.models import AllocObject, Application, Run, Site
from placer.store.repository.labels import (
    NewDecision,
    NewLabel,
    add_experiment,
    add_labels,
    add_plan,
    add_trained_model,
    applied_plans,
    experiments_of_run,
    has_object_labels,
    labels_of_experiment,
    latest_model,
    latest_model_version,
    list_experiments,
    model_version,
    object_penalties,
    plans_of_run,
    runs_with_emulated_experiments,
)
from placer.store.repository.runs import site_ids_by_hash


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store(sqlite_url) as st:
        st.upgrade()
        yield st


def _run_with_object(store: Store) -> tuple[int, int, int]:
    """A profiled run of app ``bfs`` with one object at one site: (run, site, object) ids."""
    with store.session() as s:
        app = Application(name="bfs")
        s.add(app)
        s.flush()
        run = Run(application_id=app.id, kind="profile", build_id="b1")
        site = Site(site_hash="h1")
        s.add_all([run, site])
        s.flush()
        obj = AllocObject(
            run_id=run.id, site_id=site.id, alloc_seq=0, address=0, size_bytes=4096, alloc_ns=0
        )
        s.add(obj)
        s.flush()
        return run.id, site.id, obj.id


def _experiment(store: Store, run_id: int, *, emulated: bool) -> int:
    with store.session() as s:
        exp = add_experiment(
            s,
            run_id=run_id,
            host_id=None,
            emulated=emulated,
            tier_spec_name="optane",
            tier_spec={},
            repeats=1,
            baseline_seconds=2.0,
            params={},
        )
        return exp.id


def test_labels_take_the_experiments_kind_and_read_back(store: Store) -> None:
    run_id, site_id, obj_id = _run_with_object(store)
    empty = _experiment(store, run_id, emulated=False)
    exp_id = _experiment(store, run_id, emulated=True)
    with store.session() as s:
        exp = list_experiments(s, [run_id])[-1]
        add_labels(
            s,
            exp,
            [
                NewLabel("object", 2.5, 0.5, "alone", object_id=obj_id, site_id=site_id),
                NewLabel("plan", 2.1, 0.1, "random", budget_fraction=0.5),
            ],
        )
    with store.session() as s:
        assert [e.id for e in list_experiments(s)] == [empty, exp_id]
        assert list_experiments(s, [run_id + 1]) == []
        assert not has_object_labels(s, empty) and has_object_labels(s, exp_id)
        assert object_penalties(s, exp_id) == [(obj_id, 0.5, run_id)]
        labels = labels_of_experiment(s, exp_id)
        assert {(lab.kind, lab.emulated, lab.runtime_spread) for lab in labels} == {
            ("object", True, 0.0),
            ("plan", True, 0.0),
        }
        assert [e.id for e in experiments_of_run(s, run_id)] == [empty, exp_id]
        assert runs_with_emulated_experiments(s) == [(run_id, "bfs")]


def test_model_versions_count_up_per_name(store: Store) -> None:
    with store.session() as s:
        assert latest_model_version(s, ["m.ranker", "m.penalty"]) == 0
        assert latest_model(s, "m.penalty") is None
        for version in (1, 2):
            for kind in ("ranker", "penalty"):
                add_trained_model(
                    s, name=f"m.{kind}", version=version, kind=kind, model_text=kind, meta={}
                )
        assert latest_model_version(s, ["m.ranker", "m.penalty"]) == 2
        newest = latest_model(s, "m.penalty")
        assert newest is not None and newest.version == 2
        ranker = model_version(s, "m.ranker", 1)
        assert ranker is not None and ranker.kind == "ranker"
        assert model_version(s, "m.ranker", 3) is None


def test_plans_keep_their_decisions_and_applied_plans_find_their_source(store: Store) -> None:
    run_id, site_id, _ = _run_with_object(store)
    with store.session() as s:
        assert site_ids_by_hash(s, ["h1", "nope"]) == {"h1": site_id}
        assert site_ids_by_hash(s, []) == {}
        decision = NewDecision(site_id, 0, "slow", 1, 4096, 0.5, "test")
        plan = add_plan(
            s,
            run_id=run_id,
            model_id=None,
            strategy="model",
            build_id="b1",
            budget_bytes=0,
            predicted_slowdown=0.1,
            document={"run": run_id},
            decisions=[decision],
        )
        assert plan.achieved == {} and [d.tier for d in plan.decisions] == ["slow"]
        prun = Run(application_id=1, kind="plan", build_id="b1", inputs={"plan_run": run_id})
        other = Run(application_id=1, kind="plan", build_id="b1", inputs={"plan_run": 999})
        s.add_all([prun, other])
        s.flush()
        for r in (prun, other):
            add_plan(
                s,
                run_id=r.id,
                model_id=None,
                strategy="file",
                build_id="b1",
                budget_bytes=0,
                predicted_slowdown=None,
                document={},
                decisions=[],
                achieved={"pages_seen": 3},
            )
    with store.session() as s:
        assert [p.strategy for p in plans_of_run(s, run_id)] == ["model"]
        found = applied_plans(s, run_id, "b1")
        assert [(p.achieved, r.id) for p, r in found] == [({"pages_seen": 3}, prun.id)]
