"""Calibration: the four microbenchmarks, profiled for real, emulated all-slow on Optane.

Each must land within 20% of what the published latency/bandwidth ratios imply for it
(docs/emulator.md, Calibration). Profiling is real: the shim, perf where it works and a
valgrind DHAT pass per benchmark.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_microbenchmarks_land_within_20_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("collectors.shim")
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    from collectors.hostmodel import binary_runner, measure_host_model
    from placer.contracts.examples import example_bin_dir
    from placer.contracts.host import this_host
    from placer.emulator.host import from_model
    from placer.experiments.calibration import calibrate
    from placer.store import Store

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    bins = example_bin_dir(build=True)
    assert bins is not None
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    # one host model, measured once (as `placer calibrate` does), for every benchmark
    model = measure_host_model(binary_runner(bins), this_host(), repeats=2, max_rounds=2)
    rows = calibrate(store, bins, from_model(0, model), attempts=3)
    store.dispose()
    assert [r.bench for r in rows] == ["chase", "seqread", "seqwrite", "randupdate"]
    report = "; ".join(
        f"{r.bench}: emulated {r.emulated:.2f}x vs implied {r.implied:.2f}x"
        + ("" if r.drift is None else f" (host drift {r.drift:+.0%})")
        for r in rows
    )
    for r in rows:
        assert r.implied > 1.2, report  # the loops dominate: the check has teeth
        assert r.phases and all(p.seconds >= 0 for p in r.phases), report
    # A benchmark whose own loop rate kept drifting from the host constants measured
    # around it (after 3 tries) ran on a host whose DRAM speed changed under it: its
    # comparison is only reported, unless it lands within the bound anyway.
    noisy = [r for r in rows if r.drift is not None and abs(r.drift) > 0.25]
    for r in rows:
        if r not in noisy:
            assert abs(r.error) <= 0.20, report
    missed = [r.bench for r in noisy if abs(r.error) > 0.20]
    if missed:
        pytest.skip(f"host too busy to check {', '.join(missed)} (others passed): {report}")
    print(report)
