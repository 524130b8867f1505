"""The measured path: plans bound through the shim, for real on node 0 and on a fake topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from placer.experiments.measure import PlanRun, parse_numa_maps
from placer.experiments.runner import ExperimentRequest, decide_mode, measured_labels
from placer.tiers import detect_nodes
from tests import sysfs_trees
from tests.emulator_fixtures import SITES, build_store

NUMA_MAPS = """\
55d0c0a00000 default file=/work/bin/seqread mapped=2 N0=2 kernelpagesize_kB=4
7f2a40000000 bind:0 anon=32770 dirty=32770 active=0 N0=32770 kernelpagesize_kB=4
7f2a80000000 bind:2 anon=100 dirty=100 N2=100 kernelpagesize_kB=4
"""


def test_numa_maps_parsing() -> None:
    ranges = parse_numa_maps(NUMA_MAPS)
    assert [(r.policy, r.pages) for r in ranges] == [
        ("default", {0: 2}),
        ("bind:0", {0: 32770}),
        ("bind:2", {2: 100}),
    ]
    assert ranges[1].start == 0x7F2A40000000


def test_measured_labels_on_a_two_tier_topology(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision and bookkeeping on a recorded Optane host; the program runs are stubbed.

    A real second node is impossible here, so each run's time is a function of the sites
    bound to the slow node (table: +1.0 s, stream: +0.4 s, small: +0.0 s).
    """
    from sqlalchemy import select

    from placer.store import Store
    from placer.store.models import Experiment, Label

    mode = decide_mode(detect_nodes(sysfs_trees.optane_kmem_dax(tmp_path / "sys")))
    assert mode.kind == "measured" and mode.slow_node is not None
    cost = {SITES["table"][0]: 1.0, SITES["stream"][0]: 0.4, SITES["small"][0]: 0.0}
    calls: list[dict[str, int]] = []

    def fake_run(command: list[str], placement: dict[str, int], workdir: Path, **_: Any) -> PlanRun:
        calls.append(placement)
        assert set(placement.values()) <= {mode.slow_node}
        jitter = 0.01 * (len(calls) % 3)
        wall = 2.0 + sum(cost[h] for h in placement) + jitter
        return PlanRun(wall, 0, {"binds_ok": len(placement), "binds_failed": 0})

    monkeypatch.setattr("placer.experiments.measure.run_with_plan", fake_run)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = build_store(url, with_deep=False)  # the measured path needs no deep data
    store = Store(url)
    req = ExperimentRequest(budgets=[0.5], repeat=3)
    summary = measured_labels(store, ids["native"], req, mode, ["./toy"], tmp_path / "w")
    assert summary["mode"] == "measured" and summary["object_labels"] == 3
    assert len(calls) == 3 * (1 + 3 + 5)  # baseline, each site alone, 5 plans; 3 repeats
    with store.session() as s:
        exp = s.scalars(select(Experiment)).one()
        assert exp.emulated is False and exp.repeats == 3
        assert exp.tier_spec_name == f"node{mode.slow_node}"
        labels = s.scalars(select(Label)).all()
        assert all(lab.emulated is False for lab in labels)
        alone = {lab.site_id: lab for lab in labels if lab.kind == "object"}
        table = alone[ids["sites"]["table"]]
        assert table.penalty_seconds == pytest.approx(1.0, abs=0.03)
        assert table.runtime_spread == pytest.approx(0.02, abs=1e-9)
        assert len(table.details["walls"]) == 3
        oracle = next(lab for lab in labels if lab.strategy == "oracle")
        # 50% of 513 MiB: the oracle keeps the costly table in DRAM, sends the stream
        assert oracle.penalty_seconds == pytest.approx(0.4, abs=0.03)
    store.dispose()


@pytest.mark.slow
def test_plan_binding_on_node_0_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mbind to node 0 succeeds and /proc/PID/numa_maps shows the pages on N0."""
    from sqlalchemy import select

    from placer.experiments.workloads import example_bin_dir
    from placer.store import Store
    from placer.store.models import Label

    pytest.importorskip("collectors.shim")
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    bins = example_bin_dir(build=True)
    assert bins is not None
    from collectors.profile.session import ProfileRequest, run_profile

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    # about 0.3 s: numa_maps is sampled while it runs
    cmd = [str(bins / "seqread"), "-m", "64M", "-i", "200"]
    run_id, code, _ = run_profile(store, ProfileRequest(command=cmd, name="seqread", perf=False))
    assert code == 0
    mode = decide_mode(detect_nodes("/"), slow_node=0)
    req = ExperimentRequest(budgets=[0.5], repeat=1, strategies=("first-touch",))
    measured_labels(store, run_id, req, mode, cmd, tmp_path / "w")
    with store.session() as s:
        lab = s.scalars(select(Label).where(Label.kind == "object")).one()
        ev = lab.details["binding"]
        assert ev["binds_ok"] >= 1 and ev["binds_failed"] == 0
        assert "bind:0" in ev["numa_maps_policies"]
        # mbind covers the whole pages inside the buffer: all but at most 2 partial pages
        assert ev["numa_maps_pages"].get("N0", 0) >= (64 << 20) // 4096 - 2
    store.dispose()
