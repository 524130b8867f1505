"""Lifetimes on the base's clock: the profiler's own CPU time does not move labels.

The shim's CLOCK timeline counts the process's CPU time under the shim and perf, which
is 1.7x to 3x of a short program's own time and moves with load (docs/emulator.md,
"Time base"). Two profiles of one program that differ only in that overhead must price
the same: lifetimes are scaled to the plain runs' CPU time before rates and caps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from placer.emulator.load import load_profile
from placer.emulator.model import HostDram, costs
from placer.store import Store
from placer.store.models import AllocObject, Run
from placer.tiers.specs import load_spec
from tests.emulator_fixtures import build_store

PLAIN_CPU = 0.5  # seconds: the program's own CPU time, plain


def _store(tmp_path: Path, name: str, profiled_cpu: float | None, plain: bool = True) -> Any:
    """The toy runs, the native one timed on a CPU-time timeline ``profiled_cpu`` long."""
    url = f"sqlite:///{tmp_path / name}.db"
    ids = build_store(url)
    store = Store(url)
    with store.session() as s:
        run = s.get(Run, ids["native"])
        assert run is not None
        signals = dict(run.signals)
        signals["shim"] = {**signals["shim"], "program_cpu_seconds": profiled_cpu}
        run.signals = signals
        if plain:
            run.inputs = {**run.inputs, "plain_runs": [0.6], "plain_runs_cpu": [PLAIN_CPU]}
        for oid in ids["objects"].values():
            obj = s.get(AllocObject, oid)
            assert obj is not None and profiled_cpu is not None
            # every object lives the whole run: its CPU lifetime is the run's CPU time
            obj.summary = {**obj.summary, "lifetime_cpu_ns": int(profiled_cpu * 1e9)}
    return store, ids["native"]


def _priced(store: Any, run_id: int) -> tuple[dict[int, float], list[float], list[str]]:
    with store.session() as s:
        profile = load_profile(s, run_id, threads=1)
    host = HostDram(latency_ns=100.0, read_gbps=20.0, write_gbps=10.0, llc_bytes=32 << 20)
    cs, _ = costs(profile, load_spec("optane"), load_spec("dram"), host)
    lives = [o.lifetime_s for o in profile.objects]
    return {i: c.penalty_s for i, c in cs.items()}, lives, profile.notes


@pytest.mark.parametrize("overheads", [(1.7, 3.0), (1.0, 2.2)])
def test_profiler_overhead_does_not_move_penalties(
    tmp_path: Path, overheads: tuple[float, float]
) -> None:
    a, run_a = _store(tmp_path, "a", PLAIN_CPU * overheads[0])
    b, run_b = _store(tmp_path, "b", PLAIN_CPU * overheads[1])
    pen_a, lives_a, _ = _priced(a, run_a)
    pen_b, lives_b, notes_b = _priced(b, run_b)
    assert lives_a == pytest.approx([PLAIN_CPU] * 3)
    assert lives_b == pytest.approx([PLAIN_CPU] * 3)
    assert sorted(pen_a.values()) == pytest.approx(sorted(pen_b.values()), rel=1e-9)
    assert any("lifetimes scaled by" in n for n in notes_b)


def test_without_plain_runs_the_timeline_is_the_base(tmp_path: Path) -> None:
    """No plain runs: the base is the profiled run's own time, so nothing is rescaled."""
    store, run = _store(tmp_path, "c", 1.2, plain=False)
    _, lives, notes = _priced(store, run)
    assert lives == pytest.approx([1.2] * 3)
    assert not any("lifetimes scaled" in n for n in notes)
