"""Per-job perf software counters: ``perf stat -I`` as a child the loop reads without blocking.

For every attached job the daemon runs

    perf stat -x, -I <interval ms> -e task-clock,page-faults,minor-faults,major-faults -p PID

and reads its CSV lines (on perf's stderr, through a non-blocking pipe) each tick; the
counts since the last tick go into the job's ``window`` event in place of the
``/proc/PID/stat`` deltas. perf exits by itself when the job's process does; the daemon
stops it when the job is closed or detached and when the daemon stops. If the daemon is
killed (SIGKILL) the pipe loses its only reader and perf dies of SIGPIPE at its next
interval, so no perf process outlives the daemon by more than one interval.

:func:`detect` says once whether perf can count those events here (the check ``placer
doctor`` runs) and whether ``perf mem`` works; the job's state records which source its
counters come from (``signals``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

from placer.collectors.profile.perf import perf_mem_works
from placer.doctor import _perf_stat_supported  # the check `placer doctor` runs

EVENTS = ("task-clock", "page-faults", "minor-faults", "major-faults")
#: perf refuses intervals under 10 ms and warns under 100 ms.
MIN_INTERVAL_MS = 100


@dataclass(frozen=True)
class PerfSupport:
    """Whether per-job perf counters (and perf mem) work on this host, and if not, why."""

    counters: bool
    path: str | None
    reason: str = ""
    mem: bool = False
    mem_reason: str = ""

    def signals(self, enabled: bool) -> dict[str, str]:
        """The ``signals`` entry of a job's state: where its counters come from."""
        if not enabled:
            counters = "/proc/PID/stat (perf = false in the config)"
        elif self.counters:
            counters = "perf stat " + ",".join(EVENTS)
        else:
            counters = f"/proc/PID/stat ({self.reason})"
        mem = (
            "available (perf mem record works)"
            if self.mem
            else f"unavailable ({self.mem_reason or self.reason})"
        )
        return {"counters": counters, "perf_mem": mem}


def detect(perf: str | None = None) -> PerfSupport:
    """Can ``perf stat`` count the four software events of a process here? And perf mem?"""
    perf = perf or shutil.which("perf")
    if perf is None:
        return PerfSupport(False, None, "perf not found (Debian: linux-perf)")
    counted = _perf_stat_supported(perf, ",".join(EVENTS))
    missing = [e for e, ok in counted.items() if not ok]
    if missing:
        paranoid = ""
        try:
            with open("/proc/sys/kernel/perf_event_paranoid") as fh:
                paranoid = f"; kernel.perf_event_paranoid = {fh.read().strip()}"
        except OSError:
            pass
        return PerfSupport(
            False,
            perf,
            f"perf stat cannot count {', '.join(missing)} (not permitted or not supported"
            f"{paranoid})",
        )
    mem, mem_reason = perf_mem_works(perf)
    return PerfSupport(True, perf, "", mem, mem_reason)


@dataclass
class Counts:
    """Counts of the intervals read since the last :meth:`PerfCounter.read`."""

    task_clock_ms: float = 0.0
    page_faults: int = 0
    minor_faults: int = 0
    major_faults: int = 0
    intervals: int = 0
    not_counted: int = 0  # lines perf printed as <not counted> (the task did not run)
    unsupported: list[str] = field(default_factory=list)


class PerfCounter:
    """One ``perf stat -I`` child for one process; :meth:`read` never blocks."""

    def __init__(self, pid: int, interval_ms: int, perf: str) -> None:
        self.pid = pid
        self.interval_ms = max(MIN_INTERVAL_MS, int(interval_ms))
        self.argv = [
            perf,
            "stat",
            "-x,",
            "-I",
            str(self.interval_ms),
            "-e",
            ",".join(EVENTS),
            "-p",
            str(pid),
        ]
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        assert self.proc.stderr is not None
        self.fd = self.proc.stderr.fileno()
        fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.buf = b""
        self.errors: list[str] = []  # lines that are not counter lines (perf's complaints)
        self.total = Counts()

    @property
    def perf_pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def read(self) -> Counts:
        """Counts of every complete interval line perf wrote since the last call."""
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not data:
                break
            chunks.append(data)
        self.buf += b"".join(chunks)
        out = Counts()
        if b"\n" not in self.buf:
            return out
        text, _, self.buf = self.buf.rpartition(b"\n")
        stamps: set[str] = set()
        for raw in text.decode("utf-8", "replace").splitlines():
            parse_line(raw, out, stamps, self.errors)
        out.intervals = len(stamps)
        del self.errors[:-20]
        for name in ("task_clock_ms", "page_faults", "minor_faults", "major_faults", "intervals"):
            setattr(self.total, name, getattr(self.total, name) + getattr(out, name))
        return out

    def stop(self, timeout: float = 2.0) -> None:
        """SIGINT (perf prints its last interval and exits), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass
        else:
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def parse_line(raw: str, out: Counts, stamps: set[str], errors: list[str]) -> None:
    """One ``perf stat -x, -I`` line: ``time,value,unit,event,runtime,pct,...``."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return
    parts = line.split(",")
    if len(parts) < 4 or parts[3] not in EVENTS:
        errors.append(line[:200])
        return
    stamp, value, event = parts[0], parts[1], parts[3]
    stamps.add(stamp)
    if value.startswith("<not supported"):
        if event not in out.unsupported:
            out.unsupported.append(event)
        return
    if value.startswith("<not counted"):
        out.not_counted += 1
        return
    try:
        number = float(value)
    except ValueError:
        errors.append(line[:200])
        return
    if event == "task-clock":
        out.task_clock_ms += number
    elif event == "page-faults":
        out.page_faults += int(number)
    elif event == "minor-faults":
        out.minor_faults += int(number)
    else:
        out.major_faults += int(number)
