"""``placer tiers``: the host's memory nodes, classed DRAM or slow tier, with evidence."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from placer.cli.context import Context
from placer.errors import InvalidInputError
from placer.tiers import detect_nodes


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tiers", parents=[common])
    p.add_argument("--sys-root", default="/", help="read sysfs under this root (recorded trees)")
    p.set_defaults(handler=_tiers)


def _render(doc: dict[str, Any]) -> None:
    gib = 1024**3
    rows = []
    for n in doc["nodes"]:
        hmat = n["hmat"]
        lat = f"{hmat['read_latency']} ns" if "read_latency" in hmat else ""
        rows.append(
            [
                f"node{n['node']}",
                n["kind"],
                "yes" if n["has_cpus"] else "no",
                f"{n['capacity_bytes'] / gib:.1f} GiB",
                f"{n['free_bytes'] / gib:.1f} GiB",
                " ".join(str(d) for d in n["distances"]),
                lat,
                "" if n["memory_tier"] is None else n["memory_tier"],
                "; ".join(n["evidence"]),
            ]
        )
    Context.table(
        f"memory tiers ({doc['dram_nodes']} DRAM, {doc['slow_nodes']} slow)",
        [
            "node",
            "tier",
            "CPUs",
            "capacity",
            "free",
            "distances",
            "HMAT read",
            "memtier",
            "evidence",
        ],
        rows,
    )


def _tiers(args: argparse.Namespace, ctx: Context) -> int:
    if not (Path(args.sys_root) / "sys/devices/system/node").is_dir():
        raise InvalidInputError(
            f"no NUMA information under {args.sys_root}/sys/devices/system/node"
        )
    nodes = detect_nodes(args.sys_root)
    doc = {
        "dram_nodes": sum(n.kind == "dram" for n in nodes),
        "slow_nodes": sum(n.kind != "dram" for n in nodes),
        "nodes": [n.to_dict() for n in nodes],
    }
    ctx.emit(doc, _render)
    return 0
