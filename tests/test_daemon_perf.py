"""The daemon's perf software counters per job: a real ``perf stat -I`` child per job.

Skipped with the reason when perf cannot count task-clock and the fault events here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from placer.daemon.decide import ObjectTable
from placer.daemon.perfmem import PerfMemRecorder, window_counts
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
        pc = PerfCounter(busy.pid, 1000, SUPPORT.path)
        t0 = time.monotonic()
        first = pc.read()  # nothing yet: returns at once, not after perf's first interval
        assert time.monotonic() - t0 < 0.5 and first.intervals == 0
        got = first
        deadline = time.monotonic() + 20  # a busy host can delay perf's start by seconds
        while got.intervals < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            more = pc.read()
            got.intervals += more.intervals
            got.task_clock_ms += more.task_clock_ms
            got.minor_faults += more.minor_faults
            got.page_faults += more.page_faults
        assert got.intervals >= 2 and got.task_clock_ms > 10 and got.minor_faults > 100
        # page-faults = minor + major, but perf reads each counter on its own at an
        # interval's end: a fault landing between the reads shifts one by a few
        faults = got.minor_faults + got.major_faults
        assert abs(got.page_faults - faults) <= max(10, faults // 100)
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


# ------------------------------------------------------------------ perf mem (recorded)
MEM_SCRIPT = Path(__file__).parent / "data" / "profile" / "perf_mem_script.txt"

# A stand-in for perf where the host has no PEBS/IBS: `stat` counts like perf stat (-x,),
# `mem record` waits for SIGINT (or its target's exit) and then writes its output file,
# `script` prints the recorded perf_mem_script.txt with the pid of the recording and the
# addresses moved into the target's largest anonymous mapping. Every call is logged.
FAKE_PERF = r"""#!{python}
import json, os, signal, sys, time
argv = sys.argv[1:]
with open(os.environ["FAKE_PERF_LOG"], "a") as fh:
    fh.write(json.dumps(argv) + "\n")
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
def alive(pid):
    try:
        st = open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[0]
        return st not in ("Z", "X")
    except OSError:
        return False
if argv[0] == "stat":
    events = argv[argv.index("-e") + 1].split(",")
    if "-I" not in argv:
        for e in events:
            print(f"1,,{{e}},100,100.00,,", file=sys.stderr)
        sys.exit(0)
    pid, t0 = int(argv[argv.index("-p") + 1]), time.monotonic()
    while not stop and alive(pid):
        time.sleep(0.1)
        for e in events:
            stamp = time.monotonic() - t0
            print(f"{{stamp:.6f}},1,,{{e}},100,100.00,,", file=sys.stderr, flush=True)
    sys.exit(0)
if argv[:2] == ["mem", "record"]:
    if os.environ.get("FAKE_PERF_MEM_FAIL"):
        print("failed: memory events not supported", file=sys.stderr)
        sys.exit(129)
    out = [a.split("=", 1)[1] for a in argv if a.startswith("--output=")]
    out = out[0] if out else argv[argv.index("-o") + 1]
    pids = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--pid=")]
    while pids and not stop and alive(pids[0]):
        time.sleep(0.02)
    with open(out, "w") as fh:
        fh.write(str(pids[0] if pids else 0))
    sys.exit(0)
if argv[0] == "script":
    pid = int(open(argv[argv.index("-i") + 1]).read() or 0)
    base = 0x7F0000000000
    best = 0
    try:
        for line in open(f"/proc/{{pid}}/maps"):
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if parts[1].startswith("rw") and len(parts) < 6 and hi - lo > best:
                base, best = lo, hi - lo
    except OSError:
        pass
    now = time.clock_gettime(time.CLOCK_MONOTONIC)
    for line in open({recorded!r}):
        f = line.split()
        if int(f[3], 16) >> 40 == 0x7F:  # the address field
            line = line.replace(f[3], format(base + (int(f[3], 16) & 0xFFFFF), "x"))
        if f[0].startswith("4242/"):  # the recorded process; the other pid's line stays
            line = line.replace(f[0], f"{{pid}}/{{pid}}", 1)
        line = line.replace(f[1], f"{{now:.9f}}:", 1)
        sys.stdout.write(line)
    sys.exit(0)
sys.exit(2)
"""

HOLD_PY = """
import mmap, time
b = mmap.mmap(-1, 32 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, len(b), 4096):
    b[i] = 1
print("ready", flush=True)
time.sleep(120)
"""


def fake_perf(tmp_path: Path) -> tuple[Path, Path]:
    """A fake ``perf`` in its own bin directory, and the file it logs its argv to."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    perf = bindir / "perf"
    perf.write_text(FAKE_PERF.format(python=PY, recorded=str(MEM_SCRIPT)))
    perf.chmod(0o755)
    return perf, tmp_path / "perf-calls.jsonl"


def calls(log: Path) -> list[list[str]]:
    import json

    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def mem_recorders(target: int) -> list[int]:
    """Live processes whose command line is ``... mem record --pid=target ...``."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and f"--pid={target}".encode() in argv and b"mem" in argv:
            out.append(int(entry.name))
    return out


def test_perf_mem_window_counts_on_recorded_script() -> None:
    text = MEM_SCRIPT.read_text()
    objects = [
        ("a", 0x7F0000001000, 0x1000, 0),
        ("b", 0x7F0000200000, 0x10000, 0),
        ("late", 0x5555DEADB000, 0x1000, 1000_800_000_000),  # allocated after its sample
        ("idle", 0x10000, 0x1000, 0),
    ]
    w = window_counts(text, objects, pid=4242)
    assert (w.samples, w.matched) == (7, 6)  # pid 777 skipped; the "late" sample unmatched
    a, b = w.objects["a"], w.objects["b"]
    assert (a.samples, a.loads, a.llc_misses, a.latency_sum, a.tlb_misses) == (3, 2, 0, 16.0, 0)
    assert (b.samples, b.loads, b.llc_misses, b.tlb_misses) == (3, 3, 3, 1)
    assert (b.dram, b.pmem, b.remote, b.latency_sum) == (1, 1, 1, 312 + 655 + 421)
    assert set(w.objects) == {"a", "b"}
    doc = w.to_doc()
    assert doc["objects"]["b"]["dram_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert doc["objects"]["a"]["latency_mean"] == 8.0 and doc["llc_misses"] == 4
    assert doc["levels"]["L1"] == 3 and doc["levels"]["DRAM"] == 2
    # every sample of any pid when none is given
    assert window_counts(text, objects).samples == 8

    # folded into the live objects: the perf mem features run_features defines
    table = ObjectTable()
    table.add_alloc(1, 0x7F0000001000, 0x1000, 0xA, 0)
    table.add_alloc(2, 0x7F0000200000, 0x10000, 0xB, 0)
    table.changed = False
    table.mem_window({"s1": a, "s2": b, "gone": b})
    assert table.changed
    _, df = table.features(10)
    assert list(df["llc_miss_share"]) == [0.0, 1.0]
    assert list(df["tlb_miss_share"]) == pytest.approx([0.0, 1 / 3])
    assert list(df["mem_latency"]) == pytest.approx([16 / 3, (312 + 655 + 421) / 3])
    assert df["llc_miss_density"].iat[1] == pytest.approx(3 / (0x10000 / 2**20))
    # without perf mem the features stay NaN, as before
    bare = ObjectTable()
    bare.add_alloc(1, 0x1000, 0x1000, 0xA, 0)
    assert bare.features(10)[1][["llc_miss_share", "mem_latency"]].isna().all(axis=None)


def test_perf_mem_recorder_command_lines_windows_and_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    perf, log = fake_perf(tmp_path)
    monkeypatch.setenv("FAKE_PERF_LOG", str(log))
    work = tmp_path / "work"
    work.mkdir()
    target = subprocess.Popen([PY, "-c", HOLD_PY], stdout=subprocess.PIPE)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == b"ready"
        rec = PerfMemRecorder(target.pid, str(perf), work, "t", window_s=0.3)
        texts = []
        deadline = time.monotonic() + 20
        while len(texts) < 2 and time.monotonic() < deadline:
            got = rec.poll()
            if got is not None:
                texts.append(got)
                # the window's files are gone at once; the next window is recording
                assert sorted(p.name for p in work.iterdir()) == [f"t-{rec.n}.rec.err"]
                assert rec.phase == "recording" and rec.child_pid in mem_recorders(target.pid)
            time.sleep(0.05)
        assert len(texts) == 2 and rec.windows == 2
        seen = calls(log)
        assert seen[0] == [
            "mem",
            "record",
            f"--pid={target.pid}",
            f"--output={work}/t-1.data",
            "--clockid=CLOCK_MONOTONIC",
            "--quiet",
        ]
        assert seen[1] == [
            "script",
            "-i",
            f"{work}/t-1.data",
            "-F",
            "pid,tid,time,event,addr,data_src,weight",
            "--ns",
        ]
        w = window_counts(texts[0], [("m", 0, 1 << 64, 0)], pid=target.pid)
        assert w.samples == 7 and w.matched == 7
        rec.stop()
        assert not mem_recorders(target.pid) and list(work.iterdir()) == []
        assert rec.poll() is None and rec.phase == "stopped"

        # perf mem not permitted for this process: the reason, no files left
        monkeypatch.setenv("FAKE_PERF_MEM_FAIL", "1")
        bad = PerfMemRecorder(target.pid, str(perf), work, "u", window_s=0.3)
        wait_for(lambda: bad.poll() is None and bad.failed, timeout=10)
        assert bad.failed == "perf mem record failed: failed: memory events not supported"
        assert list(work.iterdir()) == []
    finally:
        target.kill()
        target.wait()


def test_daemon_samples_perf_mem_into_windows_and_features(
    daemon_factory: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    perf, log = fake_perf(tmp_path)
    d = daemon_factory()
    d.env["PATH"] = f"{perf.parent}{os.pathsep}{d.env['PATH']}"
    d.env["FAKE_PERF_LOG"] = str(log)
    d.start()
    assert d.proc is not None
    said = [e for e in d.log_lines() if e.get("event") == "perf_counters"]
    assert len(said) == 1 and said[0]["perf_mem"] is True
    target = subprocess.Popen([PY, "-c", HOLD_PY], stdout=subprocess.PIPE)
    d.children.append(target)  # type: ignore[attr-defined]
    assert target.stdout is not None and target.stdout.readline().strip() == b"ready"
    job = d.request("attach", pid=target.pid)["job"]["id"]

    def mem_windows() -> list[dict]:
        return [w["perf_mem"] for w in d.events(job, "window") if "perf_mem" in w]

    ws = wait_for(lambda: len(mem_windows()) >= 2 and mem_windows(), timeout=30)
    first = ws[0]
    # 7 samples of the process; 6 in its 32 MiB mapping, one outside any object
    assert first["samples"] == 7 and first["matched"] == 6 and first["llc_misses"] == 4
    ((key, obj),) = first["objects"].items()
    assert key.startswith("v") and obj["samples"] == 6 and obj["tlb_misses"] == 1
    doc = d.request("job", job=job)["job"]
    assert doc["signals"]["perf_mem"].startswith("sampled: perf mem record")
    objs = {o["object"]: o for o in doc["current"]}  # the live objects' perf mem windows
    assert objs[key]["perf_mem_samples"] >= 12 and objs[key]["size_bytes"] == 32 << 20
    assert any(c[:3] == ["mem", "record", f"--pid={target.pid}"] for c in calls(log))
    tmp = Path(tempfile.gettempdir())
    mem_dirs = list(tmp.glob(f"placer-perfmem-{os.getuid()}-{d.proc.pid}-*"))
    assert len(mem_dirs) == 1

    # detach stops the job's perf mem and removes its files
    d.request("detach", job=job)
    wait_for(lambda: not mem_recorders(target.pid), timeout=5)
    wait_for(lambda: not list(mem_dirs[0].iterdir()), timeout=5)
    # SIGTERM: its children stopped, its directory removed
    d.request("attach", pid=target.pid)
    wait_for(lambda: mem_recorders(target.pid), timeout=10)
    assert d.stop() == 0
    assert not mem_recorders(target.pid) and not mem_dirs[0].exists()
    state = d.job_row(job)["state"]
    assert state["perf_mem_windows"] >= 2 and state["perf_mem_samples"] >= 14


# ----------------------------------------------- the one perf-mem probe both sides use
def _perf_script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_perf_mem_probe_is_shared_by_profiler_and_daemon(tmp_path: Path) -> None:
    from placer.collectors.profile.perf import perf_mem_works
    from placer.daemon.perfstat import PerfSupport

    refused = _perf_script(
        tmp_path, "perf-refused", 'echo "failed: memory events not supported" >&2\nexit 129\n'
    )
    assert perf_mem_works(refused) == (
        False,
        "perf mem record failed: failed: memory events not supported",
    )
    works = _perf_script(tmp_path, "perf-works", "exit 0\n")
    assert perf_mem_works(works) == (True, "")
    # the daemon's signals carry the probe's reason when perf mem is missing
    support = PerfSupport(True, works, "", False, perf_mem_works(refused)[1])
    assert "memory events not supported" in support.signals(True)["perf_mem"]
