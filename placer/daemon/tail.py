"""Incremental reader of a live shim log (format: docs/shim-log.md).

:func:`placer.collectors.shim.log.read_log` parses a whole finished log; the daemon instead
follows a log while the program writes it. :class:`ShimTail` remembers the byte offset of
the last complete record, reads what was appended since, and returns the new ALLOC, FREE,
SAMPLE, BIND and END records. A record cut at the end of the file is left for the next
poll. The shim appends whole records when its buffer fills (``PLACER_SHIM_BUFFER``, 64 KiB
at least) and at exit, so a live log lags the program by at most one buffer.

The path comes from the target's environment, so the target chooses it: the file is opened
with ``O_NONBLOCK | O_NOFOLLOW`` and must be a regular file owned by one of the process's
uids (:func:`read_log_bytes`; a FIFO, a device, a symbolic link or another user's file is
refused with :class:`LogRefused`), and in the daemon every open and read runs on a worker
thread that the loop waits on for at most :data:`READ_TIMEOUT` seconds
(:class:`OffLoop`), so no file can stop the loop.
"""

from __future__ import annotations

import errno
import os
import queue
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from placer.collectors.shim.log import (
    ALLOC_KINDS,
    FREE_KINDS,
    HEADER_SIZE,
    MAGIC,
    MAX_RECORD,
    REC_ALLOC,
    REC_BIND,
    REC_END,
    REC_FREE,
    REC_SAMPLE,
    VERSION,
    AllocRecord,
    BindRecord,
    EndRecord,
    FreeRecord,
    SampleRecord,
)

#: Bytes read per poll at most (the rest waits for the next tick).
READ_CHUNK = 8 * 1024 * 1024
#: Seconds one open-and-read of a shim log may take in the daemon before its job fails.
READ_TIMEOUT = 5.0
#: How a target-controlled log is opened: never blocks on a FIFO, never follows a link.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC

T = TypeVar("T")


class TailError(Exception):
    """The file is not a shim log we can follow (bad magic, version or record)."""


class LogRefused(TailError):
    """A log the daemon will not read: not a regular file of the process's owner, or stuck."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_log_bytes(
    path: Path, owners: frozenset[int], offset: int, limit: int, head: bool
) -> tuple[bytes, bytes] | None:
    """The header (when ``head``) and up to ``limit`` bytes at ``offset`` of the log.

    None when the file is not there yet (or is leased: try again). The open never blocks
    (``O_NONBLOCK``) and never follows a final symbolic link (``O_NOFOLLOW``); the file
    must be a regular file whose owner is in ``owners``, else :class:`LogRefused`.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return None
        if exc.errno == errno.ELOOP:
            raise LogRefused(f"{path}: refused: a symbolic link") from None
        raise LogRefused(f"{path}: refused: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LogRefused(f"{path}: refused: {_kind(st.st_mode)}, not a regular file")
        if st.st_uid not in owners:
            raise LogRefused(
                f"{path}: refused: owned by uid {st.st_uid}, not by the process "
                f"(uid {', '.join(str(u) for u in sorted(owners))})"
            )
        first = os.pread(fd, HEADER_SIZE, 0) if head else b""
        data = os.pread(fd, limit, offset) if limit else b""
    finally:
        os.close(fd)
    return first, data


@dataclass
class _Call:
    """One read handed to the worker, and what it gave."""

    fn: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    value: object = None
    error: BaseException | None = None


class OffLoop:
    """Runs reads on a worker thread and waits for each at most ``timeout`` seconds.

    A read that does not finish in time raises :class:`LogRefused`; its thread is left
    to finish on its own (a daemon thread, told to exit after it) and a fresh one takes
    the next read, so a file that stalls its reader costs one thread, never the loop.
    """

    def __init__(self, timeout: float = READ_TIMEOUT) -> None:
        self.timeout = timeout
        self.abandoned = 0  # reads given up (their threads may still be blocked)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Call | None] | None = None

    @staticmethod
    def _work(q: queue.SimpleQueue[_Call | None]) -> None:
        while (call := q.get()) is not None:
            try:
                call.value = call.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                call.error = exc
            call.done.set()

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` on the worker: its result, its exception, or LogRefused on timeout."""
        call = _Call(fn)
        with self._lock:  # one read at a time: a read never waits behind a stuck one
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                threading.Thread(
                    target=self._work, args=(self._queue,), name="placer-log-reader", daemon=True
                ).start()
            self._queue.put(call)
            if not call.done.wait(self.timeout):
                self._queue.put(None)  # the stuck thread exits once its read returns
                self._queue = None
                self.abandoned += 1
                raise LogRefused(f"{what}: refused: a read did not finish in {self.timeout:g} s")
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]


@dataclass
class TailBatch:
    allocs: list[AllocRecord] = field(default_factory=list)
    frees: list[FreeRecord] = field(default_factory=list)
    samples: list[SampleRecord] = field(default_factory=list)
    binds: list[BindRecord] = field(default_factory=list)
    end: EndRecord | None = None
    bytes_read: int = 0

    def empty(self) -> bool:
        return not (self.allocs or self.frees or self.samples or self.binds or self.end)


def log_path(pattern: str, pid: int) -> Path:
    """The main log of process ``pid`` for a ``PLACER_SHIM_LOG`` pattern."""
    return Path(pattern.replace("%p", str(pid)))


class ShimTail:
    """Follows one shim log from ``offset`` (0: from the start, header included)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        *,
        owners: frozenset[int] | None = None,
        io: OffLoop | None = None,
    ) -> None:
        self.path = Path(path)
        self.offset = offset
        # uids the file may belong to: the process's (default: this process's euid)
        self.owners = owners if owners is not None else frozenset({os.geteuid()})
        self.io = io  # None: read in the calling thread
        self.header_start_time: int | None = None  # process start time from the header
        self.shim_start_ns = 0  # CLOCK_MONOTONIC ns the shim started (0: header not read)

    def _check_header(self, head: bytes) -> None:
        if head[:8] != MAGIC:
            raise TailError(f"{self.path}: not a placer shim log")
        version, hsize = struct.unpack_from("<II", head, 8)
        if version != VERSION or hsize != HEADER_SIZE:
            raise TailError(f"{self.path}: shim log version {version} (header {hsize})")
        self.header_start_time = struct.unpack_from("<Q", head, 56)[0]
        # CLOCK_MONOTONIC ns when the shim started: run time counts from it, as in a
        # stored run (the live features' time shares need the same origin)
        self.shim_start_ns = int(struct.unpack_from("<Q", head, 16)[0])

    def poll(self, limit: int = READ_CHUNK, until: int | None = None) -> TailBatch:
        """New complete records since the last poll (nothing if the file is not there yet).

        ``until``: stop at this file offset (replaying what a previous daemon ingested).
        """
        batch = TailBatch()
        need_head = self.header_start_time is None
        start = max(self.offset, HEADER_SIZE) if need_head else self.offset
        if until is not None:
            limit = max(0, min(limit, until - start))
        path, owners = self.path, self.owners

        def read() -> tuple[bytes, bytes] | None:
            return read_log_bytes(path, owners, start, limit, need_head)

        got = read() if self.io is None else self.io.call(read, str(path))
        if got is None:
            return batch
        head, data = got
        if need_head:
            if len(head) < HEADER_SIZE:
                return batch
            self._check_header(head)
            self.offset = start
        pos = 0
        n = len(data)
        while pos + 8 <= n:
            rtype, length = struct.unpack_from("<II", data, pos)
            if length < 8 or length & 7 or length > MAX_RECORD:
                raise TailError(
                    f"{self.path}: record at byte {self.offset + pos} has an impossible "
                    f"length ({length})"
                )
            if pos + length > n:
                break
            self._decode(rtype, length, data, pos, batch)
            pos += length
        self.offset += pos
        batch.bytes_read = pos
        return batch

    @staticmethod
    def _decode(rtype: int, length: int, data: bytes, pos: int, batch: TailBatch) -> None:
        if rtype == REC_ALLOC and length >= 56:
            seq, t, addr, size, site, tk = struct.unpack_from("<QQQQQQ", data, pos + 8)
            kind = (tk >> 32) & 0xFF
            batch.allocs.append(
                AllocRecord(
                    seq,
                    t,
                    addr,
                    size,
                    site,
                    tk & 0xFFFFFFFF,
                    ALLOC_KINDS[kind] if kind < len(ALLOC_KINDS) else "unknown",
                )
            )
        elif rtype == REC_FREE and length >= 40:
            seq, t, addr, k = struct.unpack_from("<QQQQ", data, pos + 8)
            k &= 0xFF
            batch.frees.append(
                FreeRecord(seq, t, addr, FREE_KINDS[k] if k < len(FREE_KINDS) else "unknown")
            )
        elif rtype == REC_SAMPLE and length >= 48:
            seq, s0, s1, c4, c5 = struct.unpack_from("<QQQQQ", data, pos + 8)
            batch.samples.append(
                SampleRecord(seq, s0, s1, c4 & 0xFFFFFFFF, c4 >> 32, c5 & 0xFFFFFFFF, c5 >> 32)
            )
        elif rtype == REC_BIND and length >= 24:
            seq, node, err = struct.unpack_from("<QIi", data, pos + 8)
            batch.binds.append(BindRecord(seq, node, err))
        elif rtype == REC_END and length >= 32:
            t, dropped, reason = struct.unpack_from("<QQI", data, pos + 8)
            batch.end = EndRecord(t, dropped, reason)
        # MODULE, SITE, STATS and unknown types: skipped by length
