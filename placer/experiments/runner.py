"""Labeling experiments: per-object penalties and per-budget plan runtimes of one run.

Two paths, never mixed: on a host with a slow tier the labels are **measured** (the
program re-run with plans forced through the shim, see :mod:`placer.experiments.measure`);
on a host without one they are **emulated** (:mod:`placer.emulator`). Every Experiment and
Label row says which, with the host and the tier spec used. All labels of one experiment
are stored in one transaction: a failure stores none of them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.emulator.load import (
    PlainRuns,
    load_profile,
    load_profile_native,
    plain_runs,
    record_plain_runs,
)
from placer.emulator.model import HostDram, costs
from placer.errors import InvalidInputError
from placer.experiments import measure as plan_runs  # looked up per call (tests stub it)
from placer.experiments.strategies import STRATEGIES, candidates, slow_set
from placer.store.repository.hosts import host_row
from placer.store.repository.labels import NewLabel, add_experiment, add_labels
from placer.store.repository.runs import find_run
from placer.tiers import NumaNode
from placer.tiers.specs import TierSpec, load_spec


@dataclass(frozen=True)
class Mode:
    """How labels are produced here: ``measured`` on ``slow_node``, or ``emulated``."""

    kind: str  # measured | emulated
    slow_node: int | None = None
    reason: str = ""


def decide_mode(
    nodes: list[NumaNode], *, slow_node: int | None = None, force_emulate: bool = False
) -> Mode:
    """Measured when the host has a slow node (or one is named), else emulated."""
    by_id = {n.node: n for n in nodes}
    if force_emulate:
        return Mode("emulated", reason="--emulate given")
    if slow_node is not None:
        if slow_node not in by_id:
            raise InvalidInputError(
                f"--slow-node {slow_node}: this host has nodes {sorted(by_id) or 'none'}"
            )
        kind = by_id[slow_node].kind
        return Mode(
            "measured", slow_node, f"node {slow_node} named by --slow-node (classed {kind})"
        )
    slow = [n for n in nodes if n.kind != "dram"]
    if slow:
        n = slow[0]
        return Mode("measured", n.node, f"slow node {n.node}: {'; '.join(n.evidence)}")
    return Mode("emulated", reason=f"no slow tier among {len(nodes)} NUMA node(s)")


@dataclass
class ExperimentRequest:
    tier: str = "optane"
    budgets: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7])
    repeat: int = 1
    strategies: tuple[str, ...] = STRATEGIES
    seed: int = 0
    threads: int | None = None
    chunk: int = 0  # profiles made for the experiment split objects above this size (0: no)


#: Environment variables that size the common thread pools (OpenMP, BLAS, numexpr).
THREAD_POOL_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
#: Threads emulated labeling gives those pools unless told otherwise (docs/emulator.md,
#: "Time base"): one thread's CPU time is what another process on the host does not change.
LABEL_THREADS = 1


def thread_env(threads: int) -> dict[str, str]:
    """The environment that sizes every common thread pool to ``threads``."""
    return {name: str(threads) for name in THREAD_POOL_VARS}


def _run_plain(command: list[str]) -> tuple[float, float] | None:
    """One plain run: (wall, CPU) seconds, CPU = user + system of the program and the
    children it waited for. None when it cannot start or exits non-zero."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return None
    return took, usage.ru_utime + usage.ru_stime


def plain_baseline(command: list[str], *, runs: int = 3, budget_seconds: float = 10.0) -> PlainRuns:
    """Wall and CPU times of plain runs of ``command`` (no shim, no perf, output discarded).

    The emulated baseline is the all-DRAM time of the program itself. The profiled run is
    no good for it: ``perf record`` samples every page fault (pr -g 14 ran 0.128 s under
    shim and perf, 0.081 s plain). The base is the fastest run's CPU time, which other
    load on a shared host does not stretch (its wall time does: seqwrite 0.155 s quiet,
    0.255 s with one of 2 cores busy); runs stop early once ``budget_seconds`` of wall time
    are spent. Empty when a run fails (the caller keeps the profiled time and says so).
    """
    wall: list[float] = []
    cpu: list[float] = []
    spent = 0.0
    for _ in range(max(runs, 1)):
        got = _run_plain(command)
        if got is None:
            return PlainRuns([], [])
        wall.append(got[0])
        cpu.append(got[1])
        spent += got[0]
        if spent >= budget_seconds:
            break
    return PlainRuns(wall, cpu)


def emulate_labels(
    store: Any,
    run_id: int,
    req: ExperimentRequest,
    host: HostDram,
    spec: TierSpec | None = None,
    *,
    baseline_runs: PlainRuns | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Emulated labels of ``run_id`` as one experiment, priced on the host model ``host``.

    ``baseline_runs`` (:func:`plain_baseline`) are kept on the run: its base is then the
    fastest of them in every later pricing (``placer emulate``, ``placer experiment
    --run``); a run without them is based on its own profiled time. ``threads``: the
    thread pools' size the program was profiled with (kept on the run with them).
    """
    spec = spec or load_spec(req.tier)
    ref = load_spec("dram")
    with store.session() as s:
        if baseline_runs:
            record_plain_runs(s, run_id, baseline_runs, threads)
        profile = load_profile(s, run_id, threads=req.threads)
        if not profile.objects:
            raise InvalidInputError(f"run {profile.run_id} has no objects to label")
        run = find_run(s, profile.run_id)
        plain = plain_runs(run) if run is not None else PlainRuns([], [])
        baseline: dict[str, Any] = (
            {
                "source": "fastest plain run",
                "runs": plain.wall,
                "cpu": plain.cpu,
                "time_base": profile.time_base,
            }
            if plain
            else {"source": "profiled run (shim start to END)", "time_base": profile.time_base}
        )
        cs, r = costs(profile, spec, ref, host)
        pen = {i: c.penalty_s for i, c in cs.items()}
        cands = candidates(profile)
        base = profile.wall_seconds
        exp = add_experiment(
            s,
            run_id=profile.run_id,
            host_id=host_row(s).id,
            emulated=True,
            tier_spec_name=spec.name,
            tier_spec={
                **spec.to_dict(),
                "reference": ref.to_dict(),
                "host_dram": host.to_dict(),
                "ratios": r,
            },
            repeats=1,
            baseline_seconds=base,
            params={
                "mode": "emulated",
                "budgets": req.budgets,
                "strategies": list(req.strategies),
                "seed": req.seed,
                "deep_run_id": profile.deep_run_id,
                "threads": profile.threads,
                "notes": profile.notes,
                "baseline": baseline,
            },
        )
        rows = []
        for o in profile.objects:
            c = cs[o.object_id]
            rows.append(
                NewLabel(
                    kind="object",
                    object_id=o.object_id,
                    site_id=o.site_id,
                    strategy="alone",
                    runtime_seconds=base + c.penalty_s,
                    penalty_seconds=c.penalty_s,
                    details={
                        "random_share": round(c.random_share, 4),
                        "pattern": c.pattern_evidence,
                        "traffic": o.traffic_source,
                        "dram_time": {
                            "read_random": c.t_read_random,
                            "read_seq": c.t_read_seq,
                            "write_seq": c.t_write_seq,
                            "write_random": c.t_write_random,
                        },
                    },
                )
            )
        plans = 0
        for budget in req.budgets:
            for strat in req.strategies:
                slow = slow_set(strat, cands, budget, seed=req.seed, penalties=pen)
                extra = sum(pen[i] for i in slow)
                slow_bytes = sum(o.size_bytes for o in profile.objects if o.object_id in slow)
                rows.append(
                    NewLabel(
                        kind="plan",
                        budget_fraction=budget,
                        strategy=strat,
                        runtime_seconds=base + extra,
                        penalty_seconds=extra,
                        details={
                            "slow_objects": len(slow),
                            "slow_bytes": slow_bytes,
                            "dram_bytes": profile.footprint - slow_bytes,
                            "slow_object_ids": sorted(slow),
                        },
                    )
                )
                plans += 1
        add_labels(s, exp, rows)
        all_slow = base + sum(pen.values())
        return {
            "experiment": exp.id,
            "run": profile.run_id,
            "mode": "emulated",
            "tier": spec.name,
            "baseline_seconds": base,
            "all_slow_seconds": all_slow,
            "object_labels": len(profile.objects),
            "plan_labels": plans,
            "deep_run": profile.deep_run_id,
        }


def median_spread(values: list[float]) -> tuple[float, float]:
    """Median and spread (max - min) of repeated measurements."""
    if not values:
        raise ValueError("no measurements")
    return statistics.median(values), max(values) - min(values)


def measured_labels(
    store: Any, run_id: int, req: ExperimentRequest, mode: Mode, command: list[str], workdir: Path
) -> dict[str, Any]:
    """Measured labels: the program re-run with plans bound through the shim.

    A run profiled with chunks (``--chunk``) is bound chunk by chunk in the plan runs: a
    budget that keeps part of an array in DRAM sends only its other chunks to the slow
    node. The per-object ("alone") runs bind a site whole, as before.
    """
    if mode.slow_node is None:
        raise InvalidInputError("measured labels need a slow NUMA node")
    slow_node: int = mode.slow_node
    with store.session() as s:
        profile = load_profile_native(s, run_id)
        run = find_run(s, profile.run_id)
        size = ((run.inputs if run is not None else None) or {}).get("chunk_bytes")
    chunked = any(o.alloc_id is not None for o in profile.objects)
    chunk_bytes = int(size) if chunked and isinstance(size, int) and size > 0 else 0
    sites: dict[str, list[int]] = {}
    for o in profile.objects:
        sites.setdefault(o.site_hash, []).append(o.object_id)

    def measure(slow_ids: set[int], tag: str) -> tuple[float, float, dict[str, Any]]:
        lines = plan_runs.slow_lines(profile, slow_ids, slow_node, chunk_bytes)
        walls, checks = [], []
        for _ in range(req.repeat):
            res = plan_runs.run_with_plan(command, lines)
            walls.append(res.wall_seconds)
            checks.append(res.evidence)
        med, spread = median_spread(walls)
        return med, spread, {"walls": walls, "plan": lines, "binding": checks[-1]}

    base, base_spread, base_ev = measure(set(), "base")
    object_rows = []
    site_pen: dict[str, float] = {}
    for h, ids in sites.items():
        med, spread, ev = measure(set(ids), f"site-{h[:12]}")
        site_pen[h] = max(0.0, med - base)  # oracle ranking: noise below 0 counts as 0
        object_rows.append((h, ids, med, spread, ev))
    pen = {}
    for h, ids in sites.items():
        total = sum(o.size_bytes for o in profile.objects if o.object_id in ids) or 1
        for o in profile.objects:
            if o.object_id in ids:
                pen[o.object_id] = site_pen[h] * o.size_bytes / total
    cands = candidates(profile)
    plan_rows = []
    for budget in req.budgets:
        for strat in req.strategies:
            slow_ids = slow_set(strat, cands, budget, seed=req.seed, penalties=pen)
            med, spread, ev = measure(set(slow_ids), f"{strat}-{int(budget * 100)}")
            plan_rows.append((budget, strat, med, spread, ev, slow_ids))
    with store.session() as s:
        exp = add_experiment(
            s,
            run_id=profile.run_id,
            host_id=host_row(s).id,
            emulated=False,
            tier_spec_name=f"node{mode.slow_node}",
            tier_spec={"numa_node": mode.slow_node, "evidence": mode.reason},
            repeats=req.repeat,
            baseline_seconds=base,
            params={
                "mode": "measured",
                "budgets": req.budgets,
                "strategies": list(req.strategies),
                "baseline_spread": base_spread,
                "baseline_binding": base_ev["binding"],
                "command": command,
                "budget_enforcement": "plan (non-DRAM sites bound to the slow node)"
                if not chunk_bytes
                else "plan (non-DRAM chunks bound to the slow node)",
                "chunk_bytes": chunk_bytes or None,
            },
        )
        rows = []
        for h, ids, med, spread, ev in object_rows:
            site_id = next(o.site_id for o in profile.objects if o.site_hash == h)
            rows.append(
                NewLabel(
                    kind="object",
                    object_id=ids[0],
                    site_id=site_id,
                    strategy="alone (site)",
                    runtime_seconds=med,
                    runtime_spread=spread,
                    penalty_seconds=med - base,  # raw: may dip below 0 within the spread
                    details={**ev, "site_objects": ids},
                )
            )
        for budget, strat, med, spread, ev, slow_ids in plan_rows:
            rows.append(
                NewLabel(
                    kind="plan",
                    budget_fraction=budget,
                    strategy=strat,
                    runtime_seconds=med,
                    runtime_spread=spread,
                    penalty_seconds=med - base,
                    details={**ev, "slow_object_ids": sorted(slow_ids)},
                )
            )
        add_labels(s, exp, rows)
        return {
            "experiment": exp.id,
            "run": profile.run_id,
            "mode": "measured",
            "tier": f"node{mode.slow_node}",
            "baseline_seconds": base,
            "object_labels": len(object_rows),
            "plan_labels": len(plan_rows),
        }
