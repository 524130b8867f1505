"""``placer emulate``: estimated runtime of a profiled run under a slow-tier placement."""

from __future__ import annotations

import argparse
from typing import Any

from placer.cli.context import Context
from placer.emulator import costs
from placer.emulator.host import reference, stored
from placer.emulator.load import load_profile
from placer.emulator.plans import resolve_plan, site_objects
from placer.errors import InvalidInputError
from placer.tiers.specs import load_spec


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "emulate",
        parents=[common],
        description="Estimate how long RUN would take with a placement in the slow tier "
        "described by --tier, from its profile and deep-mode (DHAT) traffic. "
        "Model and constants: docs/emulator.md. Nothing is stored.",
    )
    p.add_argument("run", type=int, metavar="RUN", help="profiled run id (see `placer runs`)")
    p.add_argument(
        "--tier",
        default="optane",
        metavar="optane|cxl|FILE",
        help="slow-tier spec: shipped name or TOML file (default optane)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--plan", metavar="PLAN", help="plan file (JSON) or stored plan id")
    which.add_argument("--all-slow", action="store_true", help="every object in the slow tier")
    which.add_argument("--object", metavar="SITE", help="only this site's objects slow (hash)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads the program ran (write saturation; default: as labeled, else all cores)",
    )
    dram = p.add_mutually_exclusive_group()
    dram.add_argument(
        "--reference-dram",
        action="store_true",
        help="use the reference DRAM spec, not this host's stored host model",
    )
    dram.add_argument(
        "--host-model",
        type=int,
        metavar="ID",
        help="price on this stored host model (default: this host's newest; `placer calibrate`)",
    )
    p.add_argument("--limit", type=int, default=20, help="objects shown (default 20; 0: all)")
    p.set_defaults(handler=_emulate)


def _render(doc: dict[str, Any]) -> None:
    print(
        f"run {doc['run']} ({doc['app']}) on tier {doc['tier']}: "
        f"{doc['base_seconds']:.3f} s all-DRAM -> {doc['runtime_seconds']:.3f} s "
        f"({doc['slowdown']:.2f}x) with {doc['placement']['slow_objects']} object(s), "
        f"{doc['placement']['slow_bytes'] / 2**20:.1f} MiB in the slow tier"
    )
    for note in doc["notes"]:
        print(f"note: {note}")
    rows = [
        [
            o["object"],
            o["name"],
            o["chunk"],
            f"{o['size_bytes'] / 2**20:.2f}",
            "slow" if o["slow"] else "dram",
            f"{o['penalty_seconds']:.4f}",
            f"{o['random_share']:.2f}",
            o["traffic"],
        ]
        for o in doc["objects"]
    ]
    Context.table(
        "per-object penalty (object alone in the slow tier)",
        ["object", "site", "chunk", "MiB", "placed", "penalty s", "random", "traffic"],
        rows,
    )


def _emulate(args: argparse.Namespace, ctx: Context) -> int:
    spec = load_spec(args.tier)
    ref = load_spec("dram")
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError("--threads must be >= 1")
    with ctx.open_store(create=False) as store, store.session() as s:
        profile = load_profile(s, args.run, threads=args.threads)
        if args.all_slow:
            slow, kind = {o.object_id for o in profile.objects}, "all-slow"
        elif args.object:
            slow, kind = site_objects(profile, args.object), "object"
        else:
            slow, kind = resolve_plan(s, args.plan, profile), "plan"
        host = reference() if args.reference_dram else stored(s, args.host_model)
    cs, r = costs(profile, spec, ref, host)
    runtime = profile.wall_seconds + sum(cs[i].penalty_s for i in slow)
    ordered = sorted(profile.objects, key=lambda o: -cs[o.object_id].penalty_s)
    if args.limit:
        ordered = ordered[: args.limit]
    doc = {
        "run": profile.run_id,
        "app": profile.app,
        "deep_run": profile.deep_run_id,
        "tier": spec.name,
        "emulated": True,
        "base_seconds": profile.wall_seconds,
        "runtime_seconds": runtime,
        "slowdown": runtime / profile.wall_seconds,
        "placement": {
            "kind": kind,
            "slow_objects": len(slow),
            "slow_bytes": sum(o.size_bytes for o in profile.objects if o.object_id in slow),
            "footprint_bytes": profile.footprint,
        },
        "ratios": r,
        "host_dram": host.to_dict(),
        "notes": profile.notes,
        "objects": [
            {
                "object": o.object_id,
                "site": o.site_hash,
                "name": o.name,
                "chunk": o.chunk_index,
                "size_bytes": o.size_bytes,
                "slow": o.object_id in slow,
                "penalty_seconds": cs[o.object_id].penalty_s,
                "random_share": cs[o.object_id].random_share,
                "pattern": cs[o.object_id].pattern_evidence,
                "traffic": o.traffic_source,
                "bytes_read": o.bytes_read,
                "bytes_written": o.bytes_written,
            }
            for o in ordered
        ],
    }
    ctx.emit(doc, _render)
    return 0
