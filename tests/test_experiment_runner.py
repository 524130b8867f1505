"""``placer experiment``: emulated labels, mode decision, budgets, nothing stored on errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.cli import main
from placer.errors import InvalidInputError
from placer.experiments.runner import decide_mode, median_spread
from placer.experiments.strategies import parse_budgets
from placer.tiers import detect_nodes
from tests import sysfs_trees
from tests.emulator_fixtures import build_store


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return url, build_store(url)


def _counts(url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from placer.store import Store
    from placer.store.models import Experiment, Label

    store = Store(url)
    with store.session() as s:
        n = (s.scalar(select(func.count(Experiment.id))), s.scalar(select(func.count(Label.id))))
    store.dispose()
    return n


def test_emulated_labels_are_marked_and_complete(
    toy: tuple[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import select

    from placer.store import Store
    from placer.store.models import Experiment, Label

    url, ids = toy
    code = main(
        [
            "--store",
            url,
            "--format",
            "json",
            "experiment",
            "--run",
            str(ids["native"]),
            "--emulate",
            "--reference-dram",
            "--budgets",
            "30,70",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "emulated" and doc["runs_labeled"] == 1
    summary = doc["experiments"][0]
    assert summary["object_labels"] == 3 and summary["plan_labels"] == 2 * 5

    store = Store(url)
    with store.session() as s:
        exp = s.scalars(select(Experiment)).one()
        assert exp.emulated is True and exp.host_id is not None
        assert exp.tier_spec_name == "optane"
        assert exp.tier_spec["constants"]["read_latency_random_ns"] == 305.0
        assert exp.tier_spec["host_dram"]["source"].startswith("reference")
        labels = s.scalars(select(Label).where(Label.experiment_id == exp.id)).all()
        assert labels and all(lab.emulated for lab in labels)
        objs = {lab.object_id: lab for lab in labels if lab.kind == "object"}
        assert set(objs) == set(ids["objects"].values())
        assert all(
            lab.runtime_seconds == pytest.approx(2.0 + lab.penalty_seconds) for lab in objs.values()
        )
        plans = [lab for lab in labels if lab.kind == "plan"]
        for budget in (0.3, 0.7):
            at = {
                lab.strategy: lab.runtime_seconds for lab in plans if lab.budget_fraction == budget
            }
            assert set(at) == {
                "density-greedy",
                "size-threshold",
                "first-touch",
                "random",
                "oracle",
            }
            assert at["oracle"] <= min(at.values()) + 1e-12
        # a bigger DRAM budget never makes the oracle's plan slower
        oracle = {
            lab.budget_fraction: lab.runtime_seconds for lab in plans if lab.strategy == "oracle"
        }
        assert oracle[0.7] <= oracle[0.3]
    store.dispose()


@pytest.mark.parametrize(
    "budgets,msg",
    [("0,50", "outside (0, 100]"), ("50,101", "outside (0, 100]"), ("fifty", "not a number")],
)
def test_bad_budget_stores_nothing(
    toy: tuple[str, dict], budgets: str, msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, ids = toy
    code = main(
        [
            "--store",
            url,
            "experiment",
            "--run",
            str(ids["native"]),
            "--emulate",
            "--reference-dram",
            "--budgets",
            budgets,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert _counts(url) == (0, 0)


def test_unknown_tier_and_missing_deep_store_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = build_store(url, with_deep=False)
    base = [
        "--store",
        url,
        "experiment",
        "--run",
        str(ids["native"]),
        "--emulate",
        "--reference-dram",
    ]
    assert main([*base, "--tier", "dram-ish"]) == 2
    assert "unknown tier" in capsys.readouterr().err
    assert main(base) == 2
    assert "no deep-mode data" in capsys.readouterr().err
    assert _counts(url) == (0, 0)


def test_mode_decision_on_recorded_topologies(tmp_path: Path) -> None:
    optane = detect_nodes(sysfs_trees.optane_kmem_dax(tmp_path / "optane"))
    mode = decide_mode(optane)
    slow = [n.node for n in optane if n.kind != "dram"]
    assert mode.kind == "measured" and mode.slow_node == slow[0]
    assert decide_mode(optane, force_emulate=True).kind == "emulated"

    dram = detect_nodes(sysfs_trees.two_socket_dram(tmp_path / "dram"))
    assert decide_mode(dram).kind == "emulated"
    # node 0 can be named to exercise the measured path on a one-node host
    here = detect_nodes("/")
    named = decide_mode(here, slow_node=0)
    assert named.kind == "measured" and named.slow_node == 0
    with pytest.raises(InvalidInputError, match="--slow-node 7"):
        decide_mode(here, slow_node=7)


def test_budget_parsing_and_repeats() -> None:
    assert parse_budgets("30, 50,70%") == [0.3, 0.5, 0.7]
    assert parse_budgets("100") == [1.0]
    assert median_spread([3.0, 1.0, 2.0, 10.0]) == (2.5, 9.0)
