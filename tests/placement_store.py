"""Small labeled store corpora for the placement tests (shapes as `placer profile` writes).

Labels here are synthetic test data from a stated rule (penalty grows with access density
times size, more for random-looking, read-heavy objects), never presented as measurements;
they let the tests check that the model learns an order the heuristics miss.
"""

from __future__ import annotations

import random
from typing import Any

from placer.store import Store
from placer.store.models import (
    AllocObject,
    Application,
    Experiment,
    Label,
    ObjectMetric,
    Run,
    Site,
)

MiB = 1 << 20


def make_run(
    s: Any,
    app: Application,
    rng: random.Random,
    *,
    n: int = 12,
    build_id: str = "",
    label: bool = True,
    emulated: bool = True,
    tier: str = "optane",
    wall: float = 2.0,
    intervals: int = 8,
) -> int:
    run = Run(
        application_id=app.id,
        kind="profile",
        command=[f"/bin/{app.name}"],
        binary_path=f"/bin/{app.name}",
        build_id=build_id or f"b{app.id:04x}",
        status="succeeded",
        exit_code=0,
        wall_seconds=wall,
        signals={"shim": {"sample_period_ms": 250}},
    )
    s.add(run)
    s.flush()
    exp = None
    if label:
        exp = Experiment(
            run_id=run.id, emulated=emulated, tier_spec_name=tier, baseline_seconds=wall, repeats=1
        )
        s.add(exp)
        s.flush()
    t0 = 1_000_000_000
    span = int(wall * 1e9)
    for k in range(n):
        h = f"{app.id:02x}{k:02x}{rng.randrange(16**10):010x}"
        site = Site(site_hash=h, symbolized=[f"{app.name}.c:{10 + k}"], frames=[["m", k]])
        s.add(site)
        s.flush()
        size = rng.choice([1, 2, 4, 8, 16, 32]) * MiB
        hot = rng.random() ** 2  # most objects cold, a few hot
        randomness = rng.random()
        wshare = rng.random() * 0.6
        alloc = t0 + rng.randrange(span // 4)
        obj = AllocObject(
            run_id=run.id,
            site_id=site.id,
            alloc_seq=k,
            address=0x7F0000000000 + k * 64 * MiB,
            size_bytes=size,
            alloc_ns=alloc,
            free_ns=t0 + span,
            first_touch_faults=size // 4096,
            summary={"lifetime_ns": t0 + span - alloc},
        )
        s.add(obj)
        s.flush()
        for i in range(intervals):
            sampled = 16
            touched = min(
                sampled, round(sampled * hot * (0.7 + 0.6 * rng.random()) * (0.3 + randomness))
            )
            s.add(
                ObjectMetric(
                    object_id=obj.id,
                    interval_index=i,
                    start_ns=t0 + i * span // intervals,
                    end_ns=t0 + (i + 1) * span // intervals,
                    sampled_pages=sampled,
                    touched_pages=touched,
                    written_pages=round(touched * wshare),
                )
            )
        if exp is not None:
            # stated rule: accesses ~ density x size; random reads cost most on the slow tier
            penalty = wall * 0.002 * hot * (size / MiB) * (0.2 + randomness) * (1 - 0.5 * wshare)
            s.add(
                Label(
                    experiment_id=exp.id,
                    kind="object",
                    emulated=emulated,
                    object_id=obj.id,
                    site_id=site.id,
                    runtime_seconds=wall + penalty,
                    penalty_seconds=penalty,
                )
            )
    return run.id


def make_corpus(
    url: str, apps: int = 4, runs_per_app: int = 2, n: int = 12, seed: int = 0, **kw: Any
) -> list[int]:
    store = Store(url)
    store.upgrade()
    rng = random.Random(seed)
    ids = []
    with store.session() as s:
        for a in range(apps):
            app = Application(name=f"app{a}")
            s.add(app)
            s.flush()
            for _ in range(runs_per_app):
                ids.append(make_run(s, app, rng, n=n, **kw))
    store.dispose()
    return ids
