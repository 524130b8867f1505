"""Read the shim's binary log (format: ``docs/shim-log.md``).

``read_log(path)`` parses one process's log into a :class:`ShimLog`; ``find_logs(pattern)``
lists every per-process log a run produced. Fixed-size records are decoded with numpy in
bulk, so a log of a million allocations reads in about a second.
"""

from __future__ import annotations

import gc
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import InvalidInputError

__all__ = [
    "ALLOC_KINDS",
    "END_EXEC",
    "FREE_KINDS",
    "SCAN_BLOCK",
    "STATS_NAMES",
    "AllocRecord",
    "BindRecord",
    "EndRecord",
    "FreeRecord",
    "LogBlock",
    "LogScan",
    "LogHeader",
    "SampleRecord",
    "ShimLog",
    "find_logs",
    "read_log",
]

MAGIC = b"PLSHIM01"
VERSION = 1
HEADER_SIZE = 64
BIND_CHUNK_LEN = 48  # a BIND record of one plan chunk (the whole-allocation one is 24)
MAX_RECORD = 1 << 20  # no record the shim writes comes near this

(REC_MODULE, REC_SITE, REC_ALLOC, REC_FREE, REC_SAMPLE, REC_END, REC_BIND, REC_STATS, REC_CLOCK) = (
    range(1, 10)
)
_MIN_LEN = {
    REC_MODULE: 24,
    REC_SITE: 24,
    REC_ALLOC: 56,
    REC_FREE: 40,
    REC_SAMPLE: 48,
    REC_END: 32,
    REC_BIND: 24,
    REC_STATS: 16,
    REC_CLOCK: 24,
}

ALLOC_KINDS = (
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "mmap",
    "valloc",
)
FREE_KINDS = ("free", "realloc", "munmap")
#: END reason when the process image was replaced by exec (the next image logs elsewhere).
END_EXEC = 256
#: Counters of the STATS record, in order.
STATS_NAMES = (
    "dropped_records",
    "untracked_objects",
    "log_write_errors",
    "log_reopens",
    "sample_intervals",
    "sample_faults",
    "io_unpoisons",
    "busy_skips",
    "foreign_segv",
    "mprotect_failures",
    "binds_ok",
    "binds_failed",
    "stale_objects",
    "module_rebuilds",
    "unsampleable_objects",
    "sampler_cpu_ns",
    "fault_ns",
    "budget_skips",
    "plan_bad_lines",
    "handler_skips",
)


@dataclass(frozen=True, slots=True)
class LogHeader:
    version: int
    start_ns: int
    pid: int
    ppid: int
    page_size: int
    stack_depth: int
    flags: int
    threshold: int
    sample_period_ms: int


@dataclass(frozen=True, slots=True)
class AllocRecord:
    seq: int
    time_ns: int
    address: int
    size: int
    site_hash: int
    tid: int
    kind: str  # one of ALLOC_KINDS


@dataclass(frozen=True, slots=True)
class FreeRecord:
    seq: int  # the ALLOC's seq (in a forked child: maybe an ALLOC of the parent's log)
    time_ns: int
    address: int
    kind: str  # "free" | "realloc" | "munmap"


@dataclass(frozen=True, slots=True)
class SampleRecord:
    seq: int
    start_ns: int
    end_ns: int
    interval: int
    sampled_pages: int
    touched_pages: int
    written_pages: int


@dataclass(frozen=True, slots=True)
class BindRecord:
    seq: int
    node: int
    errno: int
    #: the plan chunk this BIND applied (None: the whole allocation, the 24-byte record)
    chunk: int | None = None
    #: the whole pages bound for a chunk: start address and length in bytes (0, 0: none)
    start: int = 0
    length: int = 0


@dataclass(frozen=True, slots=True)
class EndRecord:
    time_ns: int
    dropped_records: int
    reason: int  # 0 exit, a signal number, or END_EXEC


@dataclass
class ShimLog:
    header: LogHeader
    modules: dict[int, tuple[str, bytes]]  # module id -> (real path, GNU build id)
    sites: dict[int, list[tuple[str, int]]]  # site hash -> [(module path, offset), ...]
    allocs: list[AllocRecord]
    frees: list[FreeRecord]
    samples: list[SampleRecord]
    binds: list[BindRecord]
    end: EndRecord | None
    truncated: bool  # the log does not end with a complete END record
    stats: dict[str, int] = field(default_factory=dict)  # the STATS record's counters
    #: (CLOCK_MONOTONIC ns, process CPU ns) points, sorted by time: the CPU-time timeline
    clocks: list[tuple[int, int]] = field(default_factory=list)
    #: set by ``placer.collectors.profile.reduce``: ALLOC records seen (``allocs`` then
    #: holds the kept objects and one aggregate per site and window), the aggregates'
    #: summaries by seq, and run-wide totals of the summarized objects (None: none)
    allocations: int | None = None
    aggregates: dict[int, dict[str, Any]] = field(default_factory=dict)
    folded: dict[str, Any] | None = None


def _kind_names(codes: np.ndarray, names: tuple[str, ...]) -> list[str]:
    table = np.array([*names, "unknown"], dtype=object)
    kinds: list[str] = table[np.minimum(codes, len(names))].tolist()
    return kinds


#: Per record type, the 8-byte words (after the type/length word) that must fit int64:
#: ALLOC seq, time, address, size; FREE seq, time, address; SAMPLE seq, start, end;
#: BIND seq; END time and dropped records.
_SIGNED_FIELDS = {
    REC_ALLOC: (1, 2, 3, 4),
    REC_FREE: (1, 2, 3),
    REC_SAMPLE: (1, 2, 3),
    REC_BIND: (1,),
    REC_END: (1, 2),
}


def _check_lengths(
    p: Path, types: np.ndarray, rlens: np.ndarray, offs: np.ndarray, base: int
) -> None:
    """A record shorter than its type's fixed part cannot be read: one line, no run."""
    for rtype, minimum in _MIN_LEN.items():
        bad = np.nonzero((types == rtype) & (rlens < minimum))[0]
        if len(bad):
            raise InvalidInputError(
                f"{p}: record at byte {base + int(offs[bad[0]])} has an impossible length "
                f"({int(rlens[bad[0]])}) for its type {rtype}"
            )


def _check_signed(p: Path, types: np.ndarray, u64: np.ndarray, w: np.ndarray, base: int) -> None:
    """Times, addresses, sizes and sequence numbers are 64-bit signed in the store: a log the
    program overwrote can hold anything, and must fail here, before a run is stored."""
    for rtype, fields in _SIGNED_FIELDS.items():
        sel = w[types == rtype]
        for k in fields:
            big = np.nonzero(u64[sel + k] >> 63)[0]
            if len(big):
                at = base + int(sel[big[0]]) * 8
                raise InvalidInputError(f"{p}: record at byte {at} holds an impossible value")


def read_log(path: str | os.PathLike[str]) -> ShimLog:
    """Parse one shim log.

    Raises :class:`InvalidInputError` when the file is not a shim log (bad magic, too
    short), has another format version, or holds a record with an impossible length. A
    tail cut short (a killed program) is not an error: the complete records are returned
    with ``truncated=True``.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{p}: cannot read shim log: {exc.strerror or exc}") from None
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise InvalidInputError(f"{p}: not a placer shim log")
    version, hsize = struct.unpack_from("<II", data, 8)
    if version != VERSION:
        raise InvalidInputError(
            f"{p}: shim log format version {version}; this placer reads version {VERSION}"
        )
    if hsize < HEADER_SIZE or hsize % 8 or hsize > len(data):
        raise InvalidInputError(f"{p}: not a placer shim log (header size {hsize})")
    (start_ns, pid, page_size, depth, flags, threshold, period, ppid) = struct.unpack_from(
        "<QIIIIQII", data, 16
    )
    header = LogHeader(
        version=version,
        start_ns=start_ns,
        pid=pid,
        ppid=ppid,
        page_size=page_size,
        stack_depth=depth,
        flags=flags,
        threshold=threshold,
        sample_period_ms=period,
    )

    # Walk the record chain (lengths only), then decode each type in bulk.
    n = len(data)
    u32 = np.frombuffer(data, dtype="<u4", count=n // 4)
    lens = u32[hsize // 4 + 1 :: 2].tolist()  # length field of every 8-byte unit
    starts: list[int] = []
    append = starts.append
    pos, body = 0, n - hsize
    partial = False
    while pos < body:
        if pos + 8 > body:
            partial = True
            break
        length = lens[pos >> 3]
        if length < 8 or length & 7 or length > MAX_RECORD:
            raise InvalidInputError(
                f"{p}: record at byte {hsize + pos} has an impossible length ({length})"
            )
        if pos + length > body:
            partial = True
            break
        append(pos)
        pos += length
    offs = np.asarray(starts, dtype=np.int64) + hsize
    types = u32[offs // 4] if len(offs) else np.zeros(0, dtype=np.uint32)
    rlens = u32[offs // 4 + 1] if len(offs) else np.zeros(0, dtype=np.uint32)
    _check_lengths(p, types, rlens, offs, 0)
    u64 = np.frombuffer(data, dtype="<u8", count=n // 8)
    w = offs // 8  # records start on 8-byte boundaries
    gc_was_on = gc.isenabled()
    gc.disable()  # a million new objects would trigger full collections again and again
    try:
        return _decode(p, data, header, offs, types, rlens, u64, w, partial)
    finally:
        if gc_was_on:
            gc.enable()


def _decode(
    p: Path,
    data: bytes,
    header: LogHeader,
    offs: np.ndarray,
    types: np.ndarray,
    rlens: np.ndarray,
    u64: np.ndarray,
    w: np.ndarray,
    partial: bool,
) -> ShimLog:

    def col(sel: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(u64[sel + k])

    _check_signed(p, types, u64, w, 0)

    # ALLOC
    a = w[types == REC_ALLOC]
    tk = col(a, 6)
    allocs = list(
        map(
            AllocRecord,
            col(a, 1).tolist(),
            col(a, 2).tolist(),
            col(a, 3).tolist(),
            col(a, 4).tolist(),
            col(a, 5).tolist(),
            (tk & 0xFFFFFFFF).tolist(),
            _kind_names((tk >> 32) & 0xFF, ALLOC_KINDS),
        )
    )
    # FREE
    f = w[types == REC_FREE]
    frees = list(
        map(
            FreeRecord,
            col(f, 1).tolist(),
            col(f, 2).tolist(),
            col(f, 3).tolist(),
            _kind_names(col(f, 4) & 0xFF, FREE_KINDS),
        )
    )
    # SAMPLE
    s = w[types == REC_SAMPLE]
    c4, c5 = col(s, 4), col(s, 5)
    samples = list(
        map(
            SampleRecord,
            col(s, 1).tolist(),
            col(s, 2).tolist(),
            col(s, 3).tolist(),
            (c4 & 0xFFFFFFFF).tolist(),
            (c4 >> 32).tolist(),
            (c5 & 0xFFFFFFFF).tolist(),
            (c5 >> 32).tolist(),
        )
    )
    # BIND
    is_bind = types == REC_BIND
    b = w[is_bind]
    c2 = col(b, 2)
    errs = (c2 >> 32).astype(np.uint32).view(np.int32)
    # a chunk BIND is 48 bytes: u32 chunk, u32 pad, u64 start, u64 length follow
    long = rlens[is_bind] >= BIND_CHUNK_LEN
    safe = np.where(long, b, 0)
    chunks = [
        int(c) if ok else None
        for c, ok in zip((col(safe, 3) & 0xFFFFFFFF).tolist(), long.tolist(), strict=True)
    ]
    zero = np.zeros(len(b), dtype=np.uint64)
    binds = list(
        map(
            BindRecord,
            col(b, 1).tolist(),
            (c2 & 0xFFFFFFFF).tolist(),
            errs.tolist(),
            chunks,
            np.where(long, col(safe, 4), zero).tolist(),
            np.where(long, col(safe, 5), zero).tolist(),
        )
    )
    # END: the last one counts (an exec that failed wrote one before going on)
    end: EndRecord | None = None
    e_idx = np.nonzero(types == REC_END)[0]
    if len(e_idx):
        ew = int(w[e_idx[-1]])
        end = EndRecord(int(u64[ew + 1]), int(u64[ew + 2]), int(u64[ew + 3] & 0xFFFFFFFF))
    ends_with_end = bool(len(types)) and int(types[-1]) == REC_END
    # STATS: the last one
    stats: dict[str, int] = {}
    st_idx = np.nonzero(types == REC_STATS)[0]
    if len(st_idx):
        o = int(offs[st_idx[-1]])
        count = struct.unpack_from("<I", data, o + 8)[0]
        count = min(count, (int(rlens[st_idx[-1]]) - 16) // 8)
        values = struct.unpack_from(f"<{count}Q", data, o + 16)
        for i, v in enumerate(values):
            stats[STATS_NAMES[i] if i < len(STATS_NAMES) else f"stat{i}"] = v

    # CLOCK: the process's CPU time at points in time, in time order
    c = w[types == REC_CLOCK]
    clocks = sorted(zip(col(c, 1).tolist(), col(c, 2).tolist(), strict=True))
    # MODULE and SITE: few, variable length
    modules: dict[int, tuple[str, bytes]] = {}
    for i in np.nonzero(types == REC_MODULE)[0].tolist():
        o, length = int(offs[i]), int(rlens[i])
        mid, plen, blen = struct.unpack_from("<IIB", data, o + 8)
        if 20 + plen + blen > length:
            raise InvalidInputError(f"{p}: MODULE record at byte {o} overruns its length")
        mpath = data[o + 20 : o + 20 + plen].decode("utf-8", "surrogateescape")
        modules[mid] = (mpath, bytes(data[o + 20 + plen : o + 20 + plen + blen]))
    sites: dict[int, list[tuple[str, int]]] = {}
    for i in np.nonzero(types == REC_SITE)[0].tolist():
        o, length = int(offs[i]), int(rlens[i])
        h, d = struct.unpack_from("<QI", data, o + 8)
        if 24 + 16 * d > length:
            raise InvalidInputError(f"{p}: SITE record at byte {o} overruns its length")
        frames = []
        for k in range(d):
            mid, _pad, off = struct.unpack_from("<IIQ", data, o + 24 + 16 * k)
            mpath = modules[mid][0] if mid in modules else f"[module {mid}]"
            frames.append((mpath, off))
        sites[h] = frames

    return ShimLog(
        header=header,
        modules=modules,
        sites=sites,
        allocs=allocs,
        frees=frees,
        samples=samples,
        binds=binds,
        end=end,
        truncated=partial or not ends_with_end,
        stats=stats,
        clocks=clocks,
    )


def cpu_ns_at(clocks: list[tuple[int, int]], times_ns: list[int]) -> list[int] | None:
    """The process's CPU time (ns) at each CLOCK_MONOTONIC time, interpolated on the CLOCK
    timeline (held flat beyond its ends). None without two clock points (an older shim,
    or a log cut before its END)."""
    if len(clocks) < 2:
        return None
    t = np.asarray([c[0] for c in clocks], dtype=np.float64)
    cpu = np.asarray([c[1] for c in clocks], dtype=np.float64)
    cpu = np.maximum.accumulate(cpu)  # CPU time never runs backwards
    at: list[int] = (
        np.interp(np.asarray(times_ns, dtype=np.float64), t, cpu).astype(np.int64).tolist()
    )
    return at


def find_logs(pattern_path: str | os.PathLike[str]) -> list[Path]:
    """Every per-process log a run with ``PLACER_SHIM_LOG=pattern_path`` produced.

    ``%p`` in the pattern stands for a PID, optionally followed by ``.N`` (the N-th exec'd
    image of the same process). Without ``%p`` the pattern itself is the first process's
    log, and forked children wrote ``NAME.PID[.N]EXT``. Sorted by start time (header),
    unreadable files last.
    """
    pattern = os.fspath(pattern_path)
    directory, name = os.path.split(pattern)
    folder = Path(directory or ".")
    pid = r"\d+(?:\.\d+)?"
    if "%p" in name:
        rx = re.compile("^" + pid.join(re.escape(part) for part in name.split("%p")) + "$")
    else:
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        rx = re.compile(
            "^(?:"
            + re.escape(name)
            + "|"
            + re.escape(stem)
            + r"\."
            + pid
            + (re.escape("." + ext) if ext else "")
            + ")$"
        )
    if "%p" in directory:
        raise InvalidInputError(f"{pattern}: %p is only expanded in the file name")
    try:
        names = [e for e in os.listdir(folder) if rx.match(e)]
    except OSError:
        return []

    def key(path: Path) -> tuple[int, int, str]:
        try:
            with open(path, "rb") as fh:
                head = fh.read(HEADER_SIZE)
            if head[:8] == MAGIC and len(head) == HEADER_SIZE:
                return (0, struct.unpack_from("<Q", head, 16)[0], path.name)
        except OSError:
            pass
        return (1, 0, path.name)

    return sorted((folder / nm for nm in names), key=key)


# ----------------------------------------------------------------- streaming
#: Bytes :class:`LogScan` reads at a time: its memory does not grow with the log.
SCAN_BLOCK = 2 << 20


@dataclass(slots=True)
class LogBlock:
    """The ALLOC, FREE and SAMPLE records of one block of a log, as numpy columns (file
    order within each type; int64, site hashes uint64, ``alloc_kind`` an index into
    :data:`ALLOC_KINDS`); ``order`` gives their types in file order, to replay them."""

    order: np.ndarray
    alloc_seq: np.ndarray
    alloc_time: np.ndarray
    alloc_addr: np.ndarray
    alloc_size: np.ndarray
    alloc_site: np.ndarray
    alloc_tid: np.ndarray
    alloc_kind: np.ndarray
    free_seq: np.ndarray
    free_time: np.ndarray
    sample_seq: np.ndarray
    sample_start: np.ndarray
    sample_end: np.ndarray
    sample_interval: np.ndarray
    sample_sampled: np.ndarray
    sample_touched: np.ndarray
    sample_written: np.ndarray


class LogScan:
    """One pass over a shim log in blocks of :data:`SCAN_BLOCK` bytes.

    :func:`read_log` holds the whole file and a Python object per record (about 1 KB per
    allocation); a scan holds one block. Iterate :meth:`blocks` once; afterwards
    ``modules``, ``sites``, ``binds``, ``end``, ``stats``, ``clocks`` and ``truncated`` hold
    the few records that are not per allocation, as in :class:`ShimLog`. The checks are
    :func:`read_log`'s: :class:`InvalidInputError` for a file that is not a shim log, a
    record of impossible length or an out-of-range value.
    """

    def __init__(self, path: str | os.PathLike[str], block_bytes: int = SCAN_BLOCK) -> None:
        self.path = Path(path)
        self.block_bytes = max(block_bytes, MAX_RECORD + 8)
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(HEADER_SIZE)
                self.size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            raise InvalidInputError(
                f"{self.path}: cannot read shim log: {exc.strerror or exc}"
            ) from None
        p = self.path
        if len(head) < HEADER_SIZE or head[:8] != MAGIC:
            raise InvalidInputError(f"{p}: not a placer shim log")
        version, hsize = struct.unpack_from("<II", head, 8)
        if version != VERSION:
            raise InvalidInputError(
                f"{p}: shim log format version {version}; this placer reads version {VERSION}"
            )
        if hsize < HEADER_SIZE or hsize % 8 or hsize > self.size:
            raise InvalidInputError(f"{p}: not a placer shim log (header size {hsize})")
        (start_ns, pid, page_size, depth, flags, threshold, period, ppid) = struct.unpack_from(
            "<QIIIIQII", head, 16
        )
        self.hsize = hsize
        self.header = LogHeader(
            version=version,
            start_ns=start_ns,
            pid=pid,
            ppid=ppid,
            page_size=page_size,
            stack_depth=depth,
            flags=flags,
            threshold=threshold,
            sample_period_ms=period,
        )
        self.modules: dict[int, tuple[str, bytes]] = {}
        self._site_frames: dict[int, list[tuple[int, int]]] = {}
        self.binds: list[BindRecord] = []
        self.end: EndRecord | None = None
        self.stats: dict[str, int] = {}
        self.clocks: list[tuple[int, int]] = []
        self.truncated = False
        self.records = 0

    @property
    def sites(self) -> dict[int, list[tuple[str, int]]]:
        """site hash → [(module path, offset), ...] (as :attr:`ShimLog.sites`)."""
        out: dict[int, list[tuple[str, int]]] = {}
        for h, frames in self._site_frames.items():
            out[h] = [
                (self.modules[m][0] if m in self.modules else f"[module {m}]", off)
                for m, off in frames
            ]
        return out

    def blocks(self) -> Iterator[LogBlock]:
        """The log's per-allocation records, one block at a time."""
        p, hsize = self.path, self.hsize
        last_type = 0
        with open(p, "rb") as fh:
            fh.seek(hsize)
            base = hsize  # file offset of buf[0]
            buf = b""
            while True:
                more = fh.read(self.block_bytes)
                data = buf + more
                if not data:
                    break
                n = len(data)
                u32 = np.frombuffer(data, dtype="<u4", count=n // 4)
                lens = u32[1::2].tolist()
                starts: list[int] = []
                append = starts.append
                pos = 0
                while pos + 8 <= n:
                    length = lens[pos >> 3]
                    if length < 8 or length & 7 or length > MAX_RECORD:
                        raise InvalidInputError(
                            f"{p}: record at byte {base + pos} has an impossible length ({length})"
                        )
                    if pos + length > n:
                        break
                    append(pos)
                    pos += length
                if starts:
                    block, last_type = self._decode_block(data, starts, base)
                    self.records += len(starts)
                    yield block
                buf = data[pos:]
                base += pos
                if not more:
                    break
        self.truncated = bool(buf) or last_type != REC_END

    def _decode_block(self, data: bytes, starts: list[int], base: int) -> tuple[LogBlock, int]:
        p = self.path
        n = len(data)
        offs = np.asarray(starts, dtype=np.int64)
        u32 = np.frombuffer(data, dtype="<u4", count=n // 4)
        types = u32[offs // 4]
        rlens = u32[offs // 4 + 1]
        _check_lengths(p, types, rlens, offs, base)
        u64 = np.frombuffer(data, dtype="<u8", count=n // 8)
        w = offs // 8

        def col(sel: np.ndarray, k: int) -> np.ndarray:
            return np.asarray(u64[sel + k])

        _check_signed(p, types, u64, w, base)
        a = w[types == REC_ALLOC]
        tk = col(a, 6)
        f = w[types == REC_FREE]
        s = w[types == REC_SAMPLE]
        c4, c5 = col(s, 4), col(s, 5)
        per_object = np.isin(types, (REC_ALLOC, REC_FREE, REC_SAMPLE))
        block = LogBlock(
            order=types[per_object].astype(np.int64),
            alloc_seq=col(a, 1).astype(np.int64),
            alloc_time=col(a, 2).astype(np.int64),
            alloc_addr=col(a, 3).astype(np.int64),
            alloc_size=col(a, 4).astype(np.int64),
            alloc_site=col(a, 5),
            alloc_tid=(tk & 0xFFFFFFFF).astype(np.int64),
            alloc_kind=np.minimum((tk >> 32) & 0xFF, len(ALLOC_KINDS)).astype(np.int64),
            free_seq=col(f, 1).astype(np.int64),
            free_time=col(f, 2).astype(np.int64),
            sample_seq=col(s, 1).astype(np.int64),
            sample_start=col(s, 2).astype(np.int64),
            sample_end=col(s, 3).astype(np.int64),
            sample_interval=(c4 & 0xFFFFFFFF).astype(np.int64),
            sample_sampled=(c4 >> 32).astype(np.int64),
            sample_touched=(c5 & 0xFFFFFFFF).astype(np.int64),
            sample_written=(c5 >> 32).astype(np.int64),
        )
        # the few records that are not per allocation
        rare = np.nonzero(~per_object)[0].tolist()
        for i in rare:
            o, length, rtype = int(offs[i]), int(rlens[i]), int(types[i])
            at = base + o
            if rtype == REC_MODULE:
                mid, plen, blen = struct.unpack_from("<IIB", data, o + 8)
                if 20 + plen + blen > length:
                    raise InvalidInputError(f"{p}: MODULE record at byte {at} overruns its length")
                mpath = data[o + 20 : o + 20 + plen].decode("utf-8", "surrogateescape")
                self.modules[mid] = (mpath, bytes(data[o + 20 + plen : o + 20 + plen + blen]))
            elif rtype == REC_SITE:
                h, d = struct.unpack_from("<QI", data, o + 8)
                if 24 + 16 * d > length:
                    raise InvalidInputError(f"{p}: SITE record at byte {at} overruns its length")
                self._site_frames[h] = [
                    (mid, off)
                    for mid, _pad, off in struct.iter_unpack("<IIQ", data[o + 24 : o + 24 + 16 * d])
                ]
            elif rtype == REC_END:
                t, dropped, reason = struct.unpack_from("<QQI", data, o + 8)
                self.end = EndRecord(t, dropped, reason)
            elif rtype == REC_STATS:
                count = struct.unpack_from("<I", data, o + 8)[0]
                count = min(count, (length - 16) // 8)
                values = struct.unpack_from(f"<{count}Q", data, o + 16)
                self.stats = {
                    STATS_NAMES[k] if k < len(STATS_NAMES) else f"stat{k}": v
                    for k, v in enumerate(values)
                }
            elif rtype == REC_CLOCK:
                self.clocks.append(struct.unpack_from("<QQ", data, o + 8))
            elif rtype == REC_BIND:
                seq, node, err = struct.unpack_from("<QIi", data, o + 8)
                if length >= BIND_CHUNK_LEN:
                    chunk, _pad, start, blen = struct.unpack_from("<IIQQ", data, o + 24)
                    self.binds.append(BindRecord(seq, node, err, chunk, start, blen))
                else:
                    self.binds.append(BindRecord(seq, node, err))
        return block, int(types[-1])
