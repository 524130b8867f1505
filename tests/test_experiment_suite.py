"""The labeling corpus driver: real profiling + DHAT + emulated labels, failures reported."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from placer.experiments.workloads import GRAPH_KERNELS, MICRO


def test_suite_lists_every_kernel_generator_and_scale() -> None:
    from placer.experiments.workloads import suite

    items = suite()
    apps = {w.app for w in items}
    for kernel in GRAPH_KERNELS:
        for gen in ("kron", "uniform"):
            assert sum(a.startswith(f"{kernel}-{gen}") for a in apps) == 3
    assert set(MICRO) <= apps
    assert len(items) >= 30
    assert all(Path(w.command[0]).exists() for w in items)


@pytest.mark.slow
def test_run_suite_labels_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("placer.collectors.shim")
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    from sqlalchemy import func, select

    from placer.contracts.examples import example_bin_dir
    from placer.emulator.host import reference
    from placer.experiments.runner import ExperimentRequest, Mode
    from placer.experiments.session import run_suite
    from placer.experiments.workloads import Workload
    from placer.store import Store
    from placer.store.models import Experiment, Label, Run

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    bins = example_bin_dir(build=True)
    assert bins is not None
    work = [
        Workload("bfs-kron10", [str(bins / "bfs"), "-g", "10", "-n", "1"], "graph"),
        Workload("broken", [str(bins / "bfs"), "-g", "-3"], "graph"),  # bad flag: exits 2
        Workload("seqread", [str(bins / "seqread"), "-m", "48M", "-i", "2"], "micro"),
    ]
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    steps: list[tuple[str, str]] = []
    doc = run_suite(
        store,
        ExperimentRequest(budgets=[0.5]),
        Mode("emulated"),
        reference(),
        work,
        on_step=lambda app, st: steps.append((app, st)),
        log_path=tmp_path / "suite.log",
    )
    assert doc["runs_labeled"] == 2
    assert [f["app"] for f in doc["failed"]] == ["broken"]
    assert ("broken", "failed") in steps and ("seqread", "ok") in steps
    with store.session() as s:
        assert s.scalar(select(func.count(Experiment.id))) == 2
        assert s.scalar(select(func.count(Label.id)).where(Label.emulated.is_(False))) == 0
        seq = [e for e in doc["experiments"] if e["app"] == "seqread"][0]
        assert seq["all_slow_seconds"] > seq["baseline_seconds"]
        # the baseline is the fastest plain run's CPU time, not the profiled (shim + perf)
        # run, and the lifetimes are in CPU time too (the shim's CLOCK timeline)
        exp = s.get(Experiment, seq["experiment"])
        base = exp.params["baseline"]
        assert base["source"] == "fastest plain run" and len(base["cpu"]) == 3
        assert base["time_base"] == "cpu"
        assert seq["baseline_seconds"] == pytest.approx(min(base["cpu"]), abs=1e-6)
        run = s.get(Run, exp.run_id)
        assert run.inputs["label_threads"] == 1  # the thread pools it was labeled with
    assert "seqread:" in (tmp_path / "suite.log").read_text()
    store.dispose()


@pytest.mark.slow
def test_experiment_chunk_labels_each_chunk_of_one_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``experiment --chunk``: one 32 MiB array profiled in 8 MiB chunks gives four object
    labels of one site (default: one label); ``--chunk`` with ``--run`` is refused."""
    pytest.importorskip("placer.collectors.shim")
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    import json

    from sqlalchemy import select

    from placer.cli import main
    from placer.contracts.examples import example_bin_dir
    from placer.store import Store
    from placer.store.models import Label

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    bins = example_bin_dir(build=True)
    assert bins is not None
    url = f"sqlite:///{tmp_path / 'store.db'}"
    prog = [str(bins / "seqread"), "-m", "32M", "-i", "2"]
    base = ["--store", url, "--format", "json", "experiment", "--emulate", "--reference-dram"]
    base += ["--budgets", "50", "--app", "seqread"]

    def label(*extra: str) -> dict[str, Any]:
        assert main([*base, *extra, "--", *prog]) == 0
        out = capsys.readouterr().out
        return json.loads(out[out.index("{") :])["experiments"][0]

    whole = label()
    chunked = label("--chunk", "8MiB")
    assert whole["object_labels"] == 1
    assert chunked["object_labels"] == 4
    store = Store(url)
    with store.session() as s:
        rows = s.scalars(
            select(Label).where(
                Label.experiment_id == chunked["experiment"], Label.kind == "object"
            )
        ).all()
        assert len({r.site_id for r in rows}) == 1
        assert len({r.object_id for r in rows}) == 4
        assert all(r.emulated and r.penalty_seconds is not None for r in rows)
    store.dispose()
    code = main([*base, "--run", str(chunked["run"]), "--chunk", "8MiB"])
    assert code == 2
    assert "new profiles only" in capsys.readouterr().err


def test_plain_baseline_keeps_every_run_and_gives_up_on_failure() -> None:
    from placer.experiments.runner import plain_baseline

    runs = plain_baseline(["sleep", "0.05"], runs=3)
    assert len(runs.wall) == len(runs.cpu) == 3 and min(runs.wall) >= 0.05
    assert max(runs.cpu) < min(runs.wall)  # sleeping costs no CPU time
    busy = plain_baseline([sys.executable, "-c", "sum(range(3_000_000))"], runs=1)
    assert busy.cpu[0] > 0.01  # the child's own CPU time is counted
    assert len(plain_baseline(["sleep", "0.2"], runs=5, budget_seconds=0.3).wall) == 2
    assert not plain_baseline(["false"])  # a failing run: no baseline from plain runs
    assert not plain_baseline(["no-such-program-xyz"])
