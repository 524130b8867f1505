"""The daemon's perf software counters per job: a real ``perf stat -I`` child per job.

Skipped with the reason when perf cannot count task-clock and the fault events here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from placer.daemon.perfstat import Counts, PerfCounter, detect, parse_line
from tests.test_daemon import (  # noqa: F401 - fixtures
    DaemonProc,
    daemon_factory_fixture,
    wait_for,
)

PY = sys.executable

# touches fresh pages all the time: task-clock and minor faults every interval
BUSY_PY = """
import mmap, sys, time
t0 = time.time()
print("ready", flush=True)
while time.time() - t0 < float(sys.argv[1]):
    b = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(0, len(b), 4096):
        b[i] = 1
    b.close()
    time.sleep(0.01)
"""

SUPPORT = detect()
needs_perf = pytest.mark.skipif(
    not SUPPORT.counters, reason=f"perf cannot count per process here: {SUPPORT.reason}"
)


def perf_children(pid: int) -> list[int]:
    """Live ``perf`` processes whose parent is ``pid``."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        if comm == "perf" and int(rest[1]) == pid and rest[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def perf_watching(target: int) -> list[int]:
    """Live perf processes whose command line counts ``-p target``."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X") or not argv or os.path.basename(argv[0]) != b"perf":
            continue
        if b"-p" in argv and argv[argv.index(b"-p") + 1] == str(target).encode():
            out.append(int(entry.name))
    return out


def start_busy(d: DaemonProc, seconds: float) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([PY, "-c", BUSY_PY, str(seconds)], stdout=subprocess.PIPE)
    d.children.append(p)  # type: ignore[attr-defined]
    assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    return p


def test_parse_perf_stat_interval_lines() -> None:
    out, stamps, errors = Counts(), set[str](), list[str]()
    for line in [
        "     0.500621054,493.76,msec,task-clock,493764052,100.00,0.988,CPUs utilized",
        "     0.500621054,7351,,page-faults,493776881,100.00,14.888,K/sec",
        "     0.500621054,7350,,minor-faults,493787227,100.00,14.888,K/sec",
        "     0.500621054,1,,major-faults,493796571,100.00,0.000,/sec",
        "     1.001522824,<not counted>,msec,task-clock,0,100.00,,",
        "     1.001522824,<not supported>,,major-faults,0,100.00,,",
        "Error: something perf said",
    ]:
        parse_line(line, out, stamps, errors)
    assert out.task_clock_ms == pytest.approx(493.76)
    assert (out.page_faults, out.minor_faults, out.major_faults) == (7351, 7350, 1)
    assert out.not_counted == 1 and out.unsupported == ["major-faults"]
    assert len(stamps) == 2 and errors == ["Error: something perf said"]


@needs_perf
def test_perf_counter_reads_without_blocking_and_stops() -> None:
    assert SUPPORT.path is not None
    busy = subprocess.Popen([PY, "-c", BUSY_PY, "20"], stdout=subprocess.PIPE)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == b"ready"
        pc = PerfCounter(busy.pid, 100, SUPPORT.path)
        t0 = time.monotonic()
        first = pc.read()  # nothing yet: returns at once
        assert time.monotonic() - t0 < 0.05 and first.intervals == 0
        time.sleep(0.8)
        got = pc.read()
        assert got.intervals >= 3 and got.task_clock_ms > 10 and got.minor_faults > 100
        assert got.page_faults >= got.minor_faults
        pc.stop()
        assert not pc.running() and not perf_watching(busy.pid)
    finally:
        busy.kill()
        busy.wait()


@needs_perf
def test_daemon_counts_jobs_with_perf_and_leaves_no_perf_behind(
    daemon_factory: Callable[..., DaemonProc],
) -> None:
    d = daemon_factory().start()
    assert d.proc is not None
    started = [e for e in d.log_lines() if e.get("event") == "perf_counters"]
    assert len(started) == 1 and started[0]["events"][0] == "task-clock"
    busy = start_busy(d, 60)
    job = d.request("attach", pid=busy.pid)["job"]["id"]

    def perf_windows() -> list[dict]:
        return [w for w in d.events(job, "window") if w.get("counters") == "perf"]

    ws = wait_for(lambda: len(perf_windows()) >= 3 and perf_windows())
    assert sum(w["cpu_ms"] for w in ws) > 20 and sum(w["minflt"] for w in ws) > 500
    assert all("cpu_ticks" not in w for w in ws)  # /proc is not the source any more
    doc = d.request("job", job=job)["job"]
    assert doc["signals"]["counters"].startswith("perf stat task-clock,page-faults")
    assert doc["signals"]["perf_mem"]  # says whether perf mem could add samples here
    assert perf_watching(busy.pid) == perf_children(d.proc.pid) != []

    # detach stops the job's perf
    d.request("detach", job=job)
    wait_for(lambda: not perf_watching(busy.pid), timeout=5)
    job2 = d.request("attach", pid=busy.pid)["job"]["id"]
    wait_for(lambda: perf_watching(busy.pid), timeout=10)
    # SIGTERM: the daemon stops its perf children before it exits
    assert d.stop() == 0
    assert not perf_watching(busy.pid)
    # SIGKILL: no chance to clean up; perf dies of SIGPIPE at its next interval write
    d.start()
    wait_for(lambda: perf_watching(busy.pid), timeout=10)  # re-adopted job, new perf
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_for(lambda: not perf_watching(busy.pid), timeout=5)
    # the job ends: its perf exits and the daemon closes the job
    d.start()
    wait_for(lambda: perf_watching(busy.pid), timeout=10)
    busy.kill()
    busy.wait()
    wait_for(lambda: d.job_row(job2)["status"] != "attached", timeout=10)
    assert not perf_watching(busy.pid) and not perf_children(d.proc.pid)
    assert d.stop() == 0


def test_without_perf_the_daemon_says_so_once_and_reads_proc(
    daemon_factory: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    d = daemon_factory()
    empty = tmp_path / "nobin"
    empty.mkdir()
    d.env["PATH"] = str(empty)  # no perf on this PATH
    d.start()
    assert d.proc is not None
    busy = start_busy(d, 30)
    job = d.request("attach", pid=busy.pid)["job"]["id"]
    ws = wait_for(lambda: len(d.events(job, "window")) >= 2 and d.events(job, "window"))
    assert all(w["counters"] == "proc" and "cpu_ticks" in w for w in ws)
    assert sum(w["cpu_ticks"] + w["minflt"] for w in ws) > 0
    doc = d.request("job", job=job)["job"]
    assert doc["signals"]["counters"].startswith("/proc/PID/stat (perf not found")
    said = [e for e in d.log_lines() if e.get("event") == "perf_unavailable"]
    assert len(said) == 1 and "perf not found" in said[0]["reason"]
    assert not perf_children(d.proc.pid)
    assert d.stop() == 0
