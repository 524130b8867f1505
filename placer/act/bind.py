"""Bind a plan at allocation (act layer): run a program with the shim binding planned sites.

``placer run --plan`` and the measured labels of ``placer experiment`` run through here.

The shim reads ``PLACER_SHIM_PLAN`` (``site_hash node [chunk chunk_size]`` lines,
:func:`planfile.shim_lines`) and ``mbind``\\ s each matching allocation (or each planned
chunk of it) to its node when it is made, logging a BIND record (node, errno, chunk).
Allocations of sites the plan does not name keep the kernel's default local policy: DRAM
first (``default_tier: dram``), so unknown or small data is never pushed to the slow tier
by a guess.

A Python script's ``py-`` sites are bound by the Python runner instead
(:mod:`placer.collectors.profile.pyrunner` ``--bind``): objects that share one native site (numpy's
allocator) are placed one by one, and :func:`python_achieved` checks them the same way.

While the program runs, ``/proc/PID/numa_maps`` is sampled; afterwards every bound
allocation is joined (by address range and lifetime) to the VMAs seen while it was alive,
giving the pages it really had on each node. That is what ``achieved`` stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.collectors.profile import pyrunner
from placer.collectors.profile.runner import run_program
from placer.collectors.shim.library import shim_env
from placer.collectors.shim.log import find_logs, read_log
from placer.contracts.host import stamp_mismatch, this_host
from placer.errors import InvalidInputError
from placer.placement.planfile import (
    collapsed_sites,
    shim_lines,
    split_sites,
    unbound_native_sites,
)
from placer.store.repository.runs import find_run

_NODE = re.compile(r"\bN(\d+)=(\d+)")
_KPS = re.compile(r"\bkernelpagesize_kB=(\d+)")


def check_plan_host(doc: dict[str, Any], where: str, *, force: bool) -> bool:
    """Refuse a plan computed on another host unless ``force``; True when it is forced."""
    other_host = stamp_mismatch(doc.get("host"), this_host(), where)
    if other_host and not force:
        raise InvalidInputError(f"{other_host} (or use --force to apply it anyway)")
    return bool(other_host)


@dataclass(frozen=True)
class PlanBindings:
    """What the shim binds for a plan (its ``PLACER_SHIM_PLAN`` lines) and what it cannot."""

    lines: list[str]
    split: list[str]  # sites whose chunks go to different nodes
    collapsed: list[str]  # split sites bound whole (chunk size unknown)
    unbound: list[str]  # native sites shared by objects on different nodes
    chunk_bytes: int | None

    def note(self) -> str:
        """How split sites are bound, for the line that announces the bindings."""
        if self.collapsed:
            n = len(self.collapsed)
            return f" ({n} sites split across nodes, chunk size unknown: bound whole)"
        if self.split:
            return (
                f" ({len(self.split)} sites split across nodes: bound per "
                f"{self.chunk_bytes}-byte chunk)"
            )
        return ""


def plan_bindings(
    doc: dict[str, Any], chunk_bytes: int | None, *, python_side: bool = False
) -> PlanBindings:
    """The shim's bindings of a plan (``placer run --plan`` and ``placer plan export``)."""
    return PlanBindings(
        shim_lines(doc, chunk_bytes, python_side=python_side),
        split_sites(doc),
        collapsed_sites(doc, chunk_bytes),
        unbound_native_sites(doc),
        chunk_bytes,
    )


def plan_chunk_bytes(store: Any, doc: dict[str, Any]) -> int | None:
    """The chunk size of a plan's split sites: the plan's ``chunk_bytes``, else the
    ``--chunk`` of the profiled run it was made from (same store, same build id)."""
    if doc.get("chunk_bytes"):
        return int(doc["chunk_bytes"])
    run_id = doc.get("run")
    if not isinstance(run_id, int):
        return None

    with store.session() as s:
        run = find_run(s, run_id)
        if run is None or (run.build_id or "") != doc.get("build_id"):
            return None
        size = (run.inputs or {}).get("chunk_bytes")
    return int(size) if isinstance(size, int) and size > 0 else None


def plan_env(
    shim_plan: Path,
    log_pattern: str | os.PathLike[str],
    *,
    threshold: int | None = None,
    inherit_preload: bool = True,
) -> dict[str, str]:
    """The variables that make a program bind a plan: the shim preloaded, logging to
    ``log_pattern`` (the shim is inactive without a log), reading ``shim_plan`` (the lines
    of :func:`plan_bindings`), no page sampling. :func:`run_with_plan` runs with them and
    ``placer plan export`` writes them for systemd, containers and schedulers."""
    settings: dict[str, object] = {"plan": shim_plan, "sample_period_ms": 0}
    if threshold is not None:
        settings["threshold"] = threshold
    return shim_env(log_pattern, inherit_preload=inherit_preload, **settings)


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


def _site_share(entry: dict[str, Any]) -> tuple[int, int]:
    """:func:`_share` of a site: over its chunks when it was bound chunk by chunk."""
    if "chunks" not in entry:
        return _share(entry)
    n_on = n_all = 0
    for ce in entry["chunks"].values():
        on, seen = _share(ce)
        n_on, n_all = n_on + on, n_all + seen
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
        n_on, n_all = _site_share(entry)
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
    python_binds: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PythonPlan:
    """A Python script to run through the Python runner, binding its ``py-`` sites."""

    interpreter: str
    script: list[str]  # [script, args...] or ["-m", module, args...]
    bindings: dict[str, Any]  # planfile.python_bindings(...)
    min_size: int = 64 * 1024


def run_with_plan(
    argv: list[str],
    shim_plan_lines: list[str],
    *,
    period_s: float = 0.05,
    threshold: int | None = None,
    quiet: bool = False,
    python: PythonPlan | None = None,
) -> RunOutcome:
    """Run ``argv`` with the shim and the plan; sample numa_maps of the main process.

    The program is started by the one launcher (:func:`placer.collectors.profile.runner.run_program`:
    signals forwarded, terminal handed over, one-line errors for a missing or forbidden
    program). ``quiet``: the program's stdin and output go to /dev/null (a caller printing
    JSON on stdout, or labeling runs). ``python``: run the script through the Python runner
    instead of ``argv``, binding its planned buffers; their bind records come back in
    ``python_binds``.
    """
    with tempfile.TemporaryDirectory(prefix="placer-run-") as tmp:
        plan_path = Path(tmp) / "plan.txt"
        plan_path.write_text("\n".join(shim_plan_lines) + "\n")
        env = dict(os.environ)
        env.update(plan_env(plan_path, Path(tmp) / "shim.%p.log", threshold=threshold))
        report = Path(tmp) / "python-binds.jsonl"
        if python is not None:
            bind_map = Path(tmp) / "python-plan.json"
            bind_map.write_text(json.dumps(python.bindings), "utf-8")
            options = ["--bind", str(bind_map), "--bind-report", str(report)]
            options += ["--min-size", str(python.min_size)]
            argv = pyrunner.command(python.interpreter, python.script, env, options=options)
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
        return RunOutcome(
            result.status, result.exit_code, result.wall_seconds, snaps, logs, _records(report)
        )


def _records(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path`` (none if missing; a line cut by a killed program skipped)."""
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text("utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict):
                    out.append(rec)
    return out


def _lifetime_end(rec: dict[str, Any], allocs: Sequence[Any], frees: Sequence[Any]) -> int | None:
    """When the shim saw the buffer of a Python bind record freed (None: alive at exit)."""
    addr, t = int(rec["addr"]), int(rec["t"])
    owner = None
    for a in allocs:
        if a.address <= addr < a.address + a.size and a.time_ns <= t:
            if owner is None or a.time_ns > owner.time_ns:
                owner = a
    if owner is None:
        return None
    for f in frees:
        if f.seq == owner.seq:
            return int(f.time_ns)
    return None


def python_achieved(
    records: list[dict[str, Any]],
    snapshots: list[tuple[Snapshot, dict[int, int]]],
    allocs: Sequence[Any] = (),
    frees: Sequence[Any] = (),
) -> dict[str, dict[str, Any]]:
    """Per ``py-`` site the Python runner bound: like :func:`achieved`'s entries, plus
    ``policies`` (the numa_maps policies seen over the bound pages, ``bind:0``…).

    A bind's pages are read from the latest snapshot after the bind and before the shim saw
    its buffer freed (``allocs``/``frees`` of the shim log give that lifetime).
    """
    sites: dict[str, dict[str, Any]] = {}
    buffers: dict[str, set[tuple[int, int]]] = {}
    for rec in records:
        entry = sites.setdefault(rec["site"], _new_entry(int(rec["node"])))
        entry.setdefault("policies", [])
        buffers.setdefault(rec["site"], set()).add((int(rec["addr"]), int(rec["size"])))
        ce = None
        if rec.get("chunk") is not None:
            table = entry.setdefault("chunks", {})
            ce = table.setdefault(str(rec["chunk"]), _new_entry(int(rec["node"])))
            ce["allocations"] += 1
            _count_bind(ce, int(rec["errno"]))
        _count_bind(entry, int(rec["errno"]))
        lo, hi, t = int(rec["lo"]), int(rec["hi"]), int(rec["t"])
        end_t = _lifetime_end(rec, allocs, frees)
        best: dict[int, int] | None = None
        policies: set[str] = set()
        for snap, ends in snapshots:
            if snap.time_ns < t or (end_t is not None and snap.time_ns > end_t):
                continue
            pages = _pages_in(lo, hi, snap, ends)
            if pages:
                best = pages
                policies = {
                    v.policy
                    for v in snap.vmas
                    if v.start < hi and ends.get(v.start, v.start + 1) > lo
                }
        for node, n in (best or {}).items():
            for target in (entry, ce) if ce is not None else (entry,):
                target["pages"][str(node)] = target["pages"].get(str(node), 0) + n
        entry["policies"] = sorted(set(entry["policies"]) | policies)
    for site, entry in sites.items():
        entry["allocations"] = len(buffers[site])
        entry["by"] = "python"
        _site_share(entry)
    return sites


def merge_python(got: dict[str, Any], py_sites: dict[str, dict[str, Any]]) -> None:
    """Add the Python runner's sites to :func:`achieved`'s document and its totals."""
    got.setdefault("sites", {}).update(py_sites)
    total, on = int(got.get("pages_seen") or 0), int(got.get("pages_on_planned_node") or 0)
    for entry in py_sites.values():
        total += sum(entry["pages"].values())
        on += entry["pages"].get(str(entry["node"]), 0)
    got["pages_seen"], got["pages_on_planned_node"] = total, on
    got["share_on_planned_node"] = round(on / total, 6) if total else None
