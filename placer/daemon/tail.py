"""Incremental reader of a live shim log (format: docs/shim-log.md).

:func:`placer.collectors.shim.log.read_log` parses a whole finished log; the daemon instead
follows a log while the program writes it. :class:`ShimTail` remembers the byte offset of
the last complete record, reads what was appended since, and returns the new ALLOC, FREE,
SAMPLE, BIND and END records. A record cut at the end of the file is left for the next
poll. The shim appends whole records when its buffer fills (``PLACER_SHIM_BUFFER``, 64 KiB
at least) and at exit, so a live log lags the program by at most one buffer.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

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


class TailError(Exception):
    """The file is not a shim log we can follow (bad magic, version or record)."""


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

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
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
        try:
            with open(self.path, "rb") as fh:
                if self.header_start_time is None:
                    head = fh.read(HEADER_SIZE)
                    if len(head) < HEADER_SIZE:
                        return batch
                    self._check_header(head)
                    self.offset = max(self.offset, HEADER_SIZE)
                if until is not None:
                    limit = max(0, min(limit, until - self.offset))
                fh.seek(self.offset)
                data = fh.read(limit) if limit else b""
        except FileNotFoundError:
            return batch
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
