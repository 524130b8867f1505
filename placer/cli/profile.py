"""``placer profile``, ``placer runs``, ``placer objects``: profile programs, read profiles.

Heavy work lives in :mod:`placer.collectors.profile`; this module parses arguments and renders.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from placer.cli.context import Context
from placer.collectors.profile.ingest import abandon_dead_runs
from placer.collectors.profile.session import ProfileRequest, parse_size, run_profile
from placer.contracts.naming import site_chain, site_label, wrapper_frames
from placer.daemon.client import close_job, register_self
from placer.errors import InvalidInputError, NotFoundError, StoreError
from placer.store.repository.runs import (
    deep_stats_by_site,
    metrics_by_object,
    objects_with_sites,
    run_with_application,
    runs_with_object_counts,
)

SORT_KEYS = (
    "density",
    "size",
    "lifetime",
    "faults",
    "writes",
    "address",
    "seq",
    "dhat-reads",
    "dhat-writes",
    "mem-misses",
)
SPARK = "▁▂▃▄▅▆▇█"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "profile",
        parents=[common],
        description="Run CMD with the allocation shim preloaded (and perf where it works); "
        "its output passes through untouched, placer exits with its exit code and prints "
        "the run id on stderr.",
    )
    p.add_argument("--name", metavar="APP", help="application name (default: program name)")
    p.add_argument(
        "--deep",
        action="store_true",
        help="run under valgrind DHAT for exact per-site bytes read/written",
    )
    p.add_argument(
        "--chunk",
        metavar="SIZE",
        default="0",
        help="split objects larger than SIZE into SIZE chunks (e.g. 2MiB)",
    )
    p.add_argument(
        "--sample-period",
        metavar="MS",
        type=int,
        default=None,
        help="page-poison sampling period in ms (0: off; default: the shim's)",
    )
    p.add_argument(
        "--sample-budget",
        metavar="PCT",
        type=float,
        default=None,
        help="cap what page-poison sampling costs at PCT%% of the program's CPU time "
        "(default: the shim's, 1; 0: no cap)",
    )
    p.add_argument(
        "--sample-pages",
        metavar="N",
        type=int,
        default=None,
        help="page-poison pages per object per interval, 1..64 (default: the shim's, 4; "
        "placer experiment uses 16)",
    )
    p.add_argument(
        "--threshold",
        metavar="SIZE",
        default=None,
        help="log allocations of at least SIZE (default: the shim's, 64KiB)",
    )
    p.add_argument("--no-perf", action="store_true", help="do not use perf even if it works")
    p.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the program to profile and its arguments",
    )
    p.set_defaults(handler=_profile)

    r = sub.add_parser("runs", parents=[common])
    r.add_argument("--limit", type=int, default=50, help="newest N runs (default 50)")
    r.add_argument("--app", metavar="APP", help="only runs of this application")
    r.set_defaults(handler=_runs)

    o = sub.add_parser("objects", parents=[common])
    o.add_argument("run", type=int, metavar="RUN", help="run id (see `placer runs`)")
    o.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="density",
        help="order (default: density = sampled touched/sampled pages)",
    )
    o.add_argument("--limit", type=int, default=30, help="at most N objects (default 30; 0: all)")
    o.set_defaults(handler=_objects)


# ----------------------------------------------------------------- profile
def _profile(args: argparse.Namespace, ctx: Context) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InvalidInputError("nothing to profile: placer profile [options] -- CMD ARGS...")
    req = ProfileRequest(
        command=cmd,
        name=args.name,
        deep=args.deep,
        chunk=parse_size(args.chunk, "--chunk"),
        sample_period_ms=args.sample_period,
        sample_budget_pct=args.sample_budget,
        sample_pages=args.sample_pages,
        threshold=parse_size(args.threshold, "--threshold") if args.threshold else None,
        perf=not args.no_perf,
    )

    job = register_self(cmd, say=lambda m: print(f"placer: {m}", file=sys.stderr))
    code: int | None = None
    try:
        with ctx.open_store() as store:
            run_id, code, summary = run_profile(store, req)
    finally:
        close_job(
            job,
            code,
            "exited" if code is not None else "crashed",
            run_id=run_id if code is not None else None,
        )
    if ctx.format == "json":
        json.dump({"run": run_id, "exit_code": code, **summary}, sys.stderr)
        sys.stderr.write("\n")
    return code


# ----------------------------------------------------------------- runs
def _runs(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=False) as store:
        # a run whose placer was killed is shown as abandoned, not running forever
        with contextlib.suppress(StoreError):
            abandon_dead_runs(store)
        return _list_runs(args, ctx, store)


def _list_runs(args: argparse.Namespace, ctx: Context, store: Any) -> int:
    with store.session() as s:
        runs = [
            {
                "id": row.run.id,
                "application": row.application,
                "status": row.run.status,
                "exit_code": row.run.exit_code,
                "wall_seconds": row.run.wall_seconds,
                "objects": row.objects,
                "command": row.run.command,
                "binary_path": row.run.binary_path,
                "build_id": row.run.build_id,
                "started_at": row.run.started_at.isoformat() if row.run.started_at else None,
                "signals": row.run.signals or {},
            }
            for row in runs_with_object_counts(s, app=args.app, limit=args.limit)
        ]
    doc = {"runs": runs}

    def render(d: dict[str, Any]) -> None:
        ctx.table(
            "profiled runs",
            ["run", "app", "status", "exit", "wall s", "objects", "started", "command"],
            [
                [
                    r["id"],
                    r["application"],
                    r["status"],
                    r["exit_code"],
                    f"{r['wall_seconds']:.2f}" if r["wall_seconds"] is not None else "",
                    r["objects"],
                    (r["started_at"] or "")[:19],
                    _clip(" ".join(map(str, r["command"])), 60),
                ]
                for r in d["runs"]
            ],
        )

    ctx.emit(doc, render)
    return 0


# ----------------------------------------------------------------- objects
def objects_document(
    store: Any, run_id: int, sort: str = "density", limit: int = 0
) -> dict[str, Any]:
    """The JSON document of ``placer objects`` (documented in docs/cli.md)."""
    with store.session() as s:
        row = run_with_application(s, run_id)
        if row is None:
            raise NotFoundError(f"run {run_id} not found (see `placer runs`)")
        run, app = row
        deep = deep_stats_by_site(s, run_id)
        objs = objects_with_sites(s, run_id)
        wrappers = wrapper_frames(site_chain(site) for site in {x.id: x for _, x in objs}.values())
        series: dict[int, list[dict[str, Any]]] = {
            object_id: [
                {
                    "interval": m.interval_index,
                    "start_ns": m.start_ns,
                    "end_ns": m.end_ns,
                    "sampled_pages": m.sampled_pages,
                    "touched_pages": m.touched_pages,
                    "written_pages": m.written_pages,
                    "page_faults": m.page_faults,
                    "perf_mem_samples": m.perf_mem_samples,
                    "perf_mem_llc_misses": m.perf_mem_llc_misses,
                    "perf_mem_latency_sum": m.perf_mem_latency_sum,
                    "perf_mem_tlb_misses": m.perf_mem_tlb_misses,
                }
                for m in rows
            ]
            for object_id, rows in metrics_by_object(s, run_id).items()
        }
        start_ns = min((o.alloc_ns for o, _ in objs), default=0)
        items = []
        for o, site in objs:
            summ = o.summary or {}
            d = deep.get(site.id)
            chain, functions = site_chain(site)
            items.append(
                {
                    "id": o.id,
                    "alloc_seq": o.alloc_seq,
                    "chunk_index": o.chunk_index,
                    "chunk_count": o.chunk_count,
                    "site": {
                        "id": site.id,
                        "hash": site.site_hash,
                        "language": site.language,
                        "chain": chain,
                        "functions": functions,
                        "label": site_label(chain, 3, functions, wrappers),
                    },
                    "address": o.address,
                    "size_bytes": o.size_bytes,
                    "thread_id": o.thread_id,
                    "allocator": o.allocator,
                    "alloc_ns": o.alloc_ns,
                    "free_ns": o.free_ns,
                    "alloc_offset_s": (o.alloc_ns - start_ns) / 1e9,
                    "lifetime_s": summ.get("lifetime_ns", 0) / 1e9,
                    "alive_at_exit": summ.get("alive_at_exit", o.free_ns is None),
                    "density": summ.get("density"),
                    "write_share": summ.get("write_share"),
                    "sampled_pages": summ.get("sampled_pages", 0),
                    "touched_pages": summ.get("touched_pages", 0),
                    "written_pages": summ.get("written_pages", 0),
                    "first_touch_faults": o.first_touch_faults,
                    "perf_mem": summ.get("perf_mem"),
                    "dhat": None
                    if d is None
                    else {
                        "site_total_bytes": d.total_bytes,
                        "site_blocks": d.blocks,
                        "site_bytes_read": d.bytes_read,
                        "site_bytes_written": d.bytes_written,
                        "site_total_lifetime_ns": d.total_lifetime_ns,
                    },
                    "poison_scope": summ.get(
                        "poison_scope", "chunk" if o.chunk_count > 1 else "object"
                    ),
                    "series": series.get(o.id, []),
                    # a summarized run's stand-in for a site's small, short-lived objects
                    # in one time window (docs/profiling.md); None for an object itself
                    "aggregate": summ.get("aggregate"),
                }
            )
    items.sort(key=_sort_key(sort))
    total = len(items)
    if limit > 0:
        items = items[:limit]
    return {
        "run": {
            "id": run.id,
            "application": app,
            "status": run.status,
            "exit_code": run.exit_code,
            "wall_seconds": run.wall_seconds,
            "command": run.command,
            "signals": run.signals or {},
        },
        "sort": sort,
        "total_objects": total,
        "objects": items,
    }


def _sort_key(sort: str) -> Any:
    def neg(v: Any) -> float:
        return -float(v) if v is not None else float("inf")

    keys = {
        "density": lambda o: (neg(o["density"]), -o["size_bytes"]),
        "size": lambda o: (-o["size_bytes"], o["alloc_seq"]),
        "lifetime": lambda o: (neg(o["lifetime_s"]), o["alloc_seq"]),
        "faults": lambda o: (-o["first_touch_faults"], o["alloc_seq"]),
        "writes": lambda o: (neg(o["write_share"]), o["alloc_seq"]),
        "address": lambda o: (o["address"],),
        "seq": lambda o: (o["alloc_seq"], o["chunk_index"]),
        "dhat-reads": lambda o: (neg((o["dhat"] or {}).get("site_bytes_read")), o["alloc_seq"]),
        "dhat-writes": lambda o: (neg((o["dhat"] or {}).get("site_bytes_written")), o["alloc_seq"]),
        "mem-misses": lambda o: (neg((o["perf_mem"] or {}).get("llc_misses")), o["alloc_seq"]),
    }
    return keys[sort]


def sparkline(values: list[float | None], width: int = 16) -> str:
    """Compact series: at most ``width`` buckets (means), scaled 0..1 to ▁..█."""
    vals = [v for v in values]
    if not vals:
        return ""
    if len(vals) > width:
        step = len(vals) / width
        buckets = []
        for b in range(width):
            part = [v for v in vals[int(b * step) : int((b + 1) * step)] if v is not None]
            buckets.append(sum(part) / len(part) if part else None)
        vals = buckets
    return "".join(
        " " if v is None else SPARK[min(int(v * len(SPARK)), len(SPARK) - 1)] for v in vals
    )


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _objects(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=False) as store:
        doc = objects_document(store, args.run, args.sort, args.limit)

    def render(d: dict[str, Any]) -> None:
        run = d["run"]
        has_deep = any(o["dhat"] for o in d["objects"])
        has_mem = any(o["perf_mem"] for o in d["objects"])
        cols = ["obj", "site", "size", "life s", "density", "over time", "writes", "faults"]
        if has_deep:
            cols += ["dhat read", "dhat written"]
        if has_mem:
            cols += ["mem smp", "LLC miss", "avg lat"]
        rows = []
        for o in d["objects"]:
            chunk = f" [{o['chunk_index']}/{o['chunk_count']}]" if o["chunk_count"] > 1 else ""
            agg = o.get("aggregate") or {}
            dens = [
                (m["touched_pages"] / m["sampled_pages"]) if m["sampled_pages"] else None
                for m in o["series"]
            ]
            row = [
                # an aggregate: how many small short-lived objects of its site it stands for
                f"{o['id']} ×{agg.get('objects', 0)}" if agg else o["id"],
                o["site"]["label"] + chunk,
                _human(o["size_bytes"]),
                f"{o['lifetime_s']:.2f}",
                "" if o["density"] is None else f"{o['density']:.2f}",
                sparkline(dens),
                "" if o["write_share"] is None else f"{o['write_share']:.0%}",
                o["first_touch_faults"],
            ]
            if has_deep:
                dh = o["dhat"] or {}
                row += [
                    _human(dh["site_bytes_read"]) if dh else "",
                    _human(dh["site_bytes_written"]) if dh else "",
                ]
            if has_mem:
                pm = o["perf_mem"] or {}
                row += [
                    pm.get("samples", ""),
                    pm.get("llc_misses", ""),
                    f"{pm['latency_sum'] / pm['samples']:.0f}" if pm else "",
                ]
            rows.append(row)
        title = (
            f"run {run['id']} ({run['application']}, {run['status']}): "
            f"{len(d['objects'])} of {d['total_objects']} objects by {d['sort']}"
        )
        ctx.table(title, cols, rows)

    ctx.emit(doc, render)
    return 0
