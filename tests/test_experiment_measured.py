"""The measured path: plans bound through the shim, for real on node 0 and on a fake topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from placer.act.bind import parse_numa_maps
from placer.emulator.model import ObjectTraffic, RunProfile
from placer.experiments.measure import PlanRun, slow_lines
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
    calls: list[list[str]] = []

    def fake_run(command: list[str], lines: list[str], **_: Any) -> PlanRun:
        calls.append(lines)
        placement = {line.split()[0][2:]: int(line.split()[1]) for line in lines}
        assert all(len(line.split()) == 2 for line in lines)  # not chunked: whole sites
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

    from placer.contracts.examples import example_bin_dir
    from placer.store import Store
    from placer.store.models import Label

    pytest.importorskip("placer.collectors.shim")
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    bins = example_bin_dir(build=True)
    assert bins is not None
    from placer.collectors.profile.session import ProfileRequest, run_profile

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
        assert ev["share_on_planned_node"] == 1.0
        # mbind covers the whole pages inside the buffer: all but at most 2 partial pages
        assert ev["numa_maps_pages"].get("N0", 0) >= (64 << 20) // 4096 - 2
    store.dispose()


def _chunked_profile() -> RunProfile:
    """One 32 MiB array in four 8 MiB chunks (site a) and a small object (site b)."""
    mib = 1 << 20

    def o(i: int, site: str, chunk: int, size: int, alloc: int | None) -> ObjectTraffic:
        return ObjectTraffic(
            object_id=i,
            site_id=ord(site),
            site_hash=site * 16,
            name=site,
            chunk_index=chunk,
            size_bytes=size,
            bytes_read=0.0,
            bytes_written=0.0,
            lifetime_s=1.0,
            alloc_bytes=32 * mib if alloc is not None else 0,
            alloc_id=alloc,
        )

    objs = [o(1 + c, "a", c, 8 * mib, 1) for c in range(4)] + [o(9, "b", 0, mib, None)]
    return RunProfile(run_id=1, app="t", build_id="b", wall_seconds=1.0, threads=1, objects=objs)


def test_plans_of_a_chunked_run_bind_only_the_slow_chunks() -> None:
    """The lines are planfile.shim_lines' (what `placer run --plan` writes): a site partly
    slow gets one line per slow chunk; a site all slow, or any site of an unchunked run,
    one whole line; a site all in DRAM none."""
    p = _chunked_profile()
    a, b = "0x" + "a" * 16, "0x" + "b" * 16
    size = 8 << 20
    assert slow_lines(p, {3, 4}, 2, size) == [f"{a} 2 2 {size}", f"{a} 2 3 {size}"]
    assert slow_lines(p, {1, 2, 3, 4, 9}, 2, size) == [f"{a} 2", f"{b} 2"]
    assert slow_lines(p, {9}, 2, size) == [f"{b} 2"]
    assert slow_lines(p, set(), 2, size) == []
    # profiled without chunks (chunk size 0): a site is bound whole, as before
    assert slow_lines(p, {3}, 2, 0) == [f"{a} 2"]


@pytest.mark.slow
def test_chunked_plan_binding_on_node_0_for_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run profiled with 8 MiB chunks: the first-touch plan at 50% keeps the first half of
    the array in DRAM and binds the other chunks one by one; every bound chunk's BIND
    succeeds and numa_maps shows its pages on node 0."""
    from sqlalchemy import select

    from placer.contracts.examples import example_bin_dir
    from placer.store import Store
    from placer.store.models import Experiment, Label

    pytest.importorskip("placer.collectors.shim")
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    bins = example_bin_dir(build=True)
    assert bins is not None
    from placer.collectors.profile.session import ProfileRequest, run_profile

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    cmd = [str(bins / "seqread"), "-m", "64M", "-i", "200"]
    req_p = ProfileRequest(command=cmd, name="seqread", perf=False, chunk=8 << 20)
    run_id, code, _ = run_profile(store, req_p)
    assert code == 0
    mode = decide_mode(detect_nodes("/"), slow_node=0)
    req = ExperimentRequest(budgets=[0.5], repeat=1, strategies=("first-touch",))
    measured_labels(store, run_id, req, mode, cmd, tmp_path / "w")
    with store.session() as s:
        exp = s.scalars(select(Experiment)).one()
        assert exp.params["chunk_bytes"] == 8 << 20
        plan = s.scalars(select(Label).where(Label.kind == "plan")).one()
        lines = plan.details["plan"]
        assert len(lines) == 4 and all(len(line.split()) == 4 for line in lines)
        ev = plan.details["binding"]
        assert ev["chunk_lines"] == 4 and ev["binds_ok"] == 4 and ev["binds_failed"] == 0
        (site,) = ev["sites"].values()
        assert sorted(site["chunks"]) == ["4", "5", "6", "7"]
        for chunk in site["chunks"].values():
            assert chunk["binds_ok"] == 1 and chunk["share_on_planned_node"] == 1.0
            assert chunk["pages"].get("0", 0) >= (8 << 20) // 4096 - 2
        # the alone run binds the site whole: one BIND for the allocation
        alone = s.scalars(select(Label).where(Label.kind == "object")).one()
        assert alone.details["plan"] == [lines[0].split()[0] + " 0"]
    store.dispose()
