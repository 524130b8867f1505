"""The runs repository: what profiling writes and placement, the emulator and the CLI read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from placer.errors import NotFoundError
from placer.store import Store
from placer.store.repository import runs


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as st:
        st.upgrade()
        yield st


def _run(st: Store, app: str = "app", kind: str = "profile", build: str = "b1") -> int:
    with st.session() as s:
        run = runs.add_run(
            s,
            app,
            kind,
            command=["./prog"],
            cwd="/",
            binary_path="/prog",
            build_id=build,
            inputs={},
        )
        return run.id


def test_application_is_created_once(store: Store) -> None:
    with store.session() as s:
        first = runs.application(s, "app").id
        assert runs.application(s, "app").id == first
        assert runs.application_name(s, first) == "app"
        assert runs.application_name(s, first + 99) is None


def test_missing_run_is_one_line_not_found(store: Store) -> None:
    with store.session() as s:
        assert runs.find_run(s, 42) is None
        with pytest.raises(NotFoundError, match=r"run 42 is not in the store"):
            runs.require_run(s, 42)


def test_sites_objects_metrics_round_trip(store: Store) -> None:
    run_id = _run(store)
    rows = {"aa": {"language": "c", "frames": [["m", 1]], "symbolized": ["a.c:1"]}}
    with store.session() as s:
        ids = runs.get_or_create_sites(s, rows)
        # a second profile of the same program reuses the site
        assert runs.get_or_create_sites(s, rows) == ids
        assert runs.site_ids_by_hash(s, ["aa", "unknown"]) == ids
        obj = {"run_id": run_id, "site_id": ids["aa"], "address": 4096, "size_bytes": 8192}
        object_ids = runs.add_objects(
            s,
            [
                {**obj, "alloc_seq": seq, "alloc_ns": 100 - seq, "summary": {"n": seq}}
                for seq in range(3)
            ],
        )
        assert len(object_ids) == 3
        runs.add_object_metrics(
            s,
            [
                {"object_id": object_ids[0], "interval_index": i, "start_ns": i, "end_ns": i + 1}
                for i in (1, 0)
            ],
        )
    with store.session() as s:
        # ids come back in the order the rows were given
        assert [o.summary["n"] for o in runs.objects_of_run(s, run_id)] == [0, 1, 2]
        assert [o.id for o in runs.objects_of_run(s, run_id)] == object_ids
        assert [o.alloc_seq for o, _ in runs.objects_in_time_order(s, run_id)] == [2, 1, 0]
        assert {h for _, h in runs.objects_in_time_order(s, run_id)} == {"aa"}
        assert [site.site_hash for _, site in runs.objects_with_sites(s, run_id)] == ["aa"] * 3
        metrics = runs.metrics_by_object(s, run_id)
        assert [m.interval_index for m in metrics[object_ids[0]]] == [0, 1]
        assert [site.id for site in runs.sites_of_run(s, run_id)] == [ids["aa"]]
        assert set(runs.sites_by_id(s, [ids["aa"]])) == {ids["aa"]}
        assert runs.sites_by_id(s, []) == {}
        listing = runs.runs_with_object_counts(s)
        assert [(r.run.id, r.application, r.objects) for r in listing] == [(run_id, "app", 3)]
        assert runs.runs_with_object_counts(s, app="other") == []


def test_deep_stats_replace_and_signals_merge(store: Store) -> None:
    run_id = _run(store)
    with store.session() as s:
        site = runs.get_or_create_sites(s, {"bb": {"language": "c"}})["bb"]
        assert not runs.has_deep_stats(s, run_id)
        runs.add_deep_site_stats(s, run_id, {site: {"bytes_read": 10}})
    with store.session() as s:
        assert runs.has_deep_stats(s, run_id)
        runs.clear_deep_site_stats(s, run_id)
        runs.add_deep_site_stats(s, run_id, {site: {"bytes_read": 20}})
        run = runs.require_run(s, run_id)
        runs.merge_run_signals(run, {"deep": {"tool": "dhat"}})
        runs.merge_run_signals(run, {"shim": {}})
        runs.update_run_inputs(s, run_id, {"plain_runs": [1.0]})
    with store.session() as s:
        assert runs.deep_stats_by_site(s, run_id)[site].bytes_read == 20
        run = runs.require_run(s, run_id)
        assert run.signals == {"deep": {"tool": "dhat"}, "shim": {}}
        assert run.inputs == {"plain_runs": [1.0]}


def test_succeeded_runs_of_build_newest_first(store: Store) -> None:
    a, b, c = _run(store), _run(store), _run(store, build="other")
    d = _run(store)
    with store.session() as s:
        for run_id in (a, b, c):
            runs.require_run(s, run_id).status = "succeeded"
        got = [r.id for r in runs.succeeded_runs_of_build(s, "b1", besides=a)]
    assert got == [b]
    assert d not in got


def test_site_inserted_meanwhile_is_read_not_lost(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another profile stores the same site between our read and our insert."""
    with store.session() as s:
        theirs = runs.get_or_create_sites(s, {"cc": {"language": "c"}})["cc"]
    monkeypatch.setattr(runs, "site_ids_by_hash", lambda session, hashes: {})
    run_id = _run(store)
    with store.session() as s:
        ids = runs.get_or_create_sites(s, {"cc": {"language": "c"}, "dd": {"language": "c"}})
        assert ids["cc"] == theirs
        # the transaction goes on after the savepoint rolled back
        runs.add_objects(
            s,
            [
                {
                    "run_id": run_id,
                    "site_id": ids["dd"],
                    "alloc_seq": 0,
                    "address": 1,
                    "size_bytes": 1,
                    "alloc_ns": 0,
                }
            ],
        )
    with store.session() as s:
        assert len(runs.objects_of_run(s, run_id)) == 1
