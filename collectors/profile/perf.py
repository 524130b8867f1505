"""perf as an access signal: first-touch page faults everywhere, ``perf mem`` where it works.

``perf record -e page-faults -d -k CLOCK_MONOTONIC`` gives, for every page fault, the
faulting data address on the same clock as the shim's log: the first touch of each page
of each object. Where ``placer doctor`` finds ``perf mem`` working (Intel PEBS / AMD IBS),
a nested ``perf record`` of ``mem-loads,ldlat=30`` and ``mem-stores`` adds sampled data
addresses with their data source (L1 … DRAM, PMEM, remote), latency and TLB outcome.

Both are read back through ``perf script`` text, whose layout (perf's
``builtin-script.c``) is ``pid/tid time: event: addr [data_src |decoded|] [weight]``.
The data source is decoded from its raw 64-bit value (``union perf_mem_data_src`` in
``linux/perf_event.h``), not from perf's English rendering, which changes between versions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from placer.errors import first_line

FAULT_EVENT = "page-faults/period=1/"
CLOCK_EVENT = "task-clock/period=1000000/"  # one sample per ms of CPU time
CLOCK_PERIOD_NS = 1_000_000
MEM_EVENTS = ["cpu/mem-loads,ldlat=30/P", "cpu/mem-stores/P"]

_LINE = re.compile(
    r"^\s*(?:(?P<pid>\d+)/)?(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s+(?P<event>\S+):\s+"
    r"(?P<addr>[0-9a-fA-F]+)"
    r"(?:\s+(?P<src>[0-9a-fA-F]+)\s+\|OP.*?)?"
    r"(?:\s+(?P<weight>\d+))?\s*$"
)


@dataclass(frozen=True)
class PerfStatus:
    """Whether perf can record page faults (and perf mem) here, and if not, why."""

    faults: bool
    mem: bool
    reason: str = ""
    path: str | None = None


@dataclass(frozen=True)
class MemSource:
    """A decoded ``perf_mem_data_src``."""

    op: str  # load | store | prefetch | exec | unknown
    level: str  # L1 | LFB | L2 | L3 | L4 | DRAM | PMEM | CXL | remote-DRAM | remote-cache | ...
    remote: bool
    tlb: str  # hit | miss | unknown
    llc_miss: bool  # served beyond the last-level cache (any memory)


@dataclass(frozen=True)
class PerfSample:
    pid: int
    tid: int
    time_ns: int
    event: str
    addr: int
    source: MemSource | None = None
    weight: int = 0  # load latency in cycles for mem-loads (PEBS ldlat)

    @property
    def is_fault(self) -> bool:
        return "fault" in self.event

    @property
    def is_clock(self) -> bool:
        return self.event.startswith("task-clock") or self.event.startswith("cpu-clock")

    @property
    def is_mem(self) -> bool:
        return self.source is not None


# ----------------------------------------------------------------- data source decoding
_OP = {0x02: "load", 0x04: "store", 0x08: "prefetch", 0x10: "exec"}
_LVLNUM = {
    0x01: "L1",
    0x02: "L2",
    0x03: "L3",
    0x04: "L4",
    0x05: "L2",
    0x06: "MSC",
    0x08: "uncached",
    0x09: "CXL",
    0x0A: "IO",
    0x0B: "any-cache",
    0x0C: "LFB",
    0x0D: "DRAM",
    0x0E: "PMEM",
}
# mem_lvl bits (older encoding), checked from the farthest level inwards
_LVL_BITS = [
    (0x0800, "remote-cache"),
    (0x0400, "remote-cache"),
    (0x0200, "remote-DRAM"),
    (0x0100, "remote-DRAM"),
    (0x0080, "DRAM"),
    (0x2000, "uncached"),
    (0x1000, "IO"),
    (0x0040, "L3"),
    (0x0020, "L2"),
    (0x0010, "LFB"),
    (0x0008, "L1"),
]
_MEMORY_LEVELS = {"DRAM", "PMEM", "CXL", "remote-DRAM", "remote-cache"}


def decode_data_src(value: int) -> MemSource:
    """Decode ``union perf_mem_data_src`` (little-endian bitfield layout)."""
    op_bits = value & 0x1F
    lvl = (value >> 5) & 0x3FFF
    dtlb = (value >> 26) & 0x7F
    lvl_num = (value >> 33) & 0xF
    remote = bool((value >> 37) & 0x1)
    op = "unknown"
    for bit, name in _OP.items():
        if op_bits & bit:
            op = name
            break
    level = "unknown"
    if lvl_num and lvl_num != 0x0F:
        level = _LVLNUM.get(lvl_num, f"L{lvl_num}")
        if remote and level in ("DRAM", "PMEM", "CXL"):
            level = "remote-DRAM" if level == "DRAM" else f"remote-{level}"
        elif remote and level in ("L1", "L2", "L3", "L4", "any-cache"):
            level = "remote-cache"
    else:
        for bit, name in _LVL_BITS:
            if lvl & bit:
                level = name
                break
    tlb = "unknown"
    if dtlb & 0x04:
        tlb = "miss"
    elif dtlb & 0x02:
        tlb = "hit"
    return MemSource(
        op=op,
        level=level,
        remote=remote,
        tlb=tlb,
        llc_miss=level in _MEMORY_LEVELS or level.startswith("remote-"),
    )


# ----------------------------------------------------------------- parsing
def parse_script(lines: str | list[str] | Iterator[str]) -> Iterator[PerfSample]:
    """Samples from ``perf script -F pid,tid,time,event,addr[,data_src,weight] --ns``.

    Lines that are not samples (headers, warnings) are skipped.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    for line in lines:
        m = _LINE.match(line)
        if not m:
            continue
        secs, _, frac = m.group("time").partition(".")
        time_ns = int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
        src = m.group("src")
        yield PerfSample(
            pid=int(m.group("pid") or m.group("tid")),
            tid=int(m.group("tid")),
            time_ns=time_ns,
            event=m.group("event"),
            addr=int(m.group("addr"), 16),
            source=decode_data_src(int(src, 16)) if src else None,
            weight=int(m.group("weight") or 0),
        )


# ----------------------------------------------------------------- running perf
def perf_mem_works(perf: str) -> tuple[bool, str]:
    """Does ``perf mem record`` run here (PEBS/IBS present and permitted)? And if not, why.

    One probe for the profiler and the daemon: both record perf mem only where it works.
    """
    with tempfile.TemporaryDirectory(prefix="placer-perfmem-") as tmp:
        try:
            r = subprocess.run(
                [perf, "mem", "record", "-o", os.path.join(tmp, "mem.data"), "true"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"perf mem cannot run: {exc}"
    if r.returncode == 0:
        return True, ""
    first = first_line(r.stderr + r.stdout) or f"exit {r.returncode}"
    return False, f"perf mem record failed: {first}"


def probe(perf: str | None = None, *, want_mem: bool = True) -> PerfStatus:
    """Can perf record page faults with data addresses here? And perf mem?"""
    perf = perf or shutil.which("perf")
    if perf is None:
        return PerfStatus(False, False, "perf not found (Debian: linux-perf)")
    with tempfile.TemporaryDirectory(prefix="placer-perf-") as tmp:
        out = os.path.join(tmp, "probe.data")
        try:
            proc = subprocess.run(
                [
                    perf,
                    "record",
                    "-q",
                    "-e",
                    FAULT_EVENT,
                    "-d",
                    "-k",
                    "CLOCK_MONOTONIC",
                    "-o",
                    out,
                    "--",
                    "true",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return PerfStatus(False, False, f"perf cannot run: {exc}", perf)
        if proc.returncode != 0:
            why = first_line(proc.stderr + proc.stdout) or f"exit {proc.returncode}"
            return PerfStatus(False, False, f"perf record not permitted or failed: {why}", perf)
        mem = perf_mem_works(perf)[0] if want_mem else False
    return PerfStatus(True, mem, "", perf)


def record_prefix(status: PerfStatus, workdir: Path) -> list[str]:
    """argv to put in front of the program: page faults (+ task clock), and perf mem."""
    if not status.faults or status.path is None:
        return []
    argv = [
        status.path,
        "record",
        "-q",
        "-e",
        FAULT_EVENT,
        "-e",
        CLOCK_EVENT,
        "-d",
        "-k",
        "CLOCK_MONOTONIC",
        "-o",
        str(workdir / "faults.data"),
        "--",
    ]
    if status.mem:
        mem = [status.path, "record", "-q"]
        for ev in MEM_EVENTS:
            mem += ["-e", ev]
        mem += ["-d", "-W", "-k", "CLOCK_MONOTONIC", "-o", str(workdir / "mem.data"), "--"]
        argv += mem
    return argv


def read_samples(status: PerfStatus, workdir: Path) -> tuple[list[PerfSample], str]:
    """Every sample perf wrote in ``workdir``, and a note if reading some failed."""
    samples: list[PerfSample] = []
    notes: list[str] = []
    if status.path is None:
        return samples, ""
    jobs = [("faults.data", "pid,tid,time,event,addr")]
    if status.mem:
        jobs.append(("mem.data", "pid,tid,time,event,addr,data_src,weight"))
    for name, fields in jobs:
        path = workdir / name
        if not path.exists() or path.stat().st_size == 0:
            notes.append(f"{name}: not written")
            continue
        try:
            proc = subprocess.Popen(
                [status.path, "script", "-i", str(path), "-F", fields, "--ns"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as exc:
            notes.append(f"perf script: {exc}")
            continue
        assert proc.stdout is not None
        samples.extend(parse_script(proc.stdout))
        _, err = proc.communicate()
        if proc.returncode != 0:
            notes.append(f"perf script {name}: {first_line(err) or proc.returncode}")
    return samples, "; ".join(notes)
