"""The measured path: run a program with a plan bound through the shim, and check it held.

The plan is the shim's own text (``site_hash node`` lines, and ``site_hash node chunk
chunk_bytes`` lines for a site bound chunk by chunk), written by
:func:`placer.placement.planfile.shim_lines`, the writer ``placer run --plan`` uses. The run
and its evidence are :mod:`placer.act.bind`'s too: the shim ``mbind``\\ s each
matching allocation (or each planned chunk's whole pages) and writes a BIND record with the
result, ``/proc/PID/numa_maps`` is sampled while the program runs, and every bound
allocation or chunk is joined to the ranges seen while it was alive to count its pages per
node. The DRAM budget is enforced by the plan itself: every site (or, in a run profiled
with chunks, every chunk) not kept in DRAM is bound to the slow node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from placer.act import bind
from placer.emulator.model import RunProfile
from placer.errors import InvalidInputError
from placer.placement.planfile import parse_shim_lines, shim_lines


@dataclass
class PlanRun:
    wall_seconds: float
    exit_code: int
    evidence: dict[str, Any]


def slow_lines(
    profile: RunProfile, slow_ids: Iterable[int], slow_node: int, chunk_bytes: int = 0
) -> list[str]:
    """Shim plan lines binding the objects ``slow_ids`` of ``profile`` to ``slow_node``.

    A site whose objects are all slow (or any of them, when the run was not profiled with
    chunks: the shim can only bind it whole) is bound whole; a site of which only some
    chunks are slow gets one line per slow chunk, so its other chunks keep the default
    local (DRAM) policy. Sites without a slow object are not named.
    """
    slow = set(slow_ids)
    by_site: dict[str, list[Any]] = {}
    for o in profile.objects:
        by_site.setdefault(o.site_hash, []).append(o)
    decisions = []
    partial: set[str] = set()
    for site, objs in by_site.items():
        chosen = [o for o in objs if o.object_id in slow]
        if not chosen:
            continue
        if chunk_bytes > 0 and len(chosen) < len(objs):
            partial.add(site)
        for o in chosen if site in partial else objs:
            decisions.append(
                {
                    "site": site,
                    "chunk": o.chunk_index,
                    "node": slow_node,
                    "size_bytes": o.size_bytes,
                }
            )
    return shim_lines({"decisions": decisions}, chunk_bytes, per_chunk=frozenset(partial))


def evidence(outcome: bind.RunOutcome, lines: list[str]) -> dict[str, Any]:
    """What the shim and numa_maps say of the plan: :func:`bind.achieved` with totals.

    ``binds_ok`` / ``binds_failed`` count BIND records (one per allocation bound whole, one
    per chunk bound); ``numa_maps_pages`` the pages per node (``N<node>``) of the bound
    allocations or chunks; ``share_on_planned_node`` the share of those pages on the node
    their line named; ``sites`` per site (and ``chunks`` per chunk) the same.
    """
    site_of, planned, planned_chunks = parse_shim_lines(lines)
    main = outcome.logs[0] if outcome.logs else None
    if main is None:
        return {"planned_lines": len(lines), "error": "the shim wrote no log"}
    got = bind.achieved(
        main.allocs, main.binds, main.frees, outcome.snapshots, site_of, planned, planned_chunks
    )
    pages: dict[str, int] = {}
    ok = failed = 0
    for entry in got["sites"].values():
        ok += entry["binds_ok"]
        failed += entry["binds_failed"]
        for node, n in entry["pages"].items():
            pages[f"N{node}"] = pages.get(f"N{node}", 0) + n
    return {
        "planned_lines": len(lines),
        "chunk_lines": sum(1 for line in lines if len(line.split()) == 4),
        "binds_ok": ok,
        "binds_failed": failed,
        "numa_maps_pages": pages,
        "numa_maps_sampled": bool(outcome.snapshots),
        "share_on_planned_node": got["share_on_planned_node"],
        "sites": got["sites"],
        "log_truncated": bool(getattr(main, "truncated", False)),
    }


def run_with_plan(command: list[str], lines: list[str], *, quiet: bool = True) -> PlanRun:
    """Run ``command`` with the shim plan ``lines`` bound; its wall time and the evidence."""
    if not command:
        raise InvalidInputError("no command to measure")
    outcome = bind.run_with_plan(command, lines, quiet=quiet)
    if outcome.status == "interrupted":
        raise KeyboardInterrupt
    if outcome.status != "succeeded" or outcome.exit_code != 0:
        name = command[0].rsplit("/", 1)[-1]
        raise InvalidInputError(f"{name} exited with {outcome.exit_code} under the plan")
    return PlanRun(outcome.wall_seconds, outcome.exit_code, evidence(outcome, lines))
