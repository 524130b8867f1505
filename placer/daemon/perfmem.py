"""perf mem in the daemon loop: short rolling ``perf mem record`` windows per job.

Where the start-up check (:func:`placer.daemon.perfstat.detect`) finds ``perf mem record``
working (Intel PEBS, AMD IBS), the daemon samples up to :data:`MAX_CHILDREN` objects-jobs
at once. For each it runs

    perf mem record --pid=PID --output=FILE --clockid=CLOCK_MONOTONIC --quiet

for :data:`WINDOW_S` seconds (long options only: ``perf mem`` has its own ``-p``, which
means ``--phys-data``; the rest are passed through to ``perf record``, which perf mem
runs with ``-d -W`` and the PMU's load/store events), stops it with SIGINT (perf writes
the file and exits), then runs

    perf script -i FILE -F pid,tid,time,event,addr,data_src,weight --ns

into a text file, parses it with :func:`placer.collectors.profile.perf.parse_script` (the
profiler's parser; the data source is decoded from its raw value) and maps every sample
to the job's live object whose address range holds it, with the profiler's interval index
(:class:`placer.collectors.profile.intervals.ObjectIndex`). Each step is polled from the loop,
never waited for; both files are removed as soon as the window is read, and the
next window starts.

The children get ``PR_SET_PDEATHSIG`` (SIGTERM): ``perf record -p`` would otherwise run
until its target exits if the daemon is SIGKILLed. Their files live in a per-daemon
directory that the daemon removes when it stops (and a later daemon removes if the
earlier one was killed).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.collectors.profile.intervals import ObjectIndex, Span
from placer.collectors.profile.perf import parse_script

#: perf mem children at once, all jobs together (each costs PEBS/IBS interrupts).
MAX_CHILDREN = 4
#: Seconds one recording window lasts (at least; the loop's interval rounds it up).
WINDOW_S = 2.0
#: Seconds a stopping ``perf record`` or a ``perf script`` may take before SIGKILL.
STOP_TIMEOUT_S = 5.0
SCRIPT_TIMEOUT_S = 20.0
SCRIPT_FIELDS = "pid,tid,time,event,addr,data_src,weight"
#: Objects listed per window event (by samples); the totals count all of them.
OBJECTS_IN_EVENT = 64
_SLOW_LEVELS = ("PMEM", "CXL", "remote-PMEM", "remote-CXL")
_PR_SET_PDEATHSIG = 1


@dataclass
class ObjectMem:
    """perf mem counts of one object in one window."""

    samples: int = 0
    loads: int = 0
    llc_misses: int = 0  # served beyond the LLC: DRAM, PMEM, CXL, remote
    dram: int = 0  # local DRAM
    remote: int = 0  # remote node (DRAM or cache)
    pmem: int = 0  # PMEM / CXL memory
    latency_sum: float = 0.0  # load latency (cycles), over loads
    tlb_misses: int = 0

    def add(self, other: ObjectMem) -> None:
        for name in ("samples", "loads", "llc_misses", "dram", "remote", "pmem", "tlb_misses"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_sum += other.latency_sum

    def to_doc(self) -> dict[str, Any]:
        n = max(self.samples, 1)
        return {
            "samples": self.samples,
            "llc_misses": self.llc_misses,
            "dram_share": round(self.dram / n, 4),
            "remote_share": round(self.remote / n, 4),
            "pmem_share": round(self.pmem / n, 4),
            "latency_mean": round(self.latency_sum / self.loads, 2) if self.loads else None,
            "tlb_misses": self.tlb_misses,
        }


@dataclass
class MemWindow:
    """One window's samples of one process, per object key."""

    samples: int = 0  # memory samples of the process
    matched: int = 0  # ... that fell inside a live object
    objects: dict[str, ObjectMem] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    total: ObjectMem = field(default_factory=ObjectMem)

    def to_doc(self, limit: int = OBJECTS_IN_EVENT) -> dict[str, Any]:
        top = sorted(self.objects.items(), key=lambda kv: (-kv[1].samples, kv[0]))[:limit]
        return {
            "samples": self.samples,
            "matched": self.matched,
            **{k: v for k, v in self.total.to_doc().items() if k != "samples"},
            "levels": dict(sorted(self.levels.items())),
            "objects": {k: v.to_doc() for k, v in top},
        }


def window_counts(
    text: str | list[str],
    objects: Sequence[tuple[str, int, int, int]],
    pid: int | None = None,
) -> MemWindow:
    """``perf script`` text of one window → per-object counts.

    ``objects`` are the job's live objects as ``(key, start address, size, alloc_ns)``;
    a sample counts for the object whose range holds its address and that was allocated
    by the sample's time (same clock: CLOCK_MONOTONIC). Samples of other processes than
    ``pid`` and non-memory samples are skipped.
    """
    keys = [o[0] for o in objects]
    index = ObjectIndex([Span(start, size, alloc_ns, None) for _, start, size, alloc_ns in objects])
    mem = [s for s in parse_script(text) if s.source is not None and (pid is None or s.pid == pid)]
    out = MemWindow(samples=len(mem))
    hits = index.lookup([s.time_ns for s in mem], [s.addr for s in mem])
    for s, hit in zip(mem, hits, strict=True):
        src = s.source
        assert src is not None
        out.levels[src.level] = out.levels.get(src.level, 0) + 1
        one = ObjectMem(
            samples=1,
            loads=int(src.op == "load"),
            llc_misses=int(src.llc_miss),
            dram=int(src.level == "DRAM"),
            remote=int(src.remote or src.level.startswith("remote-")),
            pmem=int(src.level in _SLOW_LEVELS),
            latency_sum=float(s.weight) if src.op == "load" else 0.0,
            tlb_misses=int(src.tlb == "miss"),
        )
        out.total.add(one)
        if hit is None:
            continue
        out.matched += 1
        out.objects.setdefault(keys[hit.obj], ObjectMem()).add(one)
    return out


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def workdir(uid: int | None = None) -> Path:
    """A fresh 0700 directory for this daemon's perf mem files; stale ones removed."""
    uid = os.getuid() if uid is None else uid
    prefix = f"placer-perfmem-{uid}-"
    tmp = Path(tempfile.gettempdir())
    for old in tmp.glob(prefix + "*"):
        owner = old.name[len(prefix) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


class PerfMemRecorder:
    """Rolling perf mem windows for one process; :meth:`poll` never blocks."""

    def __init__(
        self,
        pid: int,
        perf: str,
        directory: Path,
        tag: str,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid, self.perf, self.dir, self.tag = pid, perf, directory, tag
        self.window_s = window_s
        self.clock = clock
        self.phase = "idle"  # idle | recording | stopping | scripting | failed
        self.proc: subprocess.Popen[bytes] | None = None
        self.since = 0.0
        self.n = 0
        self.windows = 0
        self.failed: str | None = None

    # files of the current window
    def _path(self, ext: str) -> Path:
        return self.dir / f"{self.tag}-{self.n}.{ext}"

    def record_argv(self) -> list[str]:
        return [
            self.perf,
            "mem",
            "record",
            f"--pid={self.pid}",
            f"--output={self._path('data')}",
            "--clockid=CLOCK_MONOTONIC",
            "--quiet",
        ]

    def script_argv(self) -> list[str]:
        return [self.perf, "script", "-i", str(self._path("data")), "-F", SCRIPT_FIELDS, "--ns"]

    @property
    def child_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _spawn(self, argv: list[str], stdout: Path | None, stderr: Path) -> None:
        with open(stderr, "wb") as err:
            out = open(stdout, "wb") if stdout is not None else subprocess.DEVNULL  # noqa: SIM115
            try:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    close_fds=True,
                    env={**os.environ, "LC_ALL": "C"},
                    preexec_fn=_pdeathsig,  # noqa: PLW1509 - only prctl, no locks
                )
            finally:
                if stdout is not None and not isinstance(out, int):
                    out.close()
        self.since = self.clock()

    def _start(self) -> None:
        self.n += 1
        self._spawn(self.record_argv(), None, self._path("rec.err"))
        self.phase = "recording"

    def _why(self, ext: str) -> str:
        try:
            text = self._path(ext).read_text("utf-8", "replace")
            lines = [ln.strip() for ln in text.splitlines()]
        except OSError:
            lines = []
        first = next((ln for ln in lines if ln), "")
        assert self.proc is not None
        return first or f"exit {self.proc.returncode}"

    def _clean(self) -> None:
        for ext in ("data", "data.old", "txt", "rec.err", "script.err"):
            try:
                self._path(ext).unlink()
            except FileNotFoundError:
                pass

    def poll(self, target_alive: bool = True) -> str | None:
        """Advance the window; the ``perf script`` text of a finished window, else None.

        ``target_alive`` False: the process is gone, so a recording that exits by itself
        is the end, not a failure.
        """
        now = self.clock()
        if self.phase in ("failed", "stopped"):
            return None
        if self.phase == "idle":
            if target_alive:
                self._start()
            return None
        assert self.proc is not None
        if self.phase == "recording":
            if self.proc.poll() is None:
                if now - self.since >= self.window_s:
                    self.proc.send_signal(signal.SIGINT)
                    self.phase, self.since = "stopping", now
                return None
            self.phase = "stopping"  # exited by itself (target gone, or perf failed)
        if self.phase == "stopping":
            if self.proc.poll() is None:
                if now - self.since >= STOP_TIMEOUT_S:
                    self.proc.kill()
                    self.proc.wait()
                else:
                    return None
            data = self._path("data")
            if not data.exists() or data.stat().st_size == 0:
                if target_alive and self.proc.returncode not in (0, -signal.SIGINT):
                    self.failed = "perf mem record failed: " + self._why("rec.err")
                    self.phase = "failed"
                else:
                    self.phase = "idle"
                self._clean()
                return None
            self._spawn(self.script_argv(), self._path("txt"), self._path("script.err"))
            self.phase = "scripting"
            return None
        # scripting
        if self.proc.poll() is None:
            if now - self.since < SCRIPT_TIMEOUT_S:
                return None
            self.proc.kill()
            self.proc.wait()
        try:
            text = self._path("txt").read_text("utf-8", "replace")
        except OSError:
            text = ""
        if self.proc.returncode != 0 and not text:
            self.failed = "perf script failed: " + self._why("script.err")
            self.phase = "failed"
            self._clean()
            return None
        self._clean()
        self.windows += 1
        self.phase = "idle"
        if target_alive:
            self._start()
        return text

    def stop(self, timeout: float = 2.0) -> None:
        """SIGINT the running child (SIGKILL if it lingers) and remove the window's files."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
        elif proc is not None:
            proc.wait()
        self._clean()
        if self.phase != "failed":
            self.phase = "stopped"
