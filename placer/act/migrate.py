"""Page migration with ``move_pages(2)`` (ctypes, no libnuma), rate limited in MB/s.

The kernel's own tiering promotes at a bounded rate (``numa_balancing_promote_rate_limit_MBps``);
the daemon does the same with a token bucket shared by all jobs, so a re-ranking never
turns into a migration storm. Each call first asks where the pages are (``nodes=NULL``),
then moves only those not on the target, and reports what the kernel said per page.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import threading
import time
from dataclasses import dataclass, field

from placer.act.bind import parse_numa_maps, vma_ends

MPOL_MF_MOVE = 1 << 1
_SYSCALLS = {"x86_64": 279, "aarch64": 239, "ppc64le": 301, "s390x": 310, "riscv64": 239}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_PAGES_PER_CALL = 16384

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _nr() -> int:
    nr = _SYSCALLS.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"move_pages: unknown syscall number on {platform.machine()}")
    return nr


def move_pages(pid: int, pages: list[int], node: int | None) -> list[int]:
    """Per page: the node it is on after the call, or ``-errno`` (ENOENT: not present).

    ``node=None`` only queries. Raises :class:`OSError` when the call itself fails
    (ESRCH: the process is gone; EPERM: not ours).
    """
    n = len(pages)
    out: list[int] = []
    for lo in range(0, n, MAX_PAGES_PER_CALL):
        chunk = pages[lo : lo + MAX_PAGES_PER_CALL]
        m = len(chunk)
        addrs = (ctypes.c_void_p * m)(*chunk)
        status = (ctypes.c_int * m)()
        nodes = (ctypes.c_int * m)(*([node] * m)) if node is not None else None
        rc = _libc.syscall(
            ctypes.c_long(_nr()),
            ctypes.c_int(pid),
            ctypes.c_ulong(m),
            addrs,
            nodes,
            status,
            ctypes.c_int(MPOL_MF_MOVE if node is not None else 0),
        )
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"move_pages({pid}): {os.strerror(err)}")
        out.extend(status)
    return out


def page_range(address: int, size: int, page: int = PAGE_SIZE) -> list[int]:
    """Pages wholly inside ``[address, address + size)`` (never an allocator header)."""
    first = (address + page - 1) // page * page
    last = (address + size) // page * page
    return list(range(first, last, page))


class RateLimiter:
    """Token bucket in bytes per second; ``take(n)`` grants up to ``n`` bytes now."""

    def __init__(self, mb_per_s: float, burst_seconds: float = 1.0) -> None:
        self.rate = mb_per_s * 1024 * 1024
        self.capacity = self.rate * burst_seconds
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def set_rate(self, mb_per_s: float) -> None:
        with self._lock:
            self.rate = mb_per_s * 1024 * 1024
            self.capacity = self.rate
            self.tokens = min(self.tokens, self.capacity)

    def take(self, nbytes: int) -> int:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            grant = int(min(nbytes, max(self.tokens, 0)))
            self.tokens -= grant
            return grant


@dataclass
class MigrationResult:
    pid: int
    node: int
    pages: int  # pages asked for
    before_on_node: int  # already on the target before the call
    after_on_node: int  # on the target after the call
    moved: int  # pages the call put on the target that were elsewhere
    not_present: int  # never touched (no page to move yet)
    errors: dict[str, int] = field(default_factory=dict)  # errno name -> pages
    seconds: float = 0.0

    @property
    def bytes_moved(self) -> int:
        return self.moved * PAGE_SIZE

    def to_dict(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "node": self.node,
            "pages": self.pages,
            "before_on_node": self.before_on_node,
            "after_on_node": self.after_on_node,
            "moved": self.moved,
            "bytes_moved": self.bytes_moved,
            "not_present": self.not_present,
            "errors": self.errors,
            "seconds": round(self.seconds, 6),
        }


def migrate(pid: int, pages: list[int], node: int) -> MigrationResult:
    """Move ``pages`` of ``pid`` to ``node`` and say what happened to each."""
    t0 = time.perf_counter()
    before = move_pages(pid, pages, None)
    todo = [p for p, s in zip(pages, before, strict=True) if s != node and s != -errno.ENOENT]
    after_status = dict(zip(pages, before, strict=True))
    if todo:
        for p, s in zip(todo, move_pages(pid, todo, node), strict=True):
            after_status[p] = s
    errors: dict[str, int] = {}
    for s in after_status.values():
        if s < 0 and s != -errno.ENOENT:
            name = errno.errorcode.get(-s, str(-s))
            errors[name] = errors.get(name, 0) + 1
    on_before = sum(1 for s in before if s == node)
    on_after = sum(1 for s in after_status.values() if s == node)
    return MigrationResult(
        pid=pid,
        node=node,
        pages=len(pages),
        before_on_node=on_before,
        after_on_node=on_after,
        moved=sum(1 for p in todo if after_status[p] == node),
        not_present=sum(1 for s in after_status.values() if s == -errno.ENOENT),
        errors=errors,
        seconds=time.perf_counter() - t0,
    )


def numa_counts(pid: int, address: int, size: int) -> dict[int, int]:
    """Pages per node that ``/proc/PID/numa_maps`` shows for VMAs overlapping the range.

    numa_maps counts whole VMAs: for an object in its own mapping (large mallocs are
    mmaps) that is the object.
    """
    try:
        numa = open(f"/proc/{pid}/numa_maps").read()
        maps = open(f"/proc/{pid}/maps").read()
    except OSError:
        return {}
    vmas = parse_numa_maps(numa)
    ends = vma_ends(vmas, maps)
    out: dict[int, int] = {}
    for v in vmas:
        end = ends.get(v.start, v.start + 1)
        if v.start < address + size and end > address:
            for node, n in v.pages.items():
                out[node] = out.get(node, 0) + n * v.page_kb * 1024 // PAGE_SIZE
    return out
