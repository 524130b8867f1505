"""``placer doctor``: what this host offers placer, one finding per line.

Each finding is measured here and now (a command run, a file read), never assumed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from placer.errors import PlacerError
from placer.store import Store
from placer.store.engine import display_url, parse_url, sqlite_path
from placer.tiers import detect_nodes


@dataclass
class Finding:
    name: str
    status: str  # ok | missing | unsupported | warn | error
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _run(cmd: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _perf_stat_supported(perf: str, events: str) -> dict[str, bool]:
    """Run ``perf stat -x,`` on ``true`` and tell which events were counted."""
    result = _run([perf, "stat", "-x,", "-e", events, "true"])
    supported: dict[str, bool] = {e: False for e in events.split(",")}
    if result is None:
        return supported
    for line in result.stderr.splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[2] in supported:
            supported[parts[2]] = not parts[0].startswith("<not")
    return supported


def check_tiers(sys_root: str = "/") -> Finding:
    nodes = detect_nodes(sys_root)
    if not nodes:
        return Finding("memory tiers", "warn", "no NUMA information in sysfs", {"nodes": []})
    dram = [n for n in nodes if n.kind == "dram"]
    slow = [n for n in nodes if n.kind != "dram"]
    gib = 1024**3
    parts = [
        f"node{n.node} {n.kind} ({'CPUs' if n.has_cpus else 'no CPUs'}, "
        f"{n.capacity_bytes / gib:.1f} GiB, {n.free_bytes / gib:.1f} GiB free)"
        for n in nodes
    ]
    status = "ok" if slow else "warn"
    detail = f"{len(dram)} DRAM node(s), {len(slow)} slow-tier node(s): " + "; ".join(parts)
    if not slow:
        detail += " — no slow tier: labels will be emulated"
    return Finding(
        "memory tiers",
        status,
        detail,
        {
            "dram_nodes": len(dram),
            "slow_nodes": len(slow),
            "nodes": [n.to_dict() for n in nodes],
        },
    )


def _read(root: Path, rel: str) -> str | None:
    """A sysfs/procfs file under ``root``, stripped (None when absent or unreadable)."""
    try:
        return (root / rel).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def check_numa_balancing(sys_root: str = "/", nodes: int = 1) -> Finding:
    """``kernel.numa_balancing``: a bit mask, 1 = NUMA balancing, 2 = memory tiering mode."""
    text = _read(Path(sys_root), "proc/sys/kernel/numa_balancing")
    value = int(text) if text and text.isdigit() else None
    data = {
        "value": value,
        "normal": bool(value and value & 1),
        "tiering": bool(value and value & 2),
    }
    if value is None:
        return Finding(
            "NUMA balancing",
            "unsupported",
            "kernel.numa_balancing not present (kernel without NUMA balancing): "
            "nothing moves placer's pages",
            data,
        )
    if value == 0:
        return Finding(
            "NUMA balancing",
            "ok",
            "kernel.numa_balancing = 0: the kernel does not move pages",
            data,
        )
    modes = [
        m
        for m, on in (("NUMA balancing", data["normal"]), ("memory tiering", data["tiering"]))
        if on
    ]
    detail = f"kernel.numa_balancing = {value} ({' + '.join(modes)}): "
    if data["tiering"]:
        detail += (
            "the kernel promotes hot slow-tier pages to DRAM on hinting faults, beside placer's "
            "plan: pages move under placer's numa_maps checks and labels"
        )
    else:
        detail += (
            "hinting faults migrate pages toward the CPUs that touch them; a plan's mbind "
            "bindings stay, but the pages it leaves to the default policy move"
        )
    detail += "; to measure and apply plans: sysctl kernel.numa_balancing=0"
    if nodes <= 1:
        return Finding("NUMA balancing", "ok", detail + " (one node here: nothing to move)", data)
    return Finding("NUMA balancing", "warn", detail, data)


def check_demotion(sys_root: str = "/") -> Finding:
    """``/sys/kernel/mm/numa/demotion_enabled``: reclaim demotes DRAM pages to a slow tier."""
    text = _read(Path(sys_root), "sys/kernel/mm/numa/demotion_enabled")
    enabled = None if text is None else text.lower() in ("true", "1", "y", "yes")
    data = {"enabled": enabled}
    if enabled is None:
        return Finding(
            "memory demotion", "unsupported", "no /sys/kernel/mm/numa/demotion_enabled", data
        )
    if not enabled:
        return Finding(
            "memory demotion", "ok", "demotion_enabled = false: reclaim does not demote", data
        )
    return Finding(
        "memory demotion",
        "warn",
        "demotion_enabled = true: under memory pressure reclaim moves cold DRAM pages to the "
        "slow tier, objects placer keeps in DRAM included; set it to false to hold a plan "
        "(echo false > /sys/kernel/mm/numa/demotion_enabled)",
        data,
    )


def check_damon(sys_root: str = "/") -> Finding:
    """DAMON: the sysfs admin interface, kdamonds running and the actions of their schemes
    (``stat`` only counts; the others move or reclaim pages)."""
    root = Path(sys_root)
    admin = root / "sys/kernel/mm/damon/admin"
    running: list[str] = []
    actions: set[str] = set()
    for state in sorted(admin.glob("kdamonds/*/state")):
        if _read(state.parent, "state") == "on":
            running.append(f"kdamond {state.parent.name}")
            for action in state.parent.glob("contexts/*/schemes/*/action"):
                actions.add(_read(action.parent, "action") or "?")
    if not running:  # started another way (debugfs, a module): its schemes are not listed
        for comm in sorted((root / "proc").glob("[0-9]*/comm")):
            name = _read(comm.parent, "comm") or ""
            if name.startswith("kdamond"):
                running.append(f"{name} (pid {comm.parent.name})")
                actions.add("?")
    for module in ("damon_reclaim", "damon_lru_sort"):
        if _read(root, f"sys/module/{module}/parameters/enabled") in ("Y", "1"):
            running.append(module)
            actions.add("pageout" if module == "damon_reclaim" else "lru_prio")
    moving = sorted(actions - {"stat"})
    data = {"admin": admin.is_dir(), "running": running, "actions": sorted(actions)}
    if moving:
        return Finding(
            "DAMON",
            "warn",
            f"running: {', '.join(running)} with schemes {', '.join(moving)}"
            + (" ('?': not listed)" if "?" in moving else "")
            + ": DAMOS actions (pageout, migrate_hot/cold, lru_prio) move or reclaim "
            "pages placer placed; stop them while measuring and applying plans "
            "(echo off > /sys/kernel/mm/damon/admin/kdamonds/N/state)",
            data,
        )
    if running:
        return Finding(
            "DAMON",
            "ok",
            f"running: {', '.join(running)}, monitoring only (no scheme moves pages)",
            data,
        )
    if data["admin"]:
        return Finding("DAMON", "ok", "available (sysfs admin), no kdamond running", data)
    return Finding("DAMON", "unsupported", "no DAMON (no /sys/kernel/mm/damon/admin)", data)


def check_perf() -> list[Finding]:
    findings: list[Finding] = []
    perf = shutil.which("perf")
    paranoid_text = None
    try:
        paranoid_text = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
    except OSError:
        pass
    paranoid = int(paranoid_text) if paranoid_text and paranoid_text.lstrip("-").isdigit() else None
    findings.append(
        Finding(
            "perf_event_paranoid",
            "ok" if paranoid is not None and (paranoid <= 1 or os.geteuid() == 0) else "warn",
            f"kernel.perf_event_paranoid = {paranoid}"
            + (" (root: not limiting)" if os.geteuid() == 0 else ""),
            {"value": paranoid},
        )
    )
    if perf is None:
        findings.append(
            Finding("perf", "missing", "perf not found (Debian: linux-perf)", {"path": None})
        )
        for name in ("perf software events", "hardware counters", "perf mem"):
            findings.append(Finding(name, "missing", "perf not found", {"available": False}))
        return findings
    version = _run([perf, "--version"])
    findings.append(
        Finding("perf", "ok", version.stdout.strip() if version else perf, {"path": perf})
    )
    sw = _perf_stat_supported(perf, "task-clock,page-faults")
    sw_ok = all(sw.values())
    findings.append(
        Finding(
            "perf software events",
            "ok" if sw_ok else "unsupported",
            ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in sw.items()),
            {"available": sw_ok, "events": sw},
        )
    )
    hw = _perf_stat_supported(perf, "instructions,cycles")
    hw_ok = any(hw.values())
    findings.append(
        Finding(
            "hardware counters",
            "ok" if hw_ok else "unsupported",
            ", ".join(f"{k} {'yes' if v else 'not supported'}" for k, v in hw.items()),
            {"available": hw_ok, "events": hw},
        )
    )
    mem = _run([perf, "mem", "record", "-o", "/dev/null", "true"])
    mem_ok = mem is not None and mem.returncode == 0
    reason = ""
    if mem is not None and not mem_ok:
        lines = [ln.strip() for ln in (mem.stderr + mem.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit {mem.returncode}"
    findings.append(
        Finding(
            "perf mem",
            "ok" if mem_ok else "unsupported",
            "perf mem record works" if mem_ok else f"perf mem unavailable: {reason}",
            {"available": mem_ok},
        )
    )
    return findings


def check_valgrind() -> Finding:
    path = shutil.which("valgrind")
    if not path:
        return Finding(
            "valgrind", "missing", "valgrind not found (deep mode unavailable)", {"path": None}
        )
    version = _run([path, "--version"])
    return Finding("valgrind", "ok", version.stdout.strip() if version else path, {"path": path})


def check_compiler() -> Finding:
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            version = _run([path, "--version"])
            first = version.stdout.splitlines()[0] if version and version.stdout else path
            return Finding("C compiler", "ok", f"{name}: {first}", {"path": path})
    return Finding(
        "C compiler", "missing", "no cc/gcc/clang: the shim cannot be built", {"path": None}
    )


def check_openmp() -> Finding:
    for lib in ("libgomp.so.1", "libomp.so", "libomp.so.5"):
        try:
            ctypes.CDLL(lib)
        except OSError:
            continue
        return Finding("OpenMP runtime", "ok", f"{lib} loads (LightGBM can run)", {"library": lib})
    return Finding(
        "OpenMP runtime",
        "missing",
        "no OpenMP runtime (Debian: libgomp1); LightGBM will not load",
        {"library": None},
    )


def check_store(store_url: str) -> list[Finding]:
    findings = [Finding("store", "ok", display_url(store_url), {"url": display_url(store_url)})]
    path = sqlite_path(parse_url(store_url))
    if path is not None and not path.exists():
        head = Store.head_revision()
        findings[0].detail += " (file not created yet)"
        findings.append(
            Finding(
                "schema revision",
                "warn",
                f"not created (head is {head}); run `placer db upgrade`",
                {"current": None, "head": head},
            )
        )
        return findings
    try:
        with Store(store_url, create=False) as store:
            current = store.current_revision()
            head = store.head_revision()
    except PlacerError as exc:
        findings[0].status = "error"
        findings.append(
            Finding("schema revision", "error", str(exc), {"current": None, "head": None})
        )
        return findings
    if current == head:
        status, detail = "ok", f"{current} (head)"
    elif current is None:
        status, detail = "warn", f"not created (head is {head}); run `placer db upgrade`"
    else:
        status, detail = "warn", f"{current}, head is {head}; run `placer db upgrade`"
    findings.append(Finding("schema revision", status, detail, {"current": current, "head": head}))
    return findings


def run_doctor(store_url: str, sys_root: str = "/") -> dict[str, Any]:
    """Every finding, in the order people read them."""
    findings: list[Finding] = [check_tiers(sys_root)]
    nodes = len(findings[0].data.get("nodes") or [])
    findings += [check_numa_balancing(sys_root, nodes), check_demotion(sys_root)]
    findings += [check_damon(sys_root)]
    findings += check_perf()
    findings += [check_valgrind(), check_compiler(), check_openmp()]
    findings += check_store(store_url)
    by_name = {f.name: f for f in findings}

    def available(name: str) -> bool:
        return by_name[name].status == "ok" or bool(by_name[name].data.get("available"))

    tiers = by_name["memory tiers"].data
    return {
        "summary": {
            "dram_nodes": tiers.get("dram_nodes", 0),
            "slow_tier_nodes": tiers.get("slow_nodes", 0),
            "numa_balancing": by_name["NUMA balancing"].data["value"],
            "memory_demotion": by_name["memory demotion"].data["enabled"],
            "damon_running": bool(by_name["DAMON"].data["running"]),
            "perf": by_name["perf"].status == "ok",
            "perf_software_events": available("perf software events"),
            "hardware_counters": available("hardware counters"),
            "perf_mem": available("perf mem"),
            "valgrind": by_name["valgrind"].status == "ok",
            "c_compiler": by_name["C compiler"].status == "ok",
            "openmp": by_name["OpenMP runtime"].status == "ok",
            "store": by_name["store"].data.get("url"),
            "schema_revision": by_name["schema revision"].data.get("current"),
            "schema_head": by_name["schema revision"].data.get("head"),
        },
        "host": {
            "hostname": platform.node(),
            "kernel": platform.release(),
            "cpus": os.cpu_count() or 1,
        },
        "findings": [asdict(f) for f in findings],
    }
