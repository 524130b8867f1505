"""Bind a plan at allocation (act layer): run a program with the shim binding planned sites.

``placer run --plan`` and the measured labels of ``placer experiment`` run through here.

The shim reads ``PLACER_SHIM_PLAN`` (``site_hash node [chunk chunk_size]`` lines,
:func:`planfile.shim_lines`) and ``mbind``\\ s each matching allocation (or each planned
chunk of it) to its node when it is made, logging a BIND record (node, errno, chunk).
Allocations of sites the plan does not name keep the kernel's default local policy: DRAM
first (``default_tier: dram``), so unknown or small data is never pushed to the slow tier
by a guess.

While the program runs, ``/proc/PID/numa_maps`` is sampled; afterwards every bound
allocation is joined (by address range and lifetime) to the VMAs seen while it was alive,
giving the pages it really had on each node. That is what ``achieved`` stores.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.profile.runner import run_program
from collectors.shim.library import shim_env
from collectors.shim.log import find_logs, read_log

_NODE = re.compile(r"\bN(\d+)=(\d+)")
_KPS = re.compile(r"\bkernelpagesize_kB=(\d+)")


@dataclass
class Vma:
    start: int
    policy: str
    pages: dict[int, int]  # node → pages (of ``page_kb`` KiB)
    page_kb: int = 4


@dataclass
class Snapshot:
    time_ns: int
    vmas: list[Vma] = field(default_factory=list)


def parse_numa_maps(text: str) -> list[Vma]:
    """``/proc/PID/numa_maps`` text → VMAs with their policy and per-node page counts."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        try:
            start = int(parts[0], 16)
        except ValueError:
            continue
        rest = parts[2] if len(parts) > 2 else ""
        kps = _KPS.search(rest)
        out.append(
            Vma(
                start,
                parts[1],
                {int(n): int(c) for n, c in _NODE.findall(rest)},
                int(kps.group(1)) if kps else 4,
            )
        )
    return out


def vma_ends(vmas: list[Vma], maps_text: str | None) -> dict[int, int]:
    """VMA start → end from ``/proc/PID/maps`` (numa_maps gives starts only)."""
    ends: dict[int, int] = {}
    for line in (maps_text or "").splitlines():
        span = line.split(None, 1)[0] if line else ""
        if "-" in span:
            lo, hi = span.split("-", 1)
            with contextlib.suppress(ValueError):
                ends[int(lo, 16)] = int(hi, 16)
    return ends


def sample(pid: int) -> tuple[Snapshot, dict[int, int]] | None:
    """One numa_maps snapshot of ``pid`` (None once the process is gone)."""
    t = time.monotonic_ns()
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        numa = Path(f"/proc/{pid}/numa_maps").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    vmas = parse_numa_maps(numa)
    return Snapshot(t, vmas), vma_ends(vmas, maps)


def _pages_in(lo: int, hi: int, snap: Snapshot, ends: dict[int, int]) -> dict[int, int]:
    """Pages per node of the VMAs over [lo, hi) (a VMA only partly covered: its share)."""
    pages: dict[int, int] = {}
    for v in snap.vmas:
        v_end = ends.get(v.start, v.start + 1)
        if v.start < hi and v_end > lo:
            part = (min(hi, v_end) - max(lo, v.start)) / (v_end - v.start)
            for node, n in v.pages.items():
                got = round(n * v.page_kb * 1024 / 4096 * part)
                if got:
                    pages[node] = pages.get(node, 0) + got
    return pages


def _new_entry(node: int) -> dict[str, Any]:
    return {
        "node": node,
        "allocations": 0,
        "binds_ok": 0,
        "binds_failed": 0,
        "errnos": [],
        "pages": {},
    }


def _count_bind(entry: dict[str, Any], errno: int) -> None:
    if errno == 0:
        entry["binds_ok"] += 1
    else:
        entry["binds_failed"] += 1
        if errno not in entry["errnos"]:
            entry["errnos"].append(errno)


def _share(entry: dict[str, Any]) -> tuple[int, int]:
    """(pages on the planned node, pages seen); sets ``share_on_planned_node``."""
    n_all = sum(entry["pages"].values())
    n_on = entry["pages"].get(str(entry["node"]), 0)
    entry["share_on_planned_node"] = round(n_on / n_all, 6) if n_all else None
    return n_on, n_all


def achieved(
    allocs: list[Any],
    binds: list[Any],
    frees: list[Any],
    snapshots: list[tuple[Snapshot, dict[int, int]]],
    site_of: dict[int, str],
    planned: dict[str, int],
    planned_chunks: dict[str, dict[int, int]] | None = None,
) -> dict[str, Any]:
    """Per planned site: allocations, binds ok/failed, pages per node seen, share on plan.

    ``site_of`` maps the shim's integer site hash to the plan's site key; ``planned`` maps
    the plan's site key to its node; ``planned_chunks`` the key of a site bound per chunk
    to chunk → node. Such a site's pages are counted per chunk over the range the shim
    bound (its BIND records carry it) and checked against that chunk's node; the site's
    entry gets ``chunks[index]`` with the same fields, and its ``pages`` and share add up
    its chunks.
    """
    planned_chunks = planned_chunks or {}
    free_at = {f.seq: f.time_ns for f in frees}
    whole_bind: dict[int, Any] = {}
    chunk_binds: dict[int, list[Any]] = {}
    for b in binds:
        if getattr(b, "chunk", None) is None:
            whole_bind[b.seq] = b
        else:
            chunk_binds.setdefault(b.seq, []).append(b)
    sites: dict[str, dict[str, Any]] = {}
    for a in allocs:
        key = site_of.get(a.site_hash)
        if key is None or key not in planned:
            continue
        entry = sites.setdefault(key, _new_entry(planned[key]))
        entry["allocations"] += 1
        b = whole_bind.get(a.seq)
        per_chunk = chunk_binds.get(a.seq, [])
        if b is not None:
            _count_bind(entry, b.errno)
        # ranges to check: (lo, hi, chunk entry or None for the whole allocation)
        ranges: list[tuple[int, int, dict[str, Any] | None]] = []
        if per_chunk:
            chunk_plan = planned_chunks.get(key, {})
            table = entry.setdefault("chunks", {})
            for cb in per_chunk:
                ce = table.setdefault(str(cb.chunk), _new_entry(chunk_plan.get(cb.chunk, cb.node)))
                ce["allocations"] += 1
                _count_bind(ce, cb.errno)
                _count_bind(entry, cb.errno)
                if cb.length:
                    ranges.append((cb.start, cb.start + cb.length, ce))
        else:
            ranges.append((a.address, a.address + a.size, None))
        end_t = free_at.get(a.seq)
        for lo, hi, ce in ranges:
            best: dict[int, int] | None = None
            for snap, ends in snapshots:  # latest snapshot within the allocation's lifetime
                if snap.time_ns < a.time_ns or (end_t is not None and snap.time_ns > end_t):
                    continue
                pages = _pages_in(lo, hi, snap, ends)
                if pages:
                    best = pages
            for node, n in (best or {}).items():
                for target in (entry, ce) if ce is not None else (entry,):
                    target["pages"][str(node)] = target["pages"].get(str(node), 0) + n
    total_on = total = 0
    for entry in sites.values():
        if "chunks" in entry:
            n_on = n_all = 0
            for ce in entry["chunks"].values():
                on, seen = _share(ce)
                n_on, n_all = n_on + on, n_all + seen
            entry["share_on_planned_node"] = round(n_on / n_all, 6) if n_all else None
        else:
            n_on, n_all = _share(entry)
        total += n_all
        total_on += n_on
    return {
        "sites": sites,
        "pages_seen": total,
        "pages_on_planned_node": total_on,
        "share_on_planned_node": round(total_on / total, 6) if total else None,
        "snapshots": len(snapshots),
    }


@dataclass
class RunOutcome:
    status: str
    exit_code: int
    wall_seconds: float
    snapshots: list[tuple[Snapshot, dict[int, int]]]
    logs: list[Any]


def run_with_plan(
    argv: list[str],
    shim_plan_lines: list[str],
    *,
    period_s: float = 0.05,
    threshold: int | None = None,
    quiet: bool = False,
) -> RunOutcome:
    """Run ``argv`` with the shim and the plan; sample numa_maps of the main process.

    The program is started by the one launcher (:func:`collectors.profile.runner.run_program`:
    signals forwarded, terminal handed over, one-line errors for a missing or forbidden
    program). ``quiet``: the program's stdin and output go to /dev/null (a caller printing
    JSON on stdout, or labeling runs).
    """
    with tempfile.TemporaryDirectory(prefix="placer-run-") as tmp:
        plan_path = Path(tmp) / "plan.txt"
        plan_path.write_text("\n".join(shim_plan_lines) + "\n")
        settings: dict[str, object] = {"plan": plan_path, "sample_period_ms": 0}
        if threshold is not None:
            settings["threshold"] = threshold
        env = dict(os.environ)
        env.update(shim_env(Path(tmp) / "shim.%p.log", **settings))
        snaps: list[tuple[Snapshot, dict[int, int]]] = []

        def watch(proc: subprocess.Popen[bytes]) -> None:
            wait = min(0.005, period_s)  # short programs: look often at first, then back off
            while proc.poll() is None:
                got = sample(proc.pid)
                if got is not None and proc.poll() is None:
                    snaps.append(got)
                    if len(snaps) > 2000:  # keep memory bounded on long runs
                        del snaps[1:1000:2]
                time.sleep(wait)
                wait = min(wait * 1.5, period_s)

        result = run_program(argv, env, quiet=quiet, watch=watch)
        logs = []
        for p in find_logs(Path(tmp) / "shim.%p.log"):
            with contextlib.suppress(Exception):
                logs.append(read_log(p))
        return RunOutcome(result.status, result.exit_code, result.wall_seconds, snaps, logs)
