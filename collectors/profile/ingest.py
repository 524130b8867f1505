"""Turn one profiled run's raw outputs into store rows, in one transaction per phase.

Phase 1 (:func:`begin_run`) stores the Run as ``running`` before the program starts, so its
id can be printed and a crash of placer itself leaves a visible trace. Phase 2
(:func:`ingest_profile`) stores sites, objects (one per allocation, or per chunk; a log
of many allocations arrives already reduced to its significant objects and one aggregate
per site and window, collectors/profile/reduce.py), per-interval metrics and the run's
final status in one transaction: a corrupt log stores nothing of it. Phase 3
(:func:`ingest_dhat`) stores deep-mode statistics, again all or nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.collectors.profile.dhat import match_points, read_dhat
from placer.collectors.profile.intervals import ObjectIndex, Span
from placer.collectors.profile.pysites import python_site_hash, user_python_frames
from placer.collectors.profile.runner import owner_alive, owner_record
from placer.collectors.profile.symbolize import Symbolizer, fallback_name
from placer.collectors.shim.log import cpu_ns_at
from placer.errors import InvalidInputError
from placer.store.repository.hosts import host_row
from placer.store.repository.runs import (
    abandon_runs,
    add_deep_site_stats,
    add_object_metrics,
    add_objects,
    add_run,
    get_or_create_sites,
    merge_run_signals,
    require_run,
    sites_of_run,
)

if TYPE_CHECKING:
    from placer.store.models import Run

#: Work directories of ``placer profile`` (raw shim logs, perf data) start with this.
WORKDIR_PREFIX = "placer-profile-"
#: Objects a chunked profile may store: ``--chunk`` splits each allocation into
#: ceil(size / chunk) objects, so a small chunk would turn a few large buffers into
#: millions of rows (``--chunk 1`` once made 345,800 objects of 3 allocations).
MAX_CHUNK_OBJECTS = 1_000_000
#: The smallest ``--chunk``: binding and sampling work on whole pages.
MIN_CHUNK_BYTES = 4096

ALLOC_KINDS = {
    0: "malloc",
    1: "calloc",
    2: "realloc",
    3: "posix_memalign",
    4: "aligned_alloc",
    5: "memalign",
    6: "mmap",
    7: "valloc",
}


@dataclass
class RunOutcome:
    status: str
    exit_code: int | None
    signal: str | None
    wall_seconds: float
    forwarded: list[str] = field(default_factory=list)


# ----------------------------------------------------------------- phase 1
def begin_run(
    store: Any,
    *,
    app_name: str,
    command: Sequence[str],
    binary_path: str,
    build_id: str,
    inputs: dict[str, Any],
    workdir: Path | None = None,
) -> int:
    """Store the Run (status running, owned by this process) and return its id."""

    abandon_dead_runs(store)
    owner: dict[str, Any] = dict(owner_record())
    if workdir is not None:
        owner["workdir"] = str(workdir)
    with store.session() as s:
        host = host_row(s)
        run = add_run(
            s,
            app_name,
            "profile",
            host_id=host.id,
            command=command,
            cwd=os.getcwd(),
            binary_path=binary_path,
            build_id=build_id,
            inputs=inputs,
            status="running",
            signals={"placer": owner},
        )
        return int(run.id)


def abandon_dead_runs(store: Any) -> list[int]:
    """Mark runs whose placer was killed (SIGKILL, power loss) ``abandoned``; their ids.

    Their work directories, which only that placer would have removed, go too.
    """
    with store.session() as s:
        gone = abandon_runs(s, host_row(s).id, owner_alive)
        dirs = [(r.signals or {}).get("placer", {}).get("workdir") for r in gone]
        ids = [int(r.id) for r in gone]
    for d in dirs:
        if isinstance(d, str) and Path(d).name.startswith(WORKDIR_PREFIX):
            shutil.rmtree(d, ignore_errors=True)
    return ids


def finish_run(store: Any, run_id: int, outcome: RunOutcome, signals: dict[str, Any]) -> None:
    """Set a run's final status without touching its objects (used when ingestion failed)."""

    with store.session() as s:
        _set_outcome(require_run(s, run_id), outcome, signals)


def _set_outcome(run: Run, outcome: RunOutcome, signals: dict[str, Any]) -> None:
    run.status = outcome.status
    run.exit_code = outcome.exit_code
    run.wall_seconds = outcome.wall_seconds
    run.ended_at = dt.datetime.now(dt.UTC)
    merged = dict(signals)
    if outcome.signal:
        merged["terminated_by"] = outcome.signal
    if outcome.forwarded:
        merged["forwarded_signals"] = outcome.forwarded
    merge_run_signals(run, merged)


# ----------------------------------------------------------------- shim logs
def choose_log(logs: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The program's own log, and the others (its children, earlier exec images).

    The program is the root of the logged process tree (its parent wrote no log). When a
    process exec'd (``sh -c prog``), each image has its own log with the same pid: the
    latest image is the program the user meant. If that process logged no allocation (a
    wrapper script), the process with the most allocations is taken instead. Objects of
    one process only are stored; the others' pids are listed in ``signals.shim``.
    """
    pids = {log.header.pid for log in logs}
    roots = [log for log in logs if log.header.ppid not in pids] or list(logs)
    latest: dict[int, Any] = {}
    for log in roots:
        cur = latest.get(log.header.pid)
        if cur is None or log.header.start_ns > cur.header.start_ns:
            latest[log.header.pid] = log
    main = min(latest.values(), key=lambda log: (log.header.start_ns, log.header.pid))
    if not _allocations(main):  # a wrapper (``sh script``): the process that allocated is it
        busiest = max(logs, key=lambda log: (_allocations(log), -log.header.start_ns))
        if _allocations(busiest):
            main = busiest
    return main, [log for log in logs if log is not main]


def _allocations(log: Any) -> int:
    """ALLOC records a log held (a summarized log keeps fewer objects than it saw)."""
    seen = getattr(log, "allocations", None)
    return int(seen) if seen is not None else len(log.allocs)


def site_hash_hex(value: int) -> str:
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def read_py_sightings(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a killed program
        if isinstance(rec, dict) and {"t", "addr", "size", "tb"} <= rec.keys():
            out.append(rec)
    return out


# ----------------------------------------------------------------- phase 2
@dataclass
class ProfileInputs:
    logs: list[Any]  # ShimLog objects, all processes of the run
    chunk_size: int = 0
    perf_samples: list[Any] | None = None  # PerfSample list, or None when perf was off
    perf_signals: dict[str, Any] = field(default_factory=dict)
    py_sightings: list[dict[str, Any]] = field(default_factory=list)
    symbolizer: Symbolizer | None = None
    python: bool = False  # ran through the Python runner (tracemalloc on)


def _symbolize_sites(
    log: Any, used: Iterable[int], symbolizer: Symbolizer | None
) -> dict[int, tuple[list[list[Any]], list[str], list[str]]]:
    """site_hash → (frames [[module path, offset]], ``file:line`` chain, function per frame)."""

    build_ids: dict[str, str] = {}
    for path, build_id in log.modules.values():
        build_ids[path] = build_id.hex() if isinstance(build_id, bytes | bytearray) else ""
    used = [h for h in used if h in log.sites]
    by_module: dict[str, set[int]] = defaultdict(set)
    for h in used:
        for path, offset in log.sites[h]:
            by_module[path].add(offset)
    names: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for path, offsets in by_module.items():
        if symbolizer is None or path.startswith("["):
            got = {off: [(fallback_name(path, off), "")] for off in offsets}
        else:
            got = symbolizer.symbolize_frames(path, build_ids.get(path, ""), offsets)
        for off, found in got.items():
            names[(path, off)] = found
    out: dict[int, tuple[list[list[Any]], list[str], list[str]]] = {}
    for h in used:
        frames: list[list[Any]] = []
        chain: list[str] = []
        functions: list[str] = []
        for path, offset in log.sites[h]:
            frames.append([path, offset])
            for frame, func in names.get((path, offset), [(fallback_name(path, offset), "")]):
                chain.append(frame)
                functions.append(func)
        out[h] = (frames, chain, functions)
    return out


def ingest_profile(
    store: Any,
    run_id: int,
    inputs: ProfileInputs,
    outcome: RunOutcome,
    extra_signals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store everything of phase 2 in one transaction; returns a short summary."""
    signals: dict[str, Any] = dict(extra_signals or {})
    if not inputs.logs:
        signals["shim"] = {"logs": 0, "note": "the shim wrote no log (did the program start?)"}
        finish_run(store, run_id, outcome, signals)
        return {"objects": 0, "sites": 0, "allocations": 0}
    log, others = choose_log(inputs.logs)
    header = log.header
    aggregates: dict[int, dict[str, Any]] = getattr(log, "aggregates", None) or {}
    frees = {f.seq: f for f in log.frees}
    allocs = sorted(log.allocs, key=lambda a: a.seq)
    end_ns = log.end.time_ns if log.end is not None else None
    last_seen = max(
        [a.time_ns for a in allocs]
        + [f.time_ns for f in log.frees]
        + [s.end_ns for s in log.samples]
        + [header.start_ns]
    )
    spans = [
        Span(a.address, a.size, a.time_ns, frees[a.seq].time_ns if a.seq in frees else None)
        for a in allocs
    ]
    # the CPU-time timeline: lifetimes in the program's own CPU time (docs/emulator.md)
    clocks: list[tuple[int, int]] = getattr(log, "clocks", None) or []
    cpu_alloc = cpu_ns_at(clocks, [a.time_ns for a in allocs])
    cpu_end = cpu_ns_at(
        clocks,
        [frees[a.seq].time_ns if a.seq in frees else (end_ns or last_seen) for a in allocs],
    )
    alloc_index = ObjectIndex(spans, 0)
    chunk_index = ObjectIndex(spans, inputs.chunk_size)
    if inputs.chunk_size:
        chunks = sum(chunk_index.chunk_count(a.size) for a in allocs)
        if chunks > MAX_CHUNK_OBJECTS:
            raise InvalidInputError(
                f"--chunk {inputs.chunk_size} splits {len(allocs)} allocations into {chunks} "
                f"objects (at most {MAX_CHUNK_OBJECTS}): use a larger --chunk"
            )

    # Python call sites, joined by address and lifetime
    py_site_of: dict[int, list[tuple[str, int]]] = {}
    py_matched = 0
    if inputs.py_sightings:
        hits = alloc_index.lookup(
            [int(r["t"]) for r in inputs.py_sightings],
            [int(r["addr"]) for r in inputs.py_sightings],
        )
        for rec, hit in zip(inputs.py_sightings, hits, strict=True):
            if hit is None:
                continue
            chain = user_python_frames(rec["tb"])
            if chain:
                py_site_of.setdefault(hit.obj, chain)
                py_matched += 1

    native = _symbolize_sites(log, {a.site_hash for a in allocs}, inputs.symbolizer)
    site_rows: dict[str, dict[str, Any]] = {}
    for h, (frames, names, functions) in native.items():
        site_rows[site_hash_hex(h)] = {
            "language": "c",
            "frames": frames,
            "symbolized": names,
            "functions": functions,
        }
    for py_chain in py_site_of.values():
        site_rows[python_site_hash(py_chain)] = {
            "language": "python",
            "frames": [[f, line] for f, line in py_chain],
            "symbolized": [f"{f}:{line}" for f, line in py_chain],
        }

    # per (alloc, chunk, interval) metrics
    period_ns = (header.sample_period_ms or 1000) * 1_000_000
    metrics: dict[tuple[int, int, int], dict[str, Any]] = {}

    def cell(obj: int, chunk: int, interval: int, start: int, end: int) -> dict[str, Any]:
        key = (obj, chunk, interval)
        m = metrics.get(key)
        if m is None:
            m = metrics[key] = {
                "interval_index": interval,
                "start_ns": start,
                "end_ns": end,
                "sampled_pages": 0,
                "touched_pages": 0,
                "written_pages": 0,
                "page_faults": 0,
                "perf_mem_samples": 0,
                "perf_mem_llc_misses": 0,
                "perf_mem_latency_sum": 0.0,
                "perf_mem_tlb_misses": 0,
            }
        return m

    pos_of_seq = {a.seq: i for i, a in enumerate(allocs)}
    poison = 0
    for rec in log.samples:
        i = pos_of_seq.get(rec.seq)
        if i is None:
            continue
        poison += 1
        for chunk in range(chunk_index.chunk_count(allocs[i].size)):
            m = cell(i, chunk, rec.interval, rec.start_ns, rec.end_ns)
            m["sampled_pages"] += rec.sampled_pages
            m["touched_pages"] += rec.touched_pages
            m["written_pages"] += rec.written_pages

    faults_total = mem_total = mem_levels_unmatched = 0
    mem_levels: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if inputs.perf_samples:
        own = sorted(
            (
                s
                for s in inputs.perf_samples
                if s.pid == header.pid and not s.is_clock and s.time_ns >= header.start_ns
            ),
            key=lambda s: s.time_ns,
        )
        hits = chunk_index.lookup([s.time_ns for s in own], [s.addr for s in own])
        # intervals count the program's CPU time when the shim says so (header flag 4):
        # perf's samples are numbered on the same CPU-time axis, through the CLOCK timeline
        on_cpu = cpu_ns_at(clocks, [s.time_ns for s in own]) if header.flags & 4 else None
        page_mask = ~(max(header.page_size, 1) - 1)
        touched_pages: set[tuple[int, int]] = set()
        for k, (s, hit) in enumerate(zip(own, hits, strict=True)):
            if s.is_fault:
                faults_total += 1
                # only a page's first fault is its first touch: later ones are the shim's
                # page poisoning (protection faults) or copy-on-write
                if hit is None:
                    continue
                key = (hit.obj, s.addr & page_mask)
                if key in touched_pages:
                    continue
                touched_pages.add(key)
            elif s.is_mem:
                mem_total += 1
            if hit is None:
                if s.is_mem:
                    mem_levels_unmatched += 1
                continue
            if on_cpu is not None:
                interval = (on_cpu[k] - clocks[0][1]) // period_ns
                start = s.time_ns  # a cell perf opens: its wall span is not known exactly
            else:
                interval = (s.time_ns - header.start_ns) // period_ns
                start = header.start_ns + interval * period_ns
            m = cell(hit.obj, hit.chunk, int(interval), start, start + period_ns)
            if s.is_fault:
                m["page_faults"] += 1
            elif s.is_mem:
                src = s.source
                m["perf_mem_samples"] += 1
                m["perf_mem_llc_misses"] += int(src.llc_miss)
                m["perf_mem_tlb_misses"] += int(src.tlb == "miss")
                if src.op == "load":
                    m["perf_mem_latency_sum"] += float(s.weight)
                mem_levels[(hit.obj, hit.chunk)][src.level] += 1
                mem_levels[(hit.obj, hit.chunk)][src.op] += 1

    by_obj: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for (obj, chunk, _), m in metrics.items():
        by_obj[(obj, chunk)].append(m)

    with store.session() as s:
        site_ids = get_or_create_sites(s, site_rows)
        object_rows: list[dict[str, Any]] = []
        keys: list[tuple[int, int]] = []
        profiler_dropped = 0
        for i, a in enumerate(allocs):
            native_hash = site_hash_hex(a.site_hash)
            named = py_site_of.get(i)
            if inputs.python and not named and _profiler_own(native.get(a.site_hash)):
                profiler_dropped += 1
                continue
            if named:
                site_id = site_ids[python_site_hash(named)]
            elif a.site_hash in log.sites:
                site_id = site_ids[native_hash]
            else:
                continue  # the log lost the SITE record: nothing can name this object
            free = frees.get(a.seq)
            aggregate = aggregates.get(a.seq)
            n = 1 if aggregate is not None else chunk_index.chunk_count(a.size)
            for c in range(n):
                off = c * inputs.chunk_size if n > 1 else 0
                size = min(inputs.chunk_size, a.size - off) if n > 1 else a.size
                series = sorted(by_obj.get((i, c), []), key=lambda m: m["interval_index"])
                summary = _summary(series, mem_levels.get((i, c)), a, free, end_ns, last_seen)
                if cpu_alloc is not None and cpu_end is not None:
                    summary["lifetime_cpu_ns"] = max(cpu_end[i] - cpu_alloc[i], 0)
                if named:
                    summary["native_site"] = native_hash
                if n > 1 and poison:
                    summary["poison_scope"] = "object"
                if aggregate is not None:
                    summary["aggregate"] = aggregate
                object_rows.append(
                    {
                        "run_id": run_id,
                        "site_id": site_id,
                        "alloc_seq": a.seq,
                        "chunk_index": c,
                        "chunk_count": n,
                        "address": a.address + off,
                        "size_bytes": size,
                        "thread_id": a.tid,
                        "alloc_ns": a.time_ns,
                        "free_ns": free.time_ns if free else None,
                        "allocator": a.kind
                        if isinstance(a.kind, str)
                        else ALLOC_KINDS.get(a.kind, "?"),
                        "first_touch_faults": sum(m["page_faults"] for m in series),
                        "summary": summary,
                    }
                )
                keys.append((i, c))
        ids = add_objects(s, object_rows)
        metric_rows = []
        for obj_id, key in zip(ids, keys, strict=True):
            for m in by_obj.get(key, []):
                metric_rows.append({"object_id": obj_id, **m})
        add_object_metrics(s, metric_rows)
        stats: dict[str, int] = getattr(log, "stats", None) or {}
        signals["shim"] = {
            "pid": header.pid,
            "threshold": header.threshold,
            "stack_depth": header.stack_depth,
            "sample_period_ms": header.sample_period_ms,
            "page_poison": bool(header.flags & 1),
            "truncated": bool(log.truncated),
            "dropped_records": log.end.dropped_records if log.end else None,
            "end_reason": log.end.reason if log.end else None,
            # the program's own time, shim start to END: a run under `perf record` also
            # pays perf's start-up and write-out (about 1 s here) in its wall time
            "program_seconds": (
                (log.end.time_ns - header.start_ns) / 1e9
                if log.end is not None and log.end.time_ns > header.start_ns
                else None
            ),
            # the program's CPU time (all threads), shim start to the last CLOCK record
            "program_cpu_seconds": (
                (clocks[-1][1] - clocks[0][1]) / 1e9 if len(clocks) >= 2 else None
            ),
            "allocations": _allocations(log),
            "samples": poison,
            "other_processes": [o.header.pid for o in others],
            # what was summarized (collectors/profile/reduce.py): None when every object is
            # stored; the features add these totals back (placement.features)
            "summarized": getattr(log, "folded", None),
            # what page poisoning cost the program (the shim's own accounting)
            "sampling_cost": {
                k: stats[k]
                for k in (
                    "sample_intervals",
                    "budget_skips",
                    "sample_faults",
                    "sampler_cpu_ns",
                    "fault_ns",
                )
                if k in stats
            },
        }
        if inputs.perf_samples is not None or inputs.perf_signals:
            perf = dict(inputs.perf_signals)
            perf.update(
                {
                    "page_faults": faults_total,
                    "mem_samples": mem_total,
                    "mem_samples_unmatched": mem_levels_unmatched,
                }
            )
            if inputs.perf_samples:
                clock = sum(1 for x in inputs.perf_samples if x.is_clock and x.pid == header.pid)
                perf["task_clock_ms"] = clock
            signals["perf"] = perf
        if inputs.python or inputs.py_sightings:
            signals["python"] = {
                "tracemalloc_allocations_dropped": profiler_dropped,
                "buffers_seen": len(inputs.py_sightings),
                "objects_named": len(py_site_of),
                "sightings_matched": py_matched,
            }
        _set_outcome(require_run(s, run_id), outcome, signals)
    return {
        "objects": len(object_rows),
        "sites": len(site_rows),
        "allocations": _allocations(log),
        "truncated": bool(log.truncated),
    }


def _profiler_own(site: tuple[list[list[Any]], list[str], list[str]] | None) -> bool:
    """An allocation made by tracemalloc for its own tables (our measurement, not the program).

    Program allocations routed through tracemalloc's hooks have the allocator (obmalloc,
    malloc) innermost and ``_tracemalloc.c`` further out; tracemalloc's own traces and hash
    tables have ``_tracemalloc.c`` or ``hashtable.c`` innermost.
    """
    if site is None or not site[1]:
        return False
    first = os.path.basename(site[1][0]).split(":")[0]
    if first == "_tracemalloc.c":
        return True
    return first == "hashtable.c" and any("_tracemalloc.c" in f for f in site[1])


def _summary(
    series: list[dict[str, Any]],
    levels: dict[str, int] | None,
    alloc: Any,
    free: Any,
    end_ns: int | None,
    last_seen: int,
) -> dict[str, Any]:
    sampled = sum(m["sampled_pages"] for m in series)
    touched = sum(m["touched_pages"] for m in series)
    written = sum(m["written_pages"] for m in series)
    out: dict[str, Any] = {
        "sampled_pages": sampled,
        "touched_pages": touched,
        "written_pages": written,
        "density": touched / sampled if sampled else None,
        "write_share": written / touched if touched else None,
        "series": [
            round(m["touched_pages"] / m["sampled_pages"], 4) if m["sampled_pages"] else None
            for m in series
        ],
    }
    end = free.time_ns if free else (end_ns or last_seen)
    out["lifetime_ns"] = max(end - alloc.time_ns, 0)
    out["alive_at_exit"] = free is None
    mem_n = sum(m["perf_mem_samples"] for m in series)
    if mem_n:
        loads_lat = sum(m["perf_mem_latency_sum"] for m in series)
        out["perf_mem"] = {
            "samples": mem_n,
            "llc_misses": sum(m["perf_mem_llc_misses"] for m in series),
            "tlb_misses": sum(m["perf_mem_tlb_misses"] for m in series),
            "latency_sum": loads_lat,
            "by_level": dict(levels or {}),
        }
    return out


# ----------------------------------------------------------------- phase 3
def ingest_dhat(
    store: Any, run_id: int, dhat_path: Path, *, wall_seconds: float | None
) -> dict[str, Any]:
    """Parse DHAT output and store DeepSiteStat rows for this run's sites, all or nothing."""
    profile = read_dhat(dhat_path)  # raises InvalidInputError before anything is written
    with store.session() as s:
        sites: dict[int, Sequence[str]] = {
            site.id: list(site.symbolized or []) for site in sites_of_run(s, run_id)
        }
        groups = match_points(profile.points, sites)
        scale = (
            wall_seconds * 1e9 / profile.total_time if wall_seconds and profile.total_time else None
        )
        stats: dict[int, dict[str, Any]] = {}
        for sid, points in groups.items():
            tl = sum(p.total_lifetime for p in points)
            stats[sid] = {
                "blocks": sum(p.blocks for p in points),
                "total_bytes": sum(p.total_bytes for p in points),
                "bytes_read": sum(p.bytes_read for p in points),
                "bytes_written": sum(p.bytes_written for p in points),
                "total_lifetime_ns": int(tl * scale) if scale else 0,
                "details": {
                    "points": len(points),
                    "time_unit": profile.time_unit,
                    "total_lifetime": tl,
                    "lifetime_ns_from": "time units scaled by wall time under valgrind"
                    if scale
                    else None,
                    "max_bytes": max(p.max_bytes for p in points),
                },
            }
        add_deep_site_stats(s, run_id, stats)
        merge_run_signals(
            require_run(s, run_id),
            {
                "deep": {
                    "tool": "dhat",
                    "points": len(profile.points),
                    "sites_matched": len(groups),
                    "points_matched": sum(len(v) for v in groups.values()),
                }
            },
        )
    return {"points": len(profile.points), "sites_matched": len(groups)}


def check_log_sanity(log: Any) -> None:
    """Reject logs whose records cannot be true (the reader checks framing, we check sense)."""
    for a in log.allocs:
        if a.size <= 0 or a.address <= 0:
            raise InvalidInputError(
                f"shim log: allocation #{a.seq} has address {a.address:#x} size {a.size}"
            )


def mark_deep_error(store: Any, run_id: int, message: str) -> None:
    """Record on the run that deep mode's output could not be used (no DeepSiteStat rows)."""

    with store.session() as s:
        merge_run_signals(require_run(s, run_id), {"deep": {"tool": "dhat", "error": message}})
