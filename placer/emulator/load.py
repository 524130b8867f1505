"""Read a profiled run from the store into the emulator's :class:`RunProfile`.

Deep mode runs the program under valgrind, so its wall time is not a native baseline, and
a native run has no exact byte counts. The emulator therefore pairs runs of the same
command and binary (build id): the *native* run gives the base time, objects, lifetimes and
page-poison series; the *deep* run gives DHAT's exact bytes read/written per site, shared
among the native run's objects of that site by size x sampled access density.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from placer.contracts.naming import object_name, site_chain, wrapper_frames
from placer.emulator.model import ObjectTraffic, RunProfile
from placer.errors import InvalidInputError
from placer.store.repository.runs import (
    application_name,
    deep_stats_by_site,
    has_deep_stats,
    objects_of_run,
    require_run,
    sites_by_id,
    succeeded_runs_of_build,
    update_run_inputs,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from placer.store.models import Run


def _aggregate(obj: Any) -> dict[str, Any]:
    """A summarized run's aggregate row: its counts (docs/profiling.md); {} for an object."""
    agg = (obj.summary or {}).get("aggregate")
    return agg if isinstance(agg, dict) else {}


def _is_deep(run: Any) -> bool:
    return bool((run.inputs or {}).get("deep"))


def _companion(session: Session, run: Run, *, deep: bool) -> Run | None:
    """The newest finished run of the same command and binary, deep or native."""
    for other in succeeded_runs_of_build(session, run.build_id, besides=run.id):
        if list(other.command or []) != list(run.command or []) or _is_deep(other) != deep:
            continue
        if deep and not has_deep_stats(session, other.id):
            continue
        return other
    return None


#: Where a run keeps the wall and CPU times of plain runs of its command (no shim, no perf).
PLAIN_RUNS = "plain_runs"
PLAIN_RUNS_CPU = "plain_runs_cpu"
#: Where a run keeps the threads its thread pools were given for labeling (1 by default).
THREADS_KEY = "label_threads"
#: An object's lifetime in the program's CPU time (the ingest's, from CLOCK records).
CPU_LIFETIME = "lifetime_cpu_ns"


@dataclass(frozen=True)
class PlainRuns:
    """Plain runs of a command: wall seconds and CPU seconds (user + system, the program
    and the children it waited for), in run order."""

    wall: list[float]
    cpu: list[float]

    def __bool__(self) -> bool:
        return bool(self.wall)


def _seconds(values: Any) -> list[float]:
    return [float(v) for v in values or [] if isinstance(v, int | float) and v > 0]


def plain_runs(run: Run) -> PlainRuns:
    """The stored plain runs of ``run``'s command: its all-DRAM base is the fastest."""
    inputs = run.inputs or {}
    return PlainRuns(_seconds(inputs.get(PLAIN_RUNS)), _seconds(inputs.get(PLAIN_RUNS_CPU)))


def record_plain_runs(
    session: Session, run_id: int, runs: PlainRuns, threads: int | None = None
) -> None:
    """Keep plain runs' times (and the threads the program's pools were given) on the run,
    so every later pricing of it uses the same base."""
    inputs: dict[str, Any] = {
        PLAIN_RUNS: [round(x, 6) for x in runs.wall],
        PLAIN_RUNS_CPU: [round(x, 6) for x in runs.cpu],
    }
    if threads is not None:
        inputs[THREADS_KEY] = threads
    update_run_inputs(session, run_id, inputs)


def _overhead_scale(profiled_cpu: Any, plain: PlainRuns, cpu_base: bool) -> float:
    """What takes the profiler's own CPU time out of lifetimes read off its CLOCK timeline.

    The shim's timeline counts the process's CPU time under the shim and perf: page-fault
    samples, poison faults, the sampler thread. That overhead is 1.7x to 3x of a short
    program's own time and moves with load (seqwrite -m 64M: 0.22 s and then 0.12 s under
    the shim, 0.069 s plain both times), so lifetimes on it made rates and cap 1 load-
    dependent. Scaling the timeline to the plain runs' CPU time (the base) puts lifetimes
    on the base's clock; the overhead is taken as spread evenly over the run. 1.0 where
    there are no plain runs (the base is then the profiled run's own time) or the profiled
    run was not slower.
    """
    if not cpu_base or not plain.cpu or not isinstance(profiled_cpu, int | float):
        return 1.0
    base = min(plain.cpu)
    return base / profiled_cpu if profiled_cpu > base else 1.0


def load_profile_native(session: Session, run_id: int) -> RunProfile:
    """A native run's objects without traffic (the measured path needs no deep data)."""
    return load_profile(session, run_id, require_deep=False)


def load_profile(
    session: Session, run_id: int, *, threads: int | None = None, require_deep: bool = True
) -> RunProfile:
    """The run (or its native companion) with deep traffic; one-line errors otherwise."""
    run = require_run(session, run_id)
    notes: list[str] = []
    native: Run = run
    deep: Run | None = None
    if _is_deep(run):
        deep = run
        companion = _companion(session, run, deep=False)
        if companion is None:
            raise InvalidInputError(
                f"run {run_id} ran under valgrind (--deep), so its wall time is no baseline: "
                f"profile the same command without --deep first"
            )
        native = companion
        notes.append(f"base time and objects from native run {native.id}")
    elif has_deep_stats(session, run.id):
        deep = run
    elif require_deep and (run.inputs or {}).get("python"):
        # Python objects are named by their Python call site; DHAT sees only the C stacks
        # (all numpy buffers share one), so no DHAT point can be joined to them.
        notes.append("Python run: DHAT cannot name Python objects; sampled lower bound used")
    elif require_deep:
        deep = _companion(session, run, deep=True)
        if deep is None:
            raise InvalidInputError(
                f"run {run_id} has no deep-mode data (exact DHAT bytes per site), which the "
                f"emulator needs: run `placer profile --deep` on the same command"
            )
        notes.append(f"DHAT traffic from deep run {deep.id}")
    if native.status != "succeeded" or not native.program_seconds:
        raise InvalidInputError(f"run {native.id} did not succeed ({native.status}): no baseline")

    app = application_name(session, native.application_id)
    stats = deep_stats_by_site(session, deep.id) if deep else {}
    objs = objects_of_run(session, native.id)
    sites = sites_by_id(session, {o.site_id for o in objs})
    wrappers = wrapper_frames(site_chain(s) for s in sites.values())
    period_ms = ((native.signals or {}).get("shim") or {}).get("sample_period_ms") or 0

    alloc_size: dict[int, int] = defaultdict(int)  # alloc_seq -> bytes over its chunks
    for o in objs:
        alloc_size[o.alloc_seq] += o.size_bytes

    weight: dict[int, float] = {}
    per_site: dict[int, float] = defaultdict(float)
    for o in objs:
        density = (o.summary or {}).get("density")
        nbytes = _aggregate(o).get("bytes") or o.size_bytes  # an aggregate: all its objects
        w = nbytes * (density if isinstance(density, int | float) and density > 0 else 1.0)
        weight[o.id] = w
        per_site[o.site_id] += w

    # The time base: the program's CPU time where the profile has its CPU-time timeline
    # (the shim's CLOCK records) and a CPU base, else wall time (docs/emulator.md).
    plain = plain_runs(native)
    shim = (native.signals or {}).get("shim") or {}
    base_cpu = min(plain.cpu) if plain.cpu else shim.get("program_cpu_seconds")
    cpu_base = (
        bool(objs)
        and isinstance(base_cpu, int | float)
        and base_cpu > 0
        and all(isinstance((o.summary or {}).get(CPU_LIFETIME), int | float) for o in objs)
    )
    overhead = _overhead_scale(shim.get("program_cpu_seconds"), plain, cpu_base)
    objects: list[ObjectTraffic] = []
    unmatched = 0
    for o in objs:
        summary = o.summary or {}
        site = sites.get(o.site_id)
        stat = stats.get(o.site_id)
        series = [d if isinstance(d, int | float) else None for d in summary.get("series", [])]
        lifetime = summary.get(CPU_LIFETIME if cpu_base else "lifetime_ns")
        if not isinstance(lifetime, int | float):
            end = o.free_ns if o.free_ns is not None else o.alloc_ns
            lifetime = max(end - o.alloc_ns, 0)
        if stat is not None and per_site[o.site_id] > 0:
            share = weight[o.id] / per_site[o.site_id]
            r, w, source = stat.bytes_read * share, stat.bytes_written * share, "dhat"
        else:
            # Lower bound from sampling: every touched page was accessed once per interval.
            unmatched += 1
            active = sum(d for d in series if d)
            r = active * o.size_bytes
            wshare = summary.get("write_share") or 0.0
            w, r = r * wshare, r * (1 - wshare)
            source = "sampled-lower-bound" if active else "none"
        name = ""
        if site is not None:
            chain, functions = site_chain(site)
            name = object_name(chain, site.site_hash, functions, wrappers)
        agg = _aggregate(o)
        count = int(agg.get("objects") or 1)
        if count > 1 and lifetime:  # each of its objects lives the mean lifetime
            mean = float(agg.get("mean_lifetime_ns") or 0.0)
            window = max(int(o.free_ns or o.alloc_ns) - o.alloc_ns, 1)
            lifetime = lifetime * min(mean / window, 1.0)
        if cpu_base and summary.get(CPU_LIFETIME) is not None:
            lifetime = lifetime * overhead
        objects.append(
            ObjectTraffic(
                object_id=o.id,
                site_id=o.site_id,
                site_hash=site.site_hash if site else "",
                name=name,
                chunk_index=o.chunk_index,
                size_bytes=o.size_bytes,
                bytes_read=float(r),
                bytes_written=float(w),
                lifetime_s=float(lifetime) / 1e9,
                density_series=series,
                sample_period_s=period_ms / 1000.0,
                traffic_source=source,
                sampled_pages=int(summary.get("sampled_pages") or 0),
                alloc_bytes=alloc_size[o.alloc_seq] if o.chunk_count > 1 else 0,
                alloc_id=o.alloc_seq if o.chunk_count > 1 else None,
                samples_of_allocation=summary.get("poison_scope") == "object",
                multiplicity=count,
                instance_bytes=round(int(agg.get("bytes") or 0) / count) if count > 1 else 0,
            )
        )
    if unmatched:
        notes.append(f"{unmatched} objects have no DHAT match: sampled lower bound used")
    if cpu_base:
        assert isinstance(base_cpu, int | float)
        base = float(base_cpu)
        notes.append(
            f"time base: CPU time; base the fastest of {len(plain.cpu)} plain runs"
            if plain.cpu
            else "time base: CPU time; base the profiled run's (shim start to END)"
        )
        if overhead < 1.0:
            notes.append(
                f"lifetimes scaled by {overhead:.3f}: the profiled run's CPU time to the "
                "plain runs' (the profiler's own CPU time taken out evenly)"
            )
    else:
        base = float(native.program_seconds)  # the program's own time, not perf's
        if plain:
            base = min(plain.wall)
            notes.append(f"base time: the fastest of {len(plain.wall)} plain runs")
        notes.append("time base: wall time (the profile has no CPU-time timeline)")
    stored_threads = (native.inputs or {}).get(THREADS_KEY)
    return RunProfile(
        run_id=native.id,
        app=app or "",
        build_id=native.build_id,
        wall_seconds=base,
        threads=threads
        or (stored_threads if isinstance(stored_threads, int) else 0)
        or os.cpu_count()
        or 1,
        objects=objects,
        deep_run_id=deep.id if deep else None,
        notes=notes,
        time_base="cpu" if cpu_base else "wall",
    )
