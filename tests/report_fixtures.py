"""Small stores with the shapes the other parts of placer write, for the report tests.

Rows are inserted through the ORM as ``placer profile``, ``placer experiment`` (emulated,
Optane spec), ``placer recommend``, ``placer run --plan``, ``placer tune`` (with a real
Optuna study in the same database) and the daemon write them. The numbers are test data,
chosen to look like a GAP PageRank run and an image pipeline; nothing here is a
measurement.
"""

from __future__ import annotations

import math
from typing import Any

from placer.store import Store
from placer.store.models import (
    AllocObject,
    Application,
    DaemonJob,
    Experiment,
    Host,
    Label,
    ObjectMetric,
    Pipeline,
    PipelineRun,
    Plan,
    PlanDecision,
    Run,
    Site,
    Stage,
    StageMetric,
    TuningStudy,
)

MiB = 1 << 20
PERIOD_NS = 50_000_000  # 50 ms sample period
T0 = 1_000_000_000_000
WALL_S = 2.4
BASE_S = 2.4  # emulated all-DRAM runtime
EVIL = "<script>alert(1)</script>"

# (file:line, size, alloc s, free s or None, chunks, density(t, chunk), write share,
#  penalty per chunk)
OBJECTS: list[tuple[str, int, float, float | None, int, Any, float, list[float]]] = [
    ("src/reader.h:60", 4 * MiB, 0.0, 0.2, 1, lambda t, c: 0.8, 0.5, [0.01]),
    ("src/builder.h:120", 48 * MiB, 0.05, 0.6, 1, lambda t, c: 0.7, 0.6, [0.05]),
    ("src/builder.h:212", 8 * MiB, 0.1, None, 1, lambda t, c: 0.35, 0.1, [0.12]),
    (
        "src/builder.h:218",
        64 * MiB,
        0.2,
        None,
        4,
        lambda t, c: 0.5 if t < 0.6 else [0.9, 0.6, 0.3, 0.1][c],
        0.05,
        [0.42, 0.25, 0.09, 0.03],
    ),
    (
        "src/pr.cc:41",
        8 * MiB,
        0.6,
        None,
        1,
        lambda t, c: 0.95 if int(t * 10) % 4 else 0.5,
        0.5,
        [0.38],
    ),
    (
        "src/pr.cc:42",
        8 * MiB,
        0.6,
        None,
        1,
        lambda t, c: 0.9 if int(t * 10) % 4 else 0.2,
        0.8,
        [0.30],
    ),
    ("src/util.h:88", 256 * 1024, 0.0, None, 1, lambda t, c: 0.05, 0.0, [0.0]),
]


def open_store(url: str) -> Store:
    store = Store(url)
    store.upgrade()
    return store


def _host(s: Any) -> Host:
    host = Host(hostname="testhost", cpus=2, memory_bytes=24 << 30, kernel="6.1.0")
    s.add(host)
    s.flush()
    return host


def seed_run(
    store: Store,
    *,
    evil: bool = False,
    labels: bool = True,
    plan: bool = True,
    applied: bool = True,
    plan_labels: bool = False,
) -> int:
    """A profiled run (7 sites, 10 objects, page-poison series); returns its id."""
    with store.session() as s:
        host = s.query(Host).first() or _host(s)
        app = Application(name="pagerank")
        s.add(app)
        s.flush()
        run = Run(
            application_id=app.id,
            host_id=host.id,
            kind="profile",
            command=["/home/u/gap/pr", "-g", "20", "-n", "4"],
            cwd="/home/u/gap",
            binary_path="/home/u/gap/pr",
            build_id="9f0c1d2e3f405162",
            status="succeeded",
            exit_code=0,
            wall_seconds=WALL_S,
            signals={"shim": {"page_poison": True, "truncated": False}, "perf": {"faults": True}},
        )
        s.add(run)
        s.flush()
        objects: list[tuple[AllocObject, Site, float]] = []
        specs = list(OBJECTS)
        if evil:
            specs.append((EVIL, 2 * MiB, 0.3, None, 1, lambda t, c: 0.6, 0.2, [0.07]))
        seq = 0
        for i, (loc, size, t_a, t_f, chunks, dens, wshare, pens) in enumerate(specs):
            chain = [
                f"/home/u/gap/{loc}" if not loc.startswith("<") else loc,
                "/home/u/gap/src/pr.cc:120",
                "/home/u/gap/src/pr.cc:160",
            ]
            site = Site(
                site_hash=f"{0x5E1F0C3A9D2B7700 + i:016x}",
                language="c",
                frames=[["/home/u/gap/pr", 0x1000 + 16 * i]],
                symbolized=chain,
            )
            s.add(site)
            s.flush()
            seq += 1
            for c in range(chunks):
                a_ns = T0 + int(t_a * 1e9)
                f_ns = T0 + int(t_f * 1e9) if t_f is not None else None
                end = t_f if t_f is not None else WALL_S
                pages = size // chunks // 4096
                series = []
                k = 0
                t = t_a
                while t + PERIOD_NS / 1e9 <= end + 1e-9:
                    d = float(dens(t, c))
                    sampled = min(16, pages)
                    touched = round(sampled * d)
                    series.append((k, t, sampled, touched, round(touched * wshare)))
                    k += 1
                    t += PERIOD_NS / 1e9
                sampled = sum(x[2] for x in series)
                touched = sum(x[3] for x in series)
                written = sum(x[4] for x in series)
                obj = AllocObject(
                    run_id=run.id,
                    site_id=site.id,
                    alloc_seq=seq,
                    chunk_index=c,
                    chunk_count=chunks,
                    address=0x7F0000000000 + (i << 28) + c * (size // chunks),
                    size_bytes=size // chunks,
                    thread_id=4242,
                    alloc_ns=a_ns,
                    free_ns=f_ns,
                    allocator="malloc",
                    first_touch_faults=pages,
                    summary={
                        "sampled_pages": sampled,
                        "touched_pages": touched,
                        "written_pages": written,
                        "density": touched / sampled if sampled else None,
                        "write_share": written / touched if touched else None,
                        "lifetime_ns": int((end - t_a) * 1e9),
                        "alive_at_exit": t_f is None,
                    },
                )
                s.add(obj)
                s.flush()
                for k, t, sp, tp, wp in series:
                    s.add(
                        ObjectMetric(
                            object_id=obj.id,
                            interval_index=k,
                            start_ns=T0 + int(t * 1e9),
                            end_ns=T0 + int(t * 1e9) + PERIOD_NS,
                            sampled_pages=sp,
                            touched_pages=tp,
                            written_pages=wp,
                            page_faults=0,
                        )
                    )
                objects.append((obj, site, pens[c]))
        if labels:
            exp = Experiment(
                run_id=run.id,
                host_id=host.id,
                emulated=True,
                tier_spec_name="optane",
                tier_spec={"name": "optane", "kind": "pmem"},
                repeats=1,
                baseline_seconds=BASE_S,
                params={"budgets": [0.3, 0.5, 0.7]},
            )
            s.add(exp)
            s.flush()
            for obj, site, pen in objects:
                s.add(
                    Label(
                        experiment_id=exp.id,
                        kind="object",
                        emulated=True,
                        object_id=obj.id,
                        site_id=site.id,
                        strategy="alone",
                        runtime_seconds=BASE_S + pen,
                        penalty_seconds=pen,
                    )
                )
            if plan_labels:
                for b, extra in ((0.3, 0.9), (0.5, 0.55), (0.7, 0.2)):
                    s.add(
                        Label(
                            experiment_id=exp.id,
                            kind="plan",
                            emulated=True,
                            budget_fraction=b,
                            strategy="density-greedy",
                            runtime_seconds=BASE_S + extra,
                            penalty_seconds=extra,
                        )
                    )
        if plan:
            footprint = sum(o.size_bytes for o, _, _ in objects)
            budget = footprint // 2
            ranked = sorted(objects, key=lambda x: -x[2] / x[0].size_bytes)
            used = 0
            decisions = []
            for obj, site, pen in ranked:
                tier = "dram" if used + obj.size_bytes <= budget else "slow"
                used += obj.size_bytes if tier == "dram" else 0
                decisions.append((site, obj, tier, pen / BASE_S))
            doc = {
                "format": "placer-plan",
                "version": 1,
                "build_id": run.build_id,
                "run": run.id,
                "strategy": "model",
                "model": {"name": "placement", "version": "placement@1", "id": None},
                "budget": {
                    "bytes": budget,
                    "fraction": 0.5,
                    "footprint_bytes": footprint,
                    "spec": "50%",
                },
                "nodes": {
                    "dram": 0,
                    "slow": 0,
                    "default_tier": "slow",
                    "note": "this host has no slow tier: slow decisions are bound to the "
                    "DRAM node 0 (the plan is applied for real, its effect is "
                    "emulated)",
                },
                "predicted_slowdown": 1.061,
                "baselines": {
                    "density-greedy": 1.094,
                    "ecohmem-knapsack": 1.081,
                    "size-threshold": 1.21,
                    "first-touch": 1.18,
                    "random": 1.15,
                },
                "decisions": [
                    {
                        "site": site.site_hash,
                        "chunk": obj.chunk_index,
                        "tier": tier,
                        "node": 0,
                        "size_bytes": obj.size_bytes,
                        "score": score,
                    }
                    for site, obj, tier, score in decisions
                ],
            }

            def make_plan(run_id: int, achieved: dict[str, Any]) -> Plan:
                p = Plan(
                    run_id=run_id,
                    strategy="model",
                    build_id=run.build_id,
                    budget_bytes=budget,
                    predicted_slowdown=1.061,
                    document=doc,
                    achieved=achieved,
                )
                for site, obj, tier, score in decisions:
                    p.decisions.append(
                        PlanDecision(
                            site_id=site.id,
                            chunk_index=obj.chunk_index,
                            tier=tier,
                            numa_node=0,
                            size_bytes=obj.size_bytes,
                            score=score,
                            reason="knapsack on predicted penalty (placement@1)",
                        )
                    )
                return p

            s.add(make_plan(run.id, {}))
            if applied:
                prun = Run(
                    application_id=app.id,
                    host_id=host.id,
                    kind="plan",
                    command=run.command,
                    cwd=run.cwd,
                    binary_path=run.binary_path,
                    build_id=run.build_id,
                    inputs={"plan_run": run.id, "plan_strategy": "model"},
                    status="succeeded",
                    exit_code=0,
                    wall_seconds=2.43,
                )
                s.add(prun)
                s.flush()
                sites = {
                    site.site_hash: {
                        "node": 0,
                        "allocations": 1,
                        "binds_ok": 1,
                        "binds_failed": 0,
                        "errnos": [],
                        "pages": {"0": obj.size_bytes // 4096},
                        "share_on_planned_node": 1.0,
                    }
                    for site, obj, _, _ in decisions
                }
                pages = sum(v["pages"]["0"] for v in sites.values())
                s.add(
                    make_plan(
                        prun.id,
                        {
                            "sites": sites,
                            "pages_seen": pages,
                            "pages_on_planned_node": pages,
                            "share_on_planned_node": 1.0,
                            "snapshots": 4,
                        },
                    )
                )
        return int(run.id)


STAGES = [
    # name, kind, sequential, random, cpu s/batch, wall s/batch, workers planned
    ("read", "source", True, False, 0.002, 0.004, 1),
    ("decode", "map", False, False, 0.110, 0.112, 6),
    ("random_resized_crop", "map", False, True, 0.030, 0.031, 2),
    ("flip", "map", False, True, 0.004, 0.004, 1),
    ("normalize", "map", False, False, 0.012, 0.012, 1),
    ("batch", "batch", True, False, 0.001, 0.001, 1),
]
BATCH = 32


def seed_pipeline(store: Store, *, study: bool = True, optuna_trials: bool = True) -> int:
    """A profiled, tuned image pipeline with a real Optuna study; returns its id."""
    bs = float(BATCH)
    stages_a = []
    for name, kind, seqn, rnd, cpu, wall, par in STAGES:
        stages_a.append(
            {
                "name": name,
                "kind": kind,
                "sequential": seqn,
                "random": rnd,
                "visit_ratio": bs if kind != "batch" else 1.0,
                "cpu_per_batch": cpu,
                "wall_per_batch": wall,
                "core_rate": 1 / cpu,
                "worker_rate": 1 / wall,
                "measured_parallelism": 1,
                "measured_rate": 1 / wall,
                "cores": 0.0,
                "parallelism": par,
                "materialized_bytes": 0,
                "cacheable": not rnd,
            }
        )
    analysis = {
        "pipeline": "images",
        "batch_size": bs,
        "budget_cores": 2.0,
        "budget_memory_bytes": 4 << 30,
        "measured_samples_per_second": 196.0,
        "stages": stages_a,
        "bottleneck": "decode",
        "lp_bottleneck": "cores",
        "upper_bound_samples_per_second": 402.0,
        "upper_bound_no_cache": 402.0,
        "cache": None,
        "prefetch": 4,
        "explanation": [
            "decode is the bottleneck at 291 samples/s per core; with 1 worker the pipeline "
            "measured 196 samples/s",
            "2 cores bound the pipeline at 402 samples/s (cores bind)",
        ],
    }
    name = "images-20261121-demo"
    with store.session() as s:
        host = s.query(Host).first() or _host(s)
        p = Pipeline(
            name="images",
            engine="torchdata",
            builder="examples.pipelines.images:torchdata_pipeline",
            host_id=host.id,
            analysis=analysis,
            best_config={"parallelism.decode": 2, "prefetch": 4},
            best_throughput=371.0,
        )
        s.add(p)
        s.flush()
        for pos, (sname, kind, seqn, rnd, _, _, _) in enumerate(STAGES):
            p.stages.append(Stage(position=pos, name=sname, kind=kind, sequential=seqn, random=rnd))
        s.flush()
        prof = PipelineRun(
            pipeline_id=p.id,
            config={"parallelism.decode": 1, "prefetch": 0},
            purpose="profile",
            throughput=196.0,
            status="done",
            host_facts={"cores": 2, "free_memory_bytes": 20 << 30},
            wall_seconds=3.0,
        )
        s.add(prof)
        s.flush()
        batches = 18
        for st, (_, _, _, _, cpu, wall, _) in zip(p.stages, STAGES, strict=True):
            s.add(
                StageMetric(
                    pipeline_run_id=prof.id,
                    stage_id=st.id,
                    elements_in=batches * BATCH,
                    elements_out=batches * BATCH,
                    wall_seconds=wall * batches,
                    cpu_seconds=cpu * batches,
                    bytes_out=batches * BATCH * 150_528,
                    wait_seconds=0.01,
                    parallelism=1,
                )
            )
        if study:
            s.add(
                TuningStudy(
                    pipeline_id=p.id,
                    optuna_study_name=name,
                    budget_cores=2.0,
                    budget_memory_bytes=4 << 30,
                    status="done",
                    best_config={"parallelism.decode": 2, "prefetch": 4},
                    best_throughput=371.0,
                    naive_throughput=196.0,
                    upper_bound=402.0,
                    n_trials=8,
                )
            )
            for n, (dec, pre, v, state) in enumerate(_TRIALS):
                s.add(
                    PipelineRun(
                        pipeline_id=p.id,
                        purpose="trial",
                        study_name=name,
                        trial_number=n,
                        throughput=v,
                        status={"complete": "done"}.get(state, state),
                        config={"parallelism.decode": dec, "prefetch": pre},
                    )
                )
        pid = int(p.id)
    if study and optuna_trials:
        import optuna
        from optuna.distributions import IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        st_ = optuna.create_study(study_name=name, storage=store.url, direction="maximize")
        dists = {"parallelism.decode": IntDistribution(1, 8), "prefetch": IntDistribution(0, 16)}
        for n, (dec, pre, v, state) in enumerate(_TRIALS):
            st_.add_trial(
                optuna.trial.create_trial(
                    params={"parallelism.decode": dec, "prefetch": pre},
                    distributions=dists,
                    value=v if state == "complete" else None,
                    state=getattr(optuna.trial.TrialState, state.upper()),
                    user_attrs={
                        "config": {"parallelism.decode": dec, "prefetch": pre},
                        "origin": "analysis" if n == 0 else "sampler",
                    },
                )
            )
    return pid


_TRIALS = [
    (2, 4, 371.0, "complete"),
    (2, 8, 362.0, "complete"),
    (1, 2, 201.0, "complete"),
    (3, 4, 340.0, "complete"),
    (1, 0, 190.0, "pruned"),
    (2, 1, 355.0, "complete"),
    (4, 16, None, "fail"),
    (2, 6, 366.0, "complete"),
]


def seed_daemon(store: Store) -> None:
    """Two daemon jobs: one placing objects, one tuning a pipeline."""
    with store.session() as s:
        host = s.query(Host).first() or _host(s)
        s.add(
            DaemonJob(
                host_id=host.id,
                pid=31337,
                kind="objects",
                command=["/home/u/gap/pr", "-g", "22"],
                status="attached",
                state={
                    "decisions": [
                        {
                            "at": "2026-11-21T14:02:00+00:00",
                            "action": "migrate 3 objects",
                            "reason": "pr.cc:41 heated up",
                        }
                    ]
                    * 3,
                    "migrations": 7,
                    "bytes_migrated": 96 * MiB,
                },
            )
        )
        s.add(
            DaemonJob(
                host_id=host.id,
                pid=4242,
                kind="pipeline",
                command=["python", "train.py"],
                status="detached",
                state={
                    "decisions": 2,
                    "knob_changes": [
                        {
                            "at": "2026-11-21T14:03:00+00:00",
                            "knob": "num_workers",
                            "old": 0,
                            "new": 2,
                        },
                        {
                            "at": "2026-11-21T14:05:00+00:00",
                            "knob": "prefetch_factor",
                            "old": 2,
                            "new": 4,
                        },
                    ],
                },
            )
        )


def finite_everywhere(value: Any) -> bool:
    """True when no float anywhere in a JSON-like value is NaN or infinite."""
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True
