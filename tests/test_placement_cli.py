"""`placer train | evaluate | recommend | run` as a user runs them, bad input included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from placer.act import bind
from placer.collectors.profile.pysites import python_site_hash
from placer.collectors.profile.session import prepare
from placer.placement import evaluation
from placer.placement.planfile import shim_lines
from placer.placement.registry import DEFAULT_DIR, default_files
from placer.store import Store
from placer.store.models import Plan, PlanDecision, Run, TrainedModel
from tests.placement_store import make_corpus

REPO = Path(__file__).resolve().parent.parent


def _count(url: str, model: type) -> int:
    store = Store(url)
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(model))
    store.dispose()
    return int(n or 0)


@pytest.fixture
def labeled(tmp_path: Path) -> tuple[str, list[int]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    return url, make_corpus(url, apps=3, runs_per_app=2, n=10, seed=5)


@pytest.fixture
def no_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    empty = tmp_path / "no-default-model"
    empty.mkdir()
    monkeypatch.setenv("PLACER_DEFAULT_MODEL_DIR", str(empty))
    return {"PLACER_DEFAULT_MODEL_DIR": str(empty)}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``placer ARGS`` in this process (the console script's own ``main``): fast, same path."""
    from placer.cli import main

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PLACER_STORE", raising=False)

    def run(*args: str, check: bool = False, env: object = None) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"placer {' '.join(args)} exited {code}: {err}")
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def test_train_recommend_evaluate(cli, labeled, tmp_path: Path, no_default) -> None:  # type: ignore[no-untyped-def]
    url, runs = labeled
    out = cli("--store", url, "train", "--format", "json", check=True, env=no_default)
    doc = json.loads(out.stdout)
    assert doc["model"]["version"] == "placement@1"
    assert doc["training"]["runs"] == 6 and doc["training"]["label_sources"] == ["emulated"]
    assert _count(url, TrainedModel) == 2  # ranker + penalty, text only

    plan_path = tmp_path / "plan.json"
    out = cli(
        "--store",
        url,
        "recommend",
        str(runs[0]),
        "--dram-budget",
        "40%",
        "-o",
        str(plan_path),
        "--format",
        "json",
        check=True,
        env=no_default,
    )
    doc = json.loads(out.stdout)
    plan = json.loads(plan_path.read_text())
    assert plan == doc["plan"]
    budget = plan["budget"]
    dram = sum(d["size_bytes"] for d in plan["decisions"] if d["tier"] == "dram")
    assert 0 < dram <= budget["bytes"] == int(0.4 * budget["footprint_bytes"])
    assert plan["model"]["version"] == "placement@1" and plan["build_id"]
    assert set(doc["predicted_slowdown"]) >= {"model", "density-greedy", "first-touch"}
    assert doc["predicted_slowdown"]["model"] <= doc["predicted_slowdown"]["random"] + 1e-9
    assert doc["ranked"][0]["rank"] == 1
    store = Store(url)
    with store.session() as s:
        row = s.get(Plan, doc["plan_id"])
        assert row.predicted_slowdown == pytest.approx(plan["predicted_slowdown"], rel=1e-5)
        assert len(row.decisions) == len(plan["decisions"])
    store.dispose()

    out = cli(
        "--store",
        url,
        "evaluate",
        "--budgets",
        "30,70",
        "--format",
        "json",
        check=True,
        env=no_default,
    )
    ev = json.loads(out.stdout)
    assert {r["budget"] for r in ev["rows"]} == {30, 70}
    assert len(ev["rows"]) == 2 * len(runs)
    assert set(ev["summary"]["mean_degradation"]) >= {
        "model",
        "oracle",
        "density-greedy",
        "ecohmem-knapsack",
        "size-threshold",
        "first-touch",
        "random",
    }


def test_no_model_yet_is_a_clear_error(cli, labeled, no_default) -> None:  # type: ignore[no-untyped-def]
    url, runs = labeled
    r = cli("--store", url, "recommend", str(runs[0]), "--dram-budget", "50%", env=no_default)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no placement model" in r.stderr
    assert _count(url, Plan) == 0


def test_bad_recommend_inputs_store_nothing(cli, labeled, no_default) -> None:  # type: ignore[no-untyped-def]
    url, runs = labeled
    cli("--store", url, "train", check=True, env=no_default)
    store = Store(url)
    with store.session() as s:  # a run whose profile found no objects
        empty = Run(application_id=1, kind="profile", status="succeeded", wall_seconds=1.0)
        s.add(empty)
        s.flush()
        empty_id = empty.id
    store.dispose()
    cases = [
        ([str(runs[0]), "--dram-budget", "64GiB"], "larger than the run's footprint"),
        ([str(runs[0]), "--dram-budget", "120%"], "between 0% and 100%"),
        ([str(empty_id), "--dram-budget", "50%"], "has no objects"),
        (["99999", "--dram-budget", "50%"], "not in the store"),
    ]
    for argv, msg in cases:
        r = cli("--store", url, "recommend", *argv, env=no_default)
        assert r.returncode == 2, r.stderr
        assert msg in r.stderr and r.stderr.count("\n") == 1
    assert _count(url, Plan) == 0 and _count(url, PlanDecision) == 0


def test_train_without_labels_fails_cleanly(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    r = cli("--store", url, "train")
    assert r.returncode == 2 and "no labeled runs" in r.stderr
    assert _count(url, TrainedModel) == 0


def _plan_for(build_id: str) -> dict:
    return {
        "format": "placer-plan",
        "version": 1,
        "build_id": build_id,
        "app": "true",
        "budget": {"bytes": 0, "fraction": 0.0, "footprint_bytes": 1},
        "nodes": {"dram": 0, "slow": 0, "default_tier": "dram"},
        "decisions": [
            {"site": "0123456789abcdef", "chunk": 0, "tier": "slow", "node": 0, "size_bytes": 1}
        ],
    }


def test_run_refuses_bad_plans(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'run.db'}"
    true = shutil.which("true")
    assert true
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "placer-plan", "version": 1, "decisions": [}')
    r = cli("--store", url, "run", "--plan", str(bad), "--", true)
    assert r.returncode == 2 and "is not JSON" in r.stderr
    bad.write_text(json.dumps({**_plan_for("ab"), "nodes": {"dram": 0}}))
    r = cli("--store", url, "run", "--plan", str(bad), "--", true)
    assert r.returncode == 2 and "not a valid placer plan" in r.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_plan_for("deadbeef" * 5)))
    r = cli("--store", url, "run", "--plan", str(other), "--", true)
    assert r.returncode == 2 and "for another binary" in r.stderr and "--force" in r.stderr
    assert r.stderr.count("\n") == 1
    blank = tmp_path / "blank.json"
    blank.write_text(json.dumps(_plan_for("")))
    r = cli("--store", url, "run", "--plan", str(blank), "--", true)
    assert r.returncode == 2 and "has no build id" in r.stderr and "--force" in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "run.db").exists() or _count(url, Run) == 0


@pytest.mark.slow
def test_run_binds_planned_sites_on_node0(cli, labeled, tmp_path: Path, no_default) -> None:  # type: ignore[no-untyped-def]
    """Profile a real program, plan it, run it with the plan: the shim mbinds, numa_maps
    shows the pages on the planned node (node 0: this host's only node)."""
    if subprocess.run(["make", "-s", "-C", str(REPO / "examples")]).returncode != 0:
        pytest.skip("cannot build the examples")
    url, _ = labeled
    # about 0.4 s: numa_maps is sampled while it runs
    prog = [str(REPO / "examples" / "bin" / "seqread"), "-m", "32M", "-i", "600"]
    cli("--store", url, "train", check=True, env=no_default)
    cli("--store", url, "profile", "--name", "seqread", "--no-perf", "--", *prog, check=True)
    store = Store(url)
    with store.session() as s:
        rid = s.scalar(select(func.max(Run.id)).where(Run.kind == "profile"))
    store.dispose()
    plan_path = tmp_path / "seq.json"
    cli(
        "--store",
        url,
        "recommend",
        str(rid),
        "--dram-budget",
        "100%",
        "-o",
        str(plan_path),
        "--dram-node",
        "0",
        "--slow-node",
        "0",
        check=True,
        env=no_default,
    )
    out = cli(
        "--store",
        url,
        "run",
        "--plan",
        str(plan_path),
        "--format",
        "json",
        "--",
        *prog,
        check=True,
        env=no_default,
    )
    doc = json.loads(out.stdout[out.stdout.index("{\n") :])  # after any program output
    sites = doc["achieved"]["sites"]
    assert sites, doc
    assert sum(v["binds_ok"] for v in sites.values()) >= 1
    assert doc["achieved"]["pages_seen"] > 0
    assert doc["achieved"]["share_on_planned_node"] == 1.0
    store = Store(url)
    with store.session() as s:
        plan = s.scalars(select(Plan).where(Plan.run_id == doc["run"])).one()
        assert plan.achieved["pages_on_planned_node"] == doc["achieved"]["pages_on_planned_node"]
        assert s.get(Run, doc["run"]).kind == "plan"
    store.dispose()


THREE = REPO / "tests" / "data" / "placement" / "three_arrays.py"


def _line(marker: str) -> int:
    lines = THREE.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.rstrip().endswith(marker))


@pytest.mark.slow
def test_run_binds_python_objects_of_one_native_site_one_by_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Three numpy arrays from three lines of one helper share numpy's native site; a plan
    puts two of them on node 0 by their Python sites: the Python runner binds those two
    (``bind:0`` in numa_maps), the third keeps the default policy, and the shim binds
    nothing (its one line would have bound all three)."""
    report = tmp_path / "arrays.json"
    cmd = [sys.executable, str(THREE), str(report)]
    # the premise: one native site for all three (seen through the same Python runner)
    first = bind.run_with_plan(
        cmd,
        [],
        quiet=True,
        python=bind.PythonPlan(cmd[0], cmd[1:], {"sites": {}, "chunk_bytes": 0}),
    )
    assert first.exit_code == 0
    arrays = json.loads(report.read_text())
    native = {
        k: f"{a.site_hash & 0xFFFFFFFFFFFFFFFF:016x}"
        for log in first.logs
        for a in log.allocs
        for k, v in arrays.items()
        if a.address <= v["addr"] < a.address + a.size
    }
    assert set(native) == {"a", "b", "c"} and len(set(native.values())) == 1, native
    shared = native["a"]
    outer = [(str(THREE), _line("# call")), (str(THREE), _line("main()"))]
    py = {k: python_site_hash([(str(THREE), _line(f"# array {k}")), *outer]) for k in "abc"}
    plan = {
        **_plan_for(prepare(cmd, None).build_id),
        "app": "three_arrays.py",
        "decisions": [
            {"site": py[k], "native_site": shared, "chunk": 0, "tier": "dram", "node": 0}
            for k in "ab"
        ],
    }
    assert shim_lines(plan) == [f"0x{shared} 0"]  # the shim alone would bind c too
    plan_path = tmp_path / "three.json"
    plan_path.write_text(json.dumps(plan))
    report.unlink()
    out = cli(
        "--store",
        f"sqlite:///{tmp_path / 'py.db'}",
        "run",
        "--plan",
        str(plan_path),
        "--format",
        "json",
        "--",
        *cmd,
        "--wait-bound",
        check=True,
    )
    assert "2 Python sites bound by the Python runner" in out.stderr
    got = json.loads(report.read_text())
    assert got["a"]["policy"] == "bind:0" and got["b"]["policy"] == "bind:0", got
    assert got["c"]["policy"] == "default", got
    a = json.loads(out.stdout[out.stdout.index("{\n") :])["achieved"]
    assert a["shim_lines"] == 0 and a["native_sites_left_to_python"] == [shared]
    assert set(a["sites"]) == {py["a"], py["b"]}  # no native site bound by the shim
    for k in "ab":
        site = a["sites"][py[k]]
        assert site["by"] == "python" and site["binds_ok"] == 1 and site["binds_failed"] == 0
        assert site["policies"] == ["bind:0"] and site["share_on_planned_node"] == 1.0


def test_train_chooses_settings_by_leave_one_application_out(cli, labeled, no_default) -> None:  # type: ignore[no-untyped-def]
    from placer.placement.evaluation import CANDIDATES

    url, _ = labeled
    doc = json.loads(cli("--store", url, "train", "--format", "json", check=True).stdout)
    sel = doc["selection"]
    assert sel["chosen"] in CANDIDATES and set(sel["inner_degradation"]) == set(CANDIDATES)
    best = min(v for v in sel["inner_degradation"].values() if v is not None)
    assert sel["inner_degradation"][sel["chosen"]] == best
    store = Store(url)
    with store.session() as s:  # what was chosen is what was trained and stored
        row = s.scalars(select(TrainedModel).where(TrainedModel.kind == "penalty")).one()
        for key, value in CANDIDATES[sel["chosen"]].items():
            assert row.meta["params"][key] == value
        assert row.meta["selection"]["chosen"] == sel["chosen"]
    store.dispose()
    doc = json.loads(
        cli("--store", url, "train", "--no-select", "--format", "json", check=True).stdout
    )
    assert doc["selection"] == {"chosen": next(iter(CANDIDATES)), "inner_degradation": {}}


@pytest.mark.slow
def test_run_applies_a_plan_for_another_binary_only_with_force(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'force.db'}"
    true = shutil.which("true")
    assert true
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_plan_for("deadbeef" * 5)))
    r = cli("--store", url, "run", "--plan", str(other), "--", true)
    assert r.returncode == 2 and "--force" in r.stderr
    assert not (tmp_path / "force.db").exists() or _count(url, Run) == 0
    r = cli("--store", url, "run", "--plan", str(other), "--force", "--format", "json", "--", true)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout[r.stdout.index("{\n") :])
    assert doc["achieved"]["forced"] is True and doc["exit_code"] == 0
    assert _count(url, Run) == 1 and _count(url, Plan) == 1


@pytest.mark.slow
def test_plan_of_a_chunked_profile_carries_its_chunk_size(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run profiled with --chunk gives plans that say the chunk size, so the shim can
    bind a split array chunk by chunk wherever the plan is taken."""
    if subprocess.run(["make", "-s", "-C", str(REPO / "examples")]).returncode != 0:
        pytest.skip("cannot build the examples")
    url = f"sqlite:///{tmp_path / 'chunks.db'}"
    prog = [str(REPO / "examples" / "bin" / "seqread"), "-m", "32M", "-i", "20"]
    cli(
        "--store",
        url,
        "profile",
        "--name",
        "seqread",
        "--chunk",
        "8MiB",
        "--no-perf",
        "--",
        *prog,
        check=True,
    )
    plan_path = tmp_path / "chunked.json"
    cli("--store", url, "recommend", "1", "--dram-budget", "50%", "-o", str(plan_path), check=True)
    plan = json.loads(plan_path.read_text())
    assert plan["chunk_bytes"] == 8 * 2**20
    assert sorted(d["chunk"] for d in plan["decisions"]) == [0, 1, 2, 3]


# ------------------------------------------------ evaluate --model: a model scored as it is
def test_evaluate_default_model_scores_without_training(cli, labeled) -> None:  # type: ignore[no-untyped-def]
    url, runs = labeled
    if default_files() is None:
        pytest.skip("no default model shipped in this checkout")
    out = cli("--store", url, "evaluate", "--model", "default", "--format", "json", check=True)
    doc = json.loads(out.stdout)
    assert _count(url, TrainedModel) == 0  # nothing trained, nothing stored
    assert _count(url, Plan) == 0
    assert doc["mode"] == "model" and doc["model"]["source"] == "default"
    assert doc["model"]["version"].startswith("default@")
    assert doc["apps"] == ["app0", "app1", "app2"] and doc["budgets"] == [30, 50, 70]
    assert len(doc["rows"]) == 3 * len(runs)
    for r in doc["rows"]:
        assert {"chunk_bytes", "room", "gain_share", "slowdown"} <= set(r)
        assert r["chunk_bytes"] is None
        assert r["room"] == pytest.approx(
            r["slowdown"]["density-greedy"] - r["slowdown"]["oracle"], abs=2e-6
        )
        share = evaluation.row_gain_share(r)
        assert r["gain_share"] == (None if share is None else pytest.approx(share, abs=1e-6))
    g = doc["summary"]["gain_share"]
    assert set(g["per_app"]) == {"app0", "app1", "app2"}
    assert set(g["by_budget"]) == {"30", "50", "70"}
    assert set(g["goal"]) == {
        "gain_share_at_least_70pct",
        "no_app_over_2pct_worse_than_density_greedy",
    }
    assert g["rows_with_choice"] + g["no_choice_rows"] + g["oracle_above_greedy_rows"] == len(
        doc["rows"]
    )
    # the existing fields stay
    assert {"mean_degradation", "model_vs_density_greedy", "goal", "ndcg@5"} <= set(doc["summary"])
    assert doc["in_training"] == []  # the shipped model never saw app0..app2

    text = cli("--store", url, "evaluate", "--model", "default", "--apps", "app1", check=True)
    assert "gain share" in text.stdout and "app0" not in text.stdout


def test_evaluate_a_stored_model_by_id(cli, labeled, no_default) -> None:  # type: ignore[no-untyped-def]
    url, runs = labeled
    trained = json.loads(
        cli("--store", url, "train", "--no-select", "--format", "json", check=True).stdout
    )
    mid = trained["model"]["id"]
    for ref in (str(mid), "placement@1"):
        out = cli(
            "--store",
            url,
            "evaluate",
            "--model",
            ref,
            "--budgets",
            "50",
            "--format",
            "json",
            check=True,
        )
        doc = json.loads(out.stdout)
        assert doc["model"]["version"] == "placement@1" and doc["model"]["id"] == mid
        assert doc["in_training"] == ["app0", "app1", "app2"]  # in-sample, and said so
        assert {r["budget"] for r in doc["rows"]} == {50}
    assert _count(url, TrainedModel) == 2  # still just the pair `train` stored


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--model", "999"], "no stored model with id 999"),
        (["--model", "latest"], "give default, a stored model id"),
        (["--model", "placement@7"], "model placement@7 is not in this store"),
        (["--model", "default", "--apps", "nope"], "--apps: no labeled runs of nope"),
        (["--model", "default", "--no-select"], "--model scores a trained model as it is"),
    ],
)
def test_evaluate_model_bad_input(cli, labeled, argv: list[str], msg: str) -> None:  # type: ignore[no-untyped-def]
    url, _ = labeled
    if default_files() is None and "default" in argv:
        pytest.skip("no default model shipped in this checkout")
    r = cli("--store", url, "evaluate", *argv)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and r.stderr.count("\n") == 1
    assert _count(url, TrainedModel) == 0


def test_evaluate_model_without_labels_or_with_a_mismatched_model(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    if default_files() is None:
        pytest.skip("no default model shipped in this checkout")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(empty).upgrade()
    r = cli("--store", empty, "evaluate", "--model", "default")
    assert r.returncode == 2 and "no labeled runs" in r.stderr and r.stderr.count("\n") == 1

    from importlib import resources

    src = Path(str(resources.files(DEFAULT_DIR[0]).joinpath(DEFAULT_DIR[1])))
    url = f"sqlite:///{tmp_path / 'mm.db'}"
    make_corpus(url, apps=2, runs_per_app=1, n=6, seed=1)
    for case, edit in [
        ("fewer", lambda f: f[:5]),  # the boosters were trained on more columns
        ("unknown", lambda f: [*f[:-1], "cache_color"]),  # a feature this version lacks
    ]:
        bad = tmp_path / case
        shutil.copytree(src, bad)
        meta = json.loads((bad / "meta.json").read_text())
        meta["features"] = edit(meta["features"])
        (bad / "meta.json").write_text(json.dumps(meta))
        monkeypatch.setenv("PLACER_DEFAULT_MODEL_DIR", str(bad))
        r = cli("--store", url, "evaluate", "--model", "default")
        assert r.returncode == 2, r.stderr
        assert "feature" in r.stderr and "retrain" in r.stderr and r.stderr.count("\n") == 1


def test_chunked_runs_are_marked_and_summarized_apart(cli, labeled) -> None:  # type: ignore[no-untyped-def]
    url, runs = labeled
    if default_files() is None:
        pytest.skip("no default model shipped in this checkout")
    store = Store(url)
    with store.session() as s:  # as `placer profile --chunk 8MiB` records it
        for rid in runs[::2]:
            run = s.get(Run, rid)
            assert run is not None
            run.inputs = {"chunk_bytes": 8 * 2**20}
    store.dispose()
    doc = json.loads(
        cli("--store", url, "evaluate", "--model", "default", "--format", "json", check=True).stdout
    )
    chunked = {r["run"] for r in doc["rows"] if r["chunk_bytes"] == 8 * 2**20}
    assert chunked == set(runs[::2])
    assert {lab["run"] for lab in doc["labels"] if lab["chunk_bytes"]} == chunked
    by = doc["summary"]["gain_share"]["by_chunking"]
    assert set(by) == {"chunked", "unchunked"}
    n = {
        k: v["rows_with_choice"] + v["no_choice_rows"] + v["oracle_above_greedy_rows"]
        for k, v in by.items()
    }
    assert n == {"chunked": 3 * len(chunked), "unchunked": 3 * (len(runs) - len(chunked))}
    text = cli("--store", url, "evaluate", "--model", "default", check=True).stdout
    assert "8MiB" in text
