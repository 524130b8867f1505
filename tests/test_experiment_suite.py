"""The labeling corpus driver: real profiling + DHAT + emulated labels, failures reported."""

from __future__ import annotations

import shutil
from pathlib import Path

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
    pytest.importorskip("collectors.shim")
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    from sqlalchemy import func, select

    from placer.emulator.host import reference
    from placer.experiments.runner import ExperimentRequest, Mode
    from placer.experiments.session import run_suite
    from placer.experiments.workloads import Workload, example_bin_dir
    from placer.store import Store
    from placer.store.models import Experiment, Label

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
    assert "seqread:" in (tmp_path / "suite.log").read_text()
    store.dispose()
