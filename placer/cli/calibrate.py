"""``placer calibrate``: measure this host's model once and keep it in the store.

Every emulated label, ``placer emulate`` and ``placer recommend`` prices placements against
the stored model, so they give the same numbers whenever they are computed again.
``--show`` prints the stored model without measuring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from placer.cli.context import Context
from placer.collectors.hostmodel import SPREAD_LIMIT, binary_runner, measure_host_model
from placer.contracts.examples import example_bin_dir
from placer.contracts.host import HostModel, this_host
from placer.errors import InvalidInputError
from placer.store.repository.hosts import require_host_model, save_host_model

MiB = 1 << 20


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "calibrate",
        parents=[common],
        description="Measure this host's effective cache size (pointer-chase sweep), DRAM "
        "latency and read/write bandwidth at 1..N threads, repeating until the samples "
        "agree, and store the model. Labels, emulate and recommend use the stored model.",
    )
    p.add_argument(
        "--show", action="store_true", help="print the stored model of this host; measure nothing"
    )
    p.add_argument(
        "--repeats", type=int, default=3, metavar="N", help="samples per point a round (default 3)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="rounds at most, until every point settles (default 3)",
    )
    p.add_argument(
        "--spread-limit",
        type=float,
        default=SPREAD_LIMIT,
        metavar="F",
        help=f"a point is settled when its median is within F of its best (default {SPREAD_LIMIT})",
    )
    p.add_argument(
        "--bin-dir",
        type=Path,
        metavar="DIR",
        help="the built microbenchmarks (default: examples/bin, built when missing)",
    )
    p.set_defaults(handler=_calibrate)


def document(row_id: int, model: HostModel) -> dict[str, Any]:
    """The JSON document of a stored host model (docs/cli.md)."""
    return {
        "host_model": row_id,
        "fingerprint": model.fingerprint(),
        "hostname": model.identity.hostname,
        "cpu_model": model.identity.cpu_model,
        "cpus": model.identity.cpus,
        "effective_cache_bytes": model.effective_cache_bytes,
        "llc_sysfs_bytes": model.identity.llc_sysfs_bytes,
        "dram_latency_ns": model.dram_latency_ns,
        "read_gbps": model.read_bandwidth_gbps,
        "write_gbps": model.write_bandwidth_gbps,
        "spread": model.spread,
        "quiet": model.quiet,
        "rounds": model.rounds,
        "notes": model.notes,
        "model": model.to_dict(),
    }


def _render(doc: dict[str, Any]) -> None:
    model = HostModel.from_dict(doc["model"])
    print(
        f"host model {doc['host_model']} of {doc['hostname']} ({doc['cpus']} CPUs, "
        f"{doc['cpu_model']}), measured: effective cache "
        f"{doc['effective_cache_bytes'] / MiB:.0f} MiB (sysfs says "
        f"{doc['llc_sysfs_bytes'] / MiB:.0f} MiB), DRAM {doc['dram_latency_ns']:.0f} ns, "
        f"read {doc['read_gbps']:.1f} GB/s, write {doc['write_gbps']:.1f} GB/s, "
        f"spread {doc['spread']:.0%} after {doc['rounds']} round(s)"
    )
    rows = [
        [f"{size / MiB:.0f} MiB", f"{p.best:.1f}", f"{p.spread:.0%}"]
        for size, p in sorted(model.chase_ns.items())
    ]
    Context.table("pointer chase (ns per load)", ["working set", "best", "spread"], rows)
    rows = [
        [
            str(t),
            f"{model.read_gbps[t].best:.2f}",
            f"{model.write_gbps[t].best:.2f}",
            f"{max(model.read_gbps[t].spread, model.write_gbps[t].spread):.0%}",
        ]
        for t in sorted(model.read_gbps)
    ]
    Context.table("stream bandwidth (GB/s)", ["threads", "read", "write", "spread"], rows)
    for note in doc["notes"]:
        print(f"note: {note}")


def _calibrate(args: argparse.Namespace, ctx: Context) -> int:
    identity = this_host()
    if args.show:
        store = ctx.open_store()
        try:
            with store.session() as s:
                row = require_host_model(s, identity)
                doc = document(row.id, HostModel.from_dict(row.model))
        finally:
            store.dispose()
        ctx.emit(doc, _render)
        return 0
    if args.repeats < 1 or args.rounds < 1:
        raise InvalidInputError("--repeats and --rounds must be at least 1")
    if not 0 < args.spread_limit < 1:
        raise InvalidInputError(f"--spread-limit must be between 0 and 1, not {args.spread_limit}")
    bin_dir = args.bin_dir if args.bin_dir is not None else example_bin_dir(build=True)
    if bin_dir is None:
        raise InvalidInputError("the example microbenchmarks are not found: pass --bin-dir")
    run = binary_runner(Path(bin_dir))
    # Open (and migrate) the store first: a bad store URL fails before minutes of measuring.
    store = ctx.open_store()
    try:
        tty = ctx.live()

        def progress(step: str) -> None:
            if tty:
                print(f"\rplacer calibrate: {step}\033[K", end="", file=sys.stderr, flush=True)

        model = measure_host_model(
            run,
            identity,
            repeats=args.repeats,
            max_rounds=args.rounds,
            spread_limit=args.spread_limit,
            progress=progress,
        )
        if tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        with store.session() as s:
            row = save_host_model(s, model)
            doc = document(row.id, model)
    finally:
        store.dispose()
    ctx.emit(doc, _render)
    return 0
