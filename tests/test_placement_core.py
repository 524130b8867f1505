"""Placement core: features (honesty rule), knapsack, baselines, model persistence, LOAO."""

from __future__ import annotations

import inspect
import itertools
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from placer.act import bind
from placer.collectors.profile import pyrunner
from placer.errors import InvalidInputError
from placer.placement import baselines, evaluation, features, planfile, planner
from placer.placement.labels import load_labels
from placer.placement.model import PlacementModel
from placer.store import Store
from tests.placement_store import make_corpus

DATA = Path(__file__).parent / "data" / "placement"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[int]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('pl') / 'c.db'}"
    return url, make_corpus(url, apps=4, runs_per_app=2, n=14, seed=3)


@pytest.fixture(scope="module")
def dataset(corpus: tuple[str, list[int]]) -> evaluation.Dataset:
    store = Store(corpus[0])
    with store.session() as s:
        data = evaluation.build_dataset(s, load_labels(s, "all", "optane"))
    store.dispose()
    return data


def test_features_never_read_deep_mode_counts() -> None:
    src = inspect.getsource(features)
    body = src.split("FORBIDDEN_SOURCES = ", 1)[1].split("\n", 1)[1]
    for name in features.FORBIDDEN_SOURCES:
        assert name not in body, f"features.py reads {name}"


def test_run_features_are_scale_free_shares(dataset: evaluation.Dataset) -> None:
    for t in dataset.tables.values():
        assert t["size_share"].sum() == pytest.approx(1.0)
        assert t["access_share"].sum() == pytest.approx(1.0)
        assert t["density_mean"].between(0, 1).all()
        assert (t["density_peak"] >= t["density_mean"] - 1e-12).all()
        assert t["llc_miss_share"].isna().all()  # no perf mem in these runs: NaN, not 0
        assert list(features.matrix(t).columns) == list(features.FEATURES)


def test_knapsack_matches_brute_force_and_respects_capacity() -> None:
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(1, 9)
        w = np.array([rng.randint(1, 50) * 4096 for _ in range(n)])
        v = np.array([rng.random() for _ in range(n)])
        cap = int(w.sum() * rng.uniform(0.1, 0.9))
        take = planner.knapsack(v, w, cap)
        assert w[take].sum() <= cap
        best = max(
            (
                sum(v[list(c)])
                for k in range(n + 1)
                for c in itertools.combinations(range(n), k)
                if w[list(c)].sum() <= cap
            ),
            default=0.0,
        )
        assert v[take].sum() == pytest.approx(best, rel=1e-9)


def _grouped(sizes: list[int], access: list[float], t: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "site_hash": [f"{i:016x}" for i in range(len(sizes))],
            "chunk_index": 0,
            "site_id": range(len(sizes)),
            "objects": [[i] for i in range(len(sizes))],
            "weight": sizes,
            "first_alloc_ns": t,
            "access_est": access,
            "miss_est": [float("nan")] * len(sizes),
        }
    )


def test_baselines_follow_their_published_rules() -> None:
    g = _grouped([10, 40, 20, 30], [5.0, 40.0, 30.0, 3.0], [3, 0, 1, 2])
    cap = 50
    pick = {s.name: list(np.flatnonzero(s.choose(g, cap))) for s in baselines.heuristics()}
    assert pick["density-greedy"] == [0, 2]  # 0.5 and 1.5/byte first, 40 B no longer fits
    assert pick["ecohmem-knapsack"] == [0, 1]  # 45 accesses in 50 B beats 35
    assert pick["size-threshold"] == [0, 2]  # threshold 20 B: 10 + 20 fit, 30 would not
    assert pick["first-touch"] == [1]  # allocation order 1, 2: 40 + 20 > 50, stop
    for s in baselines.heuristics():
        assert g["weight"].to_numpy()[s.choose(g, cap)].sum() <= cap


def test_peak_live_counts_coexisting_allocations_only() -> None:
    assert planner.peak_live([0, 10, 20], [10, 20, 30], [5, 5, 5]) == 5
    assert planner.peak_live([0, 5], [10, 15], [5, 7]) == 12


def test_budget_parsing() -> None:
    assert planner.parse_budget("50%", 1000) == (500, 0.5)
    assert planner.parse_budget("1KiB", 4096) == (1024, 0.25)
    with pytest.raises(InvalidInputError, match="larger than the run's footprint"):
        planner.parse_budget("8GiB", 4096)
    with pytest.raises(InvalidInputError, match="between 0% and 100%"):
        planner.parse_budget("150%", 4096)


def test_model_text_roundtrip_predicts_the_same(dataset: evaluation.Dataset) -> None:
    model = evaluation.fit(dataset, {"n_estimators": 30})
    ranker, penalty, meta = model.to_texts()
    assert ranker.startswith("tree") and penalty.startswith("tree")
    again = PlacementModel.from_texts(ranker, penalty, meta)
    t = dataset.table
    np.testing.assert_allclose(again.predict_penalty(t), model.predict_penalty(t))
    np.testing.assert_allclose(again.rank_scores(t), model.rank_scores(t))
    assert meta["versions"]["lightgbm"] and meta["features"] == list(features.FEATURES)
    with pytest.raises(InvalidInputError):
        PlacementModel.from_texts(ranker, penalty, {"format": "pickle"})


def test_a_model_trained_with_the_retired_access_per_byte_still_runs(
    dataset: evaluation.Dataset,
) -> None:
    """``access_per_byte`` equalled ``density_mean`` and was dropped; a model trained with it
    (stored, or the default model shipped before) reads it from ``density_mean``."""
    t = dataset.table
    assert "access_per_byte" not in features.FEATURES and "access_per_byte" not in t
    names = list(features.FEATURES)
    old = [*names[:6], "access_per_byte", *names[6:]]
    model = evaluation.fit(dataset, {"n_estimators": 20, "features": old})
    again = PlacementModel.from_texts(*model.to_texts())
    with_col = t.assign(access_per_byte=t["density_mean"])
    np.testing.assert_allclose(again.rank_scores(t), model.rank_scores(with_col))
    # a feature this version never computed: one line that says what to do, on loading
    with pytest.raises(InvalidInputError, match="feature 'nope' is not one.*retrain"):
        PlacementModel.from_texts(*model.to_texts()[:2], {**model.meta_, "features": ["nope"]})
    # boosters trained on other columns than the feature list says: refused, not mispredicted
    with pytest.raises(InvalidInputError, match="do not match its feature list.*retrain"):
        PlacementModel.from_texts(*model.to_texts()[:2], {**model.meta_, "features": names})


def test_leave_one_application_out_beats_blind_baselines(dataset: evaluation.Dataset) -> None:
    res = evaluation.evaluate(dataset, [30, 50, 70], {"n_estimators": 60})
    mean = res["summary"]["mean_degradation"]
    assert set(res["apps"]) == {"app0", "app1", "app2", "app3"}
    for name, value in mean.items():
        assert mean["oracle"] <= value + 1e-12, name
    assert mean["model"] < mean["random"] and mean["model"] < mean["first-touch"]
    assert res["summary"]["ndcg@5"] > 0.7
    # more DRAM never hurts the oracle
    by_b = res["summary"]["mean_degradation_by_budget"]
    assert by_b["30"]["oracle"] >= by_b["50"]["oracle"] >= by_b["70"]["oracle"]


def test_feature_study_reports_every_set(dataset: evaluation.Dataset) -> None:
    sets = {"density_mean": ["density_mean"], "set:all": list(features.FEATURES)}
    rows = evaluation.feature_study(dataset, [50], sets, {"n_estimators": 20})
    assert [r["set"] for r in rows] == ["density_mean", "set:all"]
    assert min(r["difference_to_best"] for r in rows) == 0.0


def _plan_doc() -> dict:
    return {
        "format": "placer-plan",
        "version": 1,
        "build_id": "ab",
        "budget": {"bytes": 10, "fraction": 0.5, "footprint_bytes": 20},
        "nodes": {"dram": 0, "slow": 1, "default_tier": "dram"},
        "decisions": [
            {"site": "00000000000000aa", "chunk": 0, "tier": "dram", "node": 0, "size_bytes": 8},
            {"site": "00000000000000aa", "chunk": 1, "tier": "slow", "node": 1, "size_bytes": 4},
            {
                "site": "py-0123",
                "native_site": "00000000000000bb",
                "chunk": 0,
                "tier": "slow",
                "node": 1,
            },
        ],
    }


def test_plan_schema_and_shim_lines() -> None:
    doc = planfile.validate(_plan_doc())
    assert sorted(planfile.shim_lines(doc)) == ["0x00000000000000aa 0", "0x00000000000000bb 1"]
    assert planfile.split_sites(doc) == ["00000000000000aa"]
    for breakage, msg in [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["decisions"][0].update(tier="ssd"), "decisions/0/tier"),
        (lambda d: d["decisions"][0].pop("node"), "decisions/0"),
        (lambda d: d["decisions"].append(dict(d["decisions"][0])), "planned twice"),
    ]:
        d = _plan_doc()
        breakage(d)
        with pytest.raises(InvalidInputError, match=msg):
            planfile.validate(d)


def test_plan_without_build_id_is_refused_unless_forced() -> None:
    doc = planfile.validate(_plan_doc())
    assert planfile.check_build_id(doc, "ab", force=False) is False
    assert planfile.check_build_id(doc, "ab", force=True) is False  # nothing was forced
    with pytest.raises(InvalidInputError, match="another binary.*--force"):
        planfile.check_build_id(doc, "cd", force=False)
    assert planfile.check_build_id(doc, "cd", force=True) is True
    for empty in ("", None):
        d = _plan_doc()
        d["build_id"] = empty
        with pytest.raises(InvalidInputError, match="has no build id.*--force"):
            planfile.check_build_id(d, "cd", force=False)
        with pytest.raises(InvalidInputError, match="has no build id"):
            planfile.check_build_id(d, "", force=False)  # two empty ids prove nothing
        assert planfile.check_build_id(d, "cd", force=True) is True
    d = _plan_doc()
    d.pop("build_id")
    with pytest.raises(InvalidInputError, match="build_id"):  # missing: a schema error
        planfile.validate(d)


def test_numa_maps_attribution_on_recorded_output() -> None:
    text = (DATA / "numa_maps_two_nodes.txt").read_text()
    vmas = bind.parse_numa_maps(text)
    assert vmas[1].policy == "bind:1" and vmas[1].pages == {1: 512}
    ends = {v.start: v.start + 4096 * 512 for v in vmas}
    snap = bind.Snapshot(time_ns=50, vmas=vmas)

    class R:  # log records as placer.collectors.shim.log returns them
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)

    allocs = [
        R(seq=1, time_ns=10, address=0x7F0000200000, size=2 << 20, site_hash=0xAA),
        R(seq=2, time_ns=10, address=0x7F0000400000, size=2 << 20, site_hash=0xBB),
    ]
    binds = [R(seq=1, node=1, errno=0), R(seq=2, node=0, errno=0)]
    got = bind.achieved(
        allocs, binds, [], [(snap, ends)], {0xAA: "aa", 0xBB: "bb"}, {"aa": 1, "bb": 0}
    )
    assert got["sites"]["aa"]["pages"] == {"1": 512}
    assert got["sites"]["aa"]["share_on_planned_node"] == 1.0
    assert got["sites"]["bb"]["pages"] == {"0": 300, "1": 212}
    assert got["share_on_planned_node"] == pytest.approx((512 + 300) / 1024)


def test_shipped_default_model_loads_and_predicts(
    dataset: evaluation.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from placer.placement import registry

    monkeypatch.delenv(registry.DIR_ENV, raising=False)
    files = registry.default_files()
    assert files is not None, (
        "placer/placement/default/ is missing: python -m placer.placement.default_model"
    )
    model = PlacementModel.from_texts(files["ranker"], files["penalty"], files["meta"])
    pred = model.predict_penalty(dataset.table)
    assert len(pred) == len(dataset.table) and (pred >= 0).all()
    assert files["meta"]["training"]["runs"] > 0 and files["meta"]["label_source"]


def test_select_params_picks_the_candidate_whose_plans_degrade_least(
    dataset: evaluation.Dataset,
) -> None:
    # a model on chunk_position alone (0 for every object here) predicts one constant:
    # its plans are as blind as a random fill, so selection must prefer the real features
    cands = {
        "blind": {"features": ["chunk_position"], "n_estimators": 20},
        "all": {"n_estimators": 20},
    }
    name, params, inner = evaluation.select_params(dataset, [30, 70], cands)
    assert name == "all" and params == cands["all"]
    assert inner["all"] is not None and inner["blind"] is not None
    assert inner["all"] < inner["blind"]
    # nothing to hold out with one application: the first candidate, unscored
    one = dataset.subset({"app0"})
    assert evaluation.select_params(one, [50], cands) == (
        "blind",
        cands["blind"],
        {"blind": None, "all": None},
    )


def test_nested_selection_never_sees_the_held_out_application(
    dataset: evaluation.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    real = evaluation.select_params

    def spy(data: evaluation.Dataset, budgets: list[int], candidates: dict) -> tuple:
        seen.append(data.apps())
        return real(data, budgets, candidates)

    monkeypatch.setattr(evaluation, "select_params", spy)
    cands = {"a": {"n_estimators": 10}, "b": {"n_estimators": 10, "num_leaves": 4}}
    res = evaluation.evaluate(dataset, [50], candidates=cands)
    apps = res["apps"]
    assert sorted(res["selection"]) == apps
    assert seen == [[a for a in apps if a != held] for held in apps]
    for sel in res["selection"].values():
        assert sel["chosen"] in cands and set(sel["inner_degradation"]) == set(cands)
    assert "selection" not in evaluation.evaluate(dataset, [50], {"n_estimators": 10})


def test_summary_bounds_the_goal_by_the_oracle(dataset: evaluation.Dataset) -> None:
    s = evaluation.evaluate(dataset, [30, 50, 70], {"n_estimators": 30})["summary"]
    # no plan beats the knapsack on the labels themselves
    assert s["oracle_vs_density_greedy"] >= s["model_vs_density_greedy"] - 1e-9
    assert s["model_over_oracle_degradation"] >= -1e-9
    deg = s["mean_degradation"]
    assert s["model_over_oracle_degradation"] == pytest.approx(
        deg["model"] / deg["oracle"] - 1, abs=1e-5
    )
    assert s["goal"]["within_5pct_of_oracle_degradation"] == (deg["model"] <= 1.05 * deg["oracle"])
    assert s["goal"]["degradation_20pct_below_density_greedy"] == (
        deg["model"] <= 0.8 * deg["density-greedy"]
    )


def test_coarse_knapsack_cells_never_exceed_the_budget() -> None:
    rng = random.Random(11)
    for _ in range(30):
        n = rng.randint(2, 12)
        w = np.array([rng.randint(1, 10_000) * 8 + rng.randint(0, 7) for _ in range(n)])
        v = np.array([rng.random() for _ in range(n)])
        cap = int(w.sum() * rng.uniform(0.2, 0.8))
        exact = planner.knapsack(v, w, cap)
        coarse = planner.knapsack(v, w, cap, resolution=50, cells=100)
        assert w[coarse].sum() <= cap and w[exact].sum() <= cap
        assert v[coarse].sum() <= v[exact].sum() + 1e-12


def test_shim_lines_bind_split_sites_per_chunk() -> None:
    doc = _plan_doc()
    doc["decisions"].append({"site": "00000000000000cc", "chunk": 1, "tier": "slow", "node": 1})
    doc["decisions"].append({"site": "00000000000000cc", "chunk": 0, "tier": "slow", "node": 1})
    doc["chunk_bytes"] = 4096
    doc = planfile.validate(doc)
    assert planfile.shim_lines(doc) == [  # split: one line per chunk, in chunk order
        "0x00000000000000aa 0 0 4096",
        "0x00000000000000aa 1 1 4096",
        "0x00000000000000bb 1",
        "0x00000000000000cc 1",
    ]  # not split: whole
    assert planfile.collapsed_sites(doc) == []
    assert planfile.shim_lines(doc, chunk_bytes=1 << 20)[1] == "0x00000000000000aa 1 1 1048576"
    site_of, planned, chunks = planfile.parse_shim_lines(planfile.shim_lines(doc))
    assert site_of[0xAA] == "00000000000000aa" and planned["00000000000000bb"] == 1
    assert chunks == {"00000000000000aa": {0: 0, 1: 1}} and planned["00000000000000aa"] == 0
    doc.pop("chunk_bytes")  # chunk size unknown: bound whole, and said so
    assert planfile.shim_lines(doc)[0] == "0x00000000000000aa 0"
    assert planfile.collapsed_sites(doc) == ["00000000000000aa"]
    doc["chunk_bytes"] = -1
    with pytest.raises(InvalidInputError, match="chunk_bytes"):
        planfile.validate(doc)


def test_native_site_shared_by_python_sites_on_different_tiers_is_not_bound() -> None:
    """numpy allocates every array through one native site: the shim must not bind it to
    one node for a hot and a cold Python object; the Python runner binds them one by one."""
    doc = _plan_doc()
    dd = {"native_site": "00000000000000dd", "chunk": 0}
    doc["decisions"] += [
        {"site": "py-0d01", "tier": "dram", "node": 0, "size_bytes": 1 << 20, **dd},
        {"site": "py-0d02", "tier": "slow", "node": 1, "size_bytes": 1 << 30, **dd},
        {"site": "py-0d03", "tier": "slow", "node": 1, "size_bytes": 1 << 30, **dd},
    ]
    doc = planfile.validate(doc)
    lines = planfile.shim_lines(doc)
    assert not any(line.startswith("0x00000000000000dd") for line in lines)
    assert "0x00000000000000bb 1" in lines  # one Python site alone: bound by the shim
    assert planfile.unbound_native_sites(doc) == ["00000000000000dd"]
    assert planfile.python_native_sites(doc) == ["00000000000000bb"]
    # the Python runner binds every Python site; the shim keeps the native-only sites
    assert planfile.shim_lines(doc, python_side=True) == ["0x00000000000000aa 0"]
    assert planfile.python_bindings(doc) == {
        "sites": {"py-0123": 1, "py-0d01": 0, "py-0d02": 1, "py-0d03": 1},
        "chunk_bytes": 0,
    }
    # a Python site split across nodes is bound per chunk when the chunk size is known
    doc["decisions"].append({"site": "py-0123", "chunk": 1, "tier": "dram", "node": 0})
    assert planfile.python_bindings(doc, chunk_bytes=4096)["sites"]["py-0123"] == {
        "0": 1,
        "1": 0,
    }
    # a native site's own decision disagreeing with a Python site's: not bound either
    doc = planfile.validate(_plan_doc())
    doc["decisions"].append(
        {"site": "00000000000000bb", "chunk": 0, "tier": "dram", "node": 0, "size_bytes": 9}
    )
    assert planfile.shim_lines(doc) == ["0x00000000000000aa 0"]


def test_python_runner_cuts_bind_ranges_like_the_shim() -> None:
    binder = pyrunner.Binder.__new__(pyrunner.Binder)
    binder.page, binder.chunk_bytes = 4096, 8192
    assert binder.ranges(4096 + 16, 3 * 4096, 0) == [(8192, 4 * 4096, 0, None)]
    assert binder.ranges(0, 20000, {"0": 1, "1": 0, "9": 1}) == [
        (0, 8192, 1, 0),
        (8192, 16384, 0, 1),
    ]


def test_numa_maps_attribution_per_chunk() -> None:
    """A split site's pages are counted per bound chunk range, against each chunk's node."""
    base = 0x7F0000200000
    vmas = [
        bind.Vma(base, "bind:0", {0: 256}),
        bind.Vma(base + (1 << 20), "bind:1", {1: 200, 0: 56}),
        bind.Vma(base + (2 << 20), "default", {0: 512}),
    ]
    ends = {
        base: base + (1 << 20),
        base + (1 << 20): base + (2 << 20),
        base + (2 << 20): base + (4 << 20),
    }
    snap = bind.Snapshot(time_ns=50, vmas=vmas)

    class R:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)

    allocs = [R(seq=1, time_ns=10, address=base, size=4 << 20, site_hash=0xAA)]
    binds = [
        R(seq=1, node=0, errno=0, chunk=0, start=base, length=1 << 20),
        R(seq=1, node=1, errno=0, chunk=1, start=base + (1 << 20), length=1 << 20),
    ]
    got = bind.achieved(
        allocs, binds, [], [(snap, ends)], {0xAA: "aa"}, {"aa": 0}, {"aa": {0: 0, 1: 1}}
    )
    site = got["sites"]["aa"]
    assert site["binds_ok"] == 2 and site["allocations"] == 1
    assert site["chunks"]["0"]["pages"] == {"0": 256}
    assert site["chunks"]["1"]["pages"] == {"1": 200, "0": 56}
    assert site["chunks"]["1"]["share_on_planned_node"] == pytest.approx(200 / 256)
    assert site["pages"] == {"0": 312, "1": 200}  # the unbound chunks 2-3 are not counted
    assert got["pages_on_planned_node"] == 456 and got["pages_seen"] == 512


def test_one_registry_rules_per_object_and_per_group() -> None:
    """Experiments and reports rank objects with the same registry the planner's groups use:
    one object per group gives the same picks and ranks either way; the oracle is the
    planner's knapsack on per-object values."""
    g = _grouped([10, 40, 20, 30], [5.0, 40.0, 30.0, 3.0], [3, 0, 1, 2])
    objs = [
        baselines.Candidate(id=i, weight=w, alloc_order=t, accesses=a)
        for i, (w, t, a) in enumerate(
            zip([10, 40, 20, 30], [3, 0, 1, 2], [5.0, 40.0, 30.0, 3.0], strict=True)
        )
    ]
    assert baselines.group_candidates(g) == [
        baselines.Candidate(c.id, c.weight, c.alloc_order, c.accesses, (c.id,)) for c in objs
    ]
    for s in baselines.heuristics(seed=3):
        assert list(s.choose(g, 50)) == list(s.pick(objs, 50)), s.name
        assert sorted(s.ranks(objs).values()) == [1, 2, 3, 4]
    oracle = baselines.strategy("oracle", values={0: 1.0, 1: 5.0, 2: 4.0, 3: 0.5})
    assert list(np.flatnonzero(oracle.pick(objs, 50))) == [0, 1]  # 6.0 in 50 B beats 5.0
    assert oracle.ranks(objs)[2] == 1  # 0.2 per byte: the best value density
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        baselines.strategy("lru")
    with pytest.raises(InvalidInputError, match="needs per-object values"):
        baselines.strategy("oracle")


def test_first_line_of_text_or_exception() -> None:
    from placer.errors import first_line

    assert first_line("\n  perf: not permitted \nmore") == "perf: not permitted"
    assert first_line(ValueError("\nbad value\nline 2")) == "bad value"
    assert first_line("") == ""
