"""The measured path: run a program with a plan bound through the shim, and check it held.

The shim reads ``PLACER_SHIM_PLAN`` (``site_hash node`` lines) and ``mbind``\\ s matching
allocations to the node, writing a BIND record with the result. We run the program with
that plan, time it, and collect two pieces of evidence that the placement happened: the
BIND records (errno 0) and ``/proc/PID/numa_maps`` sampled while the program runs (the
bound ranges show policy ``bind:N`` and their pages as ``N<node>=count``). The DRAM budget
is enforced by the plan itself: every site not kept in DRAM is bound to the slow node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.errors import ExternalToolError, InvalidInputError
from placer.placement.apply import parse_numa_maps as parse_vmas
from placer.placement.apply import vma_ends


@dataclass
class NumaRange:
    start: int
    policy: str
    pages: dict[int, int] = field(default_factory=dict)  # node -> pages
    end: int | None = None


def parse_numa_maps(text: str) -> list[NumaRange]:
    """``/proc/PID/numa_maps`` lines → ranges with their policy and pages per node."""
    return [NumaRange(v.start, v.policy, dict(v.pages)) for v in parse_vmas(text)]


def snapshot(pid: int) -> list[NumaRange] | None:
    """One consistent-enough look at a live process's NUMA placement (None once it exited)."""
    try:
        numa = Path(f"/proc/{pid}/numa_maps").read_text()
        maps = Path(f"/proc/{pid}/maps").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    ranges = parse_numa_maps(numa)
    ends = vma_ends([], maps)
    for r in ranges:
        r.end = ends.get(r.start)
    return ranges


def write_shim_plan(path: Path, placement: dict[str, int]) -> None:
    """The shim's plan file: one ``0x<site hash> <node>`` line per bound site."""
    lines = [f"0x{h} {node}" for h, node in sorted(placement.items())]
    path.write_text("".join(line + "\n" for line in lines))


@dataclass
class PlanRun:
    wall_seconds: float
    exit_code: int
    evidence: dict[str, Any]


def _shim() -> str:
    try:
        from collectors.shim import shim_path
    except ImportError as exc:
        raise ExternalToolError(f"the allocation shim is not installed ({exc})") from None
    return str(shim_path())


def binding_evidence(
    logs: list[Any], snaps: list[NumaRange] | None, placement: dict[str, int]
) -> dict[str, Any]:
    """BIND results from the shim logs, and numa_maps pages of the bound allocations.

    ``numa_maps_pages`` counts pages per node of the ranges holding a bound allocation
    whose policy is ``bind:N`` (what the kernel reports after the shim's mbind).
    """
    ok = failed = 0
    errors: dict[str, int] = {}
    pages: dict[str, int] = {}
    policies: set[str] = set()
    for log in logs:
        allocs = {a.seq: a for a in getattr(log, "allocs", [])}
        for b in getattr(log, "binds", []):
            err = int(getattr(b, "result_errno", getattr(b, "errno", 0)))
            if err == 0:
                ok += 1
            else:
                failed += 1
                errors[os.strerror(err)] = errors.get(os.strerror(err), 0) + 1
            a = allocs.get(b.seq)
            if a is None or snaps is None:
                continue
            # one entry per range start (the largest look at it), bound ranges first
            best: dict[int, NumaRange] = {}
            for r in snaps:
                end = r.end if r.end is not None else r.start + 1
                if not (r.start <= a.address < end or a.address <= r.start < a.address + a.size):
                    continue
                policies.add(r.policy)
                old = best.get(r.start)
                rank = (r.policy.startswith("bind"), sum(r.pages.values()))
                if old is None or rank > (old.policy.startswith("bind"), sum(old.pages.values())):
                    best[r.start] = r
            for r in best.values():
                if not r.policy.startswith("bind"):
                    continue
                for node, n in r.pages.items():
                    pages[f"N{node}"] = pages.get(f"N{node}", 0) + n
    return {
        "planned_sites": len(placement),
        "binds_ok": ok,
        "binds_failed": failed,
        "bind_errors": errors,
        "numa_maps_pages": pages,
        "numa_maps_policies": sorted(policies),
        "numa_maps_sampled": snaps is not None,
    }


def run_with_plan(
    command: list[str],
    placement: dict[str, int],
    workdir: Path,
    *,
    poll_s: float = 0.05,
    quiet: bool = True,
) -> PlanRun:
    """Run ``command`` with ``placement`` (site hash → node) bound by the shim."""
    from collectors.shim.log import read_log

    if not command:
        raise InvalidInputError("no command to measure")
    workdir.mkdir(parents=True, exist_ok=True)
    plan = workdir / "plan.txt"
    write_shim_plan(plan, placement)
    env = dict(os.environ)
    env["LD_PRELOAD"] = _shim() + (f" {env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else "")
    env["PLACER_SHIM_LOG"] = str(workdir / "shim.%p.log")
    env["PLACER_SHIM_PLAN"] = str(plan)
    env["PLACER_SHIM_SAMPLE_PERIOD_MS"] = "0"  # measure the program, not the sampler
    out = subprocess.DEVNULL if quiet else None
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    except OSError as exc:
        raise InvalidInputError(f"cannot run {command[0]}: {exc.strerror}") from None
    seen: dict[tuple[int, int | None, str], NumaRange] = {}
    stop = threading.Event()

    def poll() -> None:
        # keep every range ever seen with its largest page counts: bound buffers may be
        # freed before the program exits, so the last snapshot alone can miss them.
        # Short programs: look often at first, then back off to ``poll_s``.
        wait = min(0.005, poll_s)
        while not stop.is_set():
            snap = snapshot(proc.pid)
            if snap is not None and proc.poll() is None:
                for r in snap:
                    key = (r.start, r.end, r.policy)
                    old = seen.get(key)
                    if old is None or sum(r.pages.values()) > sum(old.pages.values()):
                        seen[key] = r
            stop.wait(wait)
            wait = min(wait * 1.5, poll_s)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    code = proc.wait()
    wall = time.monotonic() - t0
    stop.set()
    watcher.join()
    if code != 0:
        raise InvalidInputError(f"{Path(command[0]).name} exited with {code} under the plan")
    logs = [read_log(p) for p in sorted(workdir.glob("shim.*.log"))]
    ev = binding_evidence(logs, list(seen.values()) if seen else None, placement)
    shutil.rmtree(workdir, ignore_errors=True)
    return PlanRun(wall_seconds=wall, exit_code=code, evidence=ev)
