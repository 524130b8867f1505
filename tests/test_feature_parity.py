"""One feature function: a stored run and its live replay through the daemon give one table.

The model is trained on :func:`run_features` of stored runs and scores live objects in the
daemon's :class:`ObjectTable`; both must hand it the same numbers for the same evidence.
Here a synthetic shim log (and perf mem samples) is ingested into a store, and the same
records are replayed into the daemon's object table as the daemon's tail reader feeds it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.collectors.profile import ingest
from placer.collectors.profile.perf import MemSource, PerfSample
from placer.daemon.decide import ObjectTable
from placer.placement.features import (
    FEATURES,
    Interval,
    MemCounts,
    ObjectObservation,
    RunHistory,
    RunObservation,
    features,
    run_features,
)
from placer.store import Store

T0 = 1000 * 10**9  # shim start (CLOCK_MONOTONIC ns); the first allocation happens then
PERIOD = 100_000_000  # shim sample period: 100 ms
INTERVALS = 20
END = T0 + INTERVALS * PERIOD
PID = 4242
KiB, MiB = 1 << 10, 1 << 20
#: Columns compared besides the features.
SHAPE = ["size_bytes", "alloc_ns", "end_ns", "site_hash", "native_site"]


def _evidence(seed: int, free_share: float, late: int) -> tuple[NS, list[PerfSample]]:
    """A shim log (as ``read_log`` returns it) and perf mem samples of one synthetic run.

    The first allocation comes ``late`` ns after the shim started.
    """
    rng = random.Random(seed)
    sites = {0x1000 + k: [("/opt/app/bin/app", 0x100 * (k + 1))] for k in range(5)}
    allocs, frees, samples, perf = [], [], [], []
    for seq in range(1, 25):
        t = T0 + late + (0 if seq == 1 else rng.randrange(10 * PERIOD))
        size = rng.choice([64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 8 * MiB])
        address = 0x7F0000000000 + seq * 16 * MiB
        site = rng.choice(list(sites))
        allocs.append(
            NS(
                seq=seq,
                time_ns=t,
                address=address,
                size=size,
                site_hash=site,
                tid=PID,
                kind="malloc",
            )
        )
        end = END
        if seq > 1 and rng.random() < free_share:
            end = t + rng.randrange(PERIOD, 6 * PERIOD)
            frees.append(NS(seq=seq, time_ns=end, address=address, kind="free"))
        # page-poison samples from the allocation's interval to the last whole one before
        # the free; object 1 lives throughout and is sampled every interval
        for i in range((t - T0) // PERIOD, (end - T0) // PERIOD):
            if seq > 1 and rng.random() < 0.2:
                continue
            sampled = rng.randint(0, 16)
            touched = rng.randint(0, sampled)
            samples.append(
                NS(
                    seq=seq,
                    start_ns=T0 + i * PERIOD,
                    end_ns=T0 + (i + 1) * PERIOD,
                    interval=i,
                    sampled_pages=sampled,
                    touched_pages=touched,
                    written_pages=rng.randint(0, touched),
                )
            )
        for _ in range(rng.choice([0, 0, 2, 5])):
            op = rng.choice(["load", "load", "store"])
            source = MemSource(
                op=op,
                level=rng.choice(["L1", "L3", "DRAM"]),
                remote=False,
                tlb=rng.choice(["hit", "miss"]),
                llc_miss=rng.random() < 0.4,
            )
            perf.append(
                PerfSample(
                    pid=PID,
                    tid=PID,
                    time_ns=rng.randrange(t, end),
                    event="cpu/mem-loads,ldlat=30/P",
                    addr=address + rng.randrange(size),
                    source=source,
                    weight=rng.randint(5, 400) if op == "load" else 0,
                )
            )
    header = NS(
        version=1,
        start_ns=T0,
        pid=PID,
        ppid=1,
        page_size=4096,
        stack_depth=4,
        flags=1,
        threshold=65536,
        sample_period_ms=PERIOD // 1_000_000,
    )
    log = NS(
        header=header,
        modules={1: ("/opt/app/bin/app", bytes.fromhex("ab" * 20))},
        sites=sites,
        allocs=allocs,
        frees=frees,
        samples=samples,
        binds=[],
        end=NS(time_ns=END, dropped_records=0, reason=0),
        truncated=False,
    )
    return log, perf


def _stored(tmp_path: Path, log: NS, perf: list[PerfSample]) -> pd.DataFrame:
    """``run_features`` of the run ingested as ``placer profile`` stores it."""
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    store.upgrade()
    run_id = ingest.begin_run(
        store,
        app_name="app",
        command=["app"],
        binary_path="/opt/app/bin/app",
        build_id="ab" * 20,
        inputs={},
    )
    inputs = ingest.ProfileInputs(logs=[log], perf_samples=perf, perf_signals={"mem": True})
    outcome = ingest.RunOutcome(status="succeeded", exit_code=0, signal=None, wall_seconds=3.0)
    ingest.ingest_profile(store, run_id, inputs, outcome)
    with store.session() as s:
        table = run_features(s, run_id)
    store.dispose()
    return table


def _replayed(log: NS, perf: list[PerfSample]) -> pd.DataFrame:
    """The daemon's features at the run's end, fed the same records as its tail reader."""
    table = ObjectTable()
    table.program_start_ns = log.header.start_ns
    for a in sorted(log.allocs, key=lambda a: a.time_ns):
        table.add_alloc(a.seq, a.address, a.size, a.site_hash, a.time_ns)
    for s in log.samples:
        table.sample(s.seq, s.interval, s.sampled_pages, s.touched_pages, s.written_pages)
    for p in perf:  # one perf mem window per sample, attributed by address as the daemon does
        a = next(a for a in log.allocs if a.address <= p.addr < a.address + a.size)
        assert p.source is not None
        load = p.source.op == "load"
        counts = NS(
            samples=1,
            llc_misses=int(p.source.llc_miss),
            latency_sum=float(p.weight) if load else 0.0,
            loads=int(load),
            tlb_misses=int(p.source.tlb == "miss"),
        )
        table.mem_window({f"s{a.seq}": counts})
    for f in log.frees:
        table.free(f.seq)
    objs, frame = table.features(END)
    frame.index = [o.alloc_ns for o in objs]
    return frame


def _assert_same(stored: pd.DataFrame, live: pd.DataFrame) -> None:
    assert len(live) and stored.index.is_unique and set(live.index) <= set(stored.index)
    stored = stored.loc[live.index]
    for col in [*FEATURES, *SHAPE]:
        for key, want, got in zip(live.index, stored[col], live[col], strict=True):
            if isinstance(want, str):
                assert got == want, (col, key)
            elif isinstance(want, float) and math.isnan(want):
                assert math.isnan(got), (col, key, got)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (col, key)


@pytest.mark.parametrize(
    ("seed", "free_share", "late"),
    [(1, 0.0, 0), (2, 0.4, 0), (3, 0.7, 0), (4, 0.0, 35 * PERIOD // 10), (5, 0.5, 2 * PERIOD)],
)
def test_live_replay_matches_the_stored_run(
    tmp_path: Path, seed: int, free_share: float, late: int
) -> None:
    log, perf = _evidence(seed, free_share, late)
    stored = _stored(tmp_path, log, perf)
    stored.index = stored["alloc_ns"]
    live = _replayed(log, perf)
    # every object the daemon still holds at the end: the ones never freed
    assert len(live) == len(log.allocs) - len(log.frees)
    assert stored["llc_miss_share"].notna().any()  # the perf mem path is exercised
    _assert_same(stored, live)


# ------------------------------------------------------------------ property: history
_interval = st.builds(
    lambda i, s, t, w: Interval(i, s, min(t, s), min(w, t, s), 0, None),
    st.integers(0, 30),
    st.integers(0, 16),
    st.integers(0, 16),
    st.integers(0, 16),
)
_mem = st.builds(
    MemCounts,
    st.integers(1, 5),
    st.integers(0, 5),
    st.floats(0, 1000, allow_nan=False),
    st.integers(0, 5),
)


@st.composite
def _observations(draw: st.DrawFn) -> list[ObjectObservation]:
    n = draw(st.integers(2, 12))
    out = []
    for seq in range(n):
        alloc = draw(st.integers(0, 10**9))
        freed = draw(st.booleans())
        out.append(
            ObjectObservation(
                site=draw(st.sampled_from(["a", "b", "c"])),
                alloc_seq=seq,
                size=draw(st.integers(4096, 64 * MiB)),
                alloc_ns=alloc,
                free_ns=alloc + draw(st.integers(0, 10**9)) if freed else None,
                intervals=sorted(
                    draw(st.lists(_interval, max_size=6, unique_by=lambda iv: iv.interval))
                ),
                mem=draw(st.lists(_mem, max_size=3)),
                first_touch_faults=draw(st.integers(0, 100)),
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(_observations(), st.data())
def test_folding_freed_objects_keeps_every_feature(
    objs: list[ObjectObservation], data: st.DataObject
) -> None:
    """Objects folded into the history (the daemon's freed ones) still count run-wide."""
    gone = data.draw(st.sets(st.integers(0, len(objs) - 1), max_size=len(objs) - 1))
    wall = data.draw(st.floats(0, 3e9, allow_nan=False))
    history = RunHistory()
    for k in sorted(gone):
        history.fold(objs[k])
    kept = [k for k in range(len(objs)) if k not in gone]
    whole = features(RunObservation(objs, wall_ns=wall))
    part = features(RunObservation([objs[k] for k in kept], wall_ns=wall, history=history))
    part.index = kept
    _assert_same(whole, part)
    # without a history the run-wide shares cover the run
    assert whole["size_share"].sum() == pytest.approx(1.0)
