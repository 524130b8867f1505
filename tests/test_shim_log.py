"""The shim log reader, on logs written here byte by byte from docs/shim-log.md."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from placer.collectors.shim.log import (
    END_EXEC,
    STATS_NAMES,
    AllocRecord,
    BindRecord,
    EndRecord,
    FreeRecord,
    SampleRecord,
    find_logs,
    read_log,
)
from placer.errors import InvalidInputError


def header(pid: int = 100, ppid: int = 1, version: int = 1, size: int = 64) -> bytes:
    return struct.pack(
        "<8sIIQIIIIQIIQ", b"PLSHIM01", version, size, 5_000, pid, 4096, 6, 1, 65536, 10, ppid, 0
    )


def rec(rtype: int, payload: bytes) -> bytes:
    pad = (-len(payload)) % 8
    return struct.pack("<II", rtype, 8 + len(payload) + pad) + payload + b"\0" * pad


def module(mid: int, path: str, build_id: bytes) -> bytes:
    p = path.encode()
    return rec(1, struct.pack("<IIB3x", mid, len(p), len(build_id)) + p + build_id)


def site(h: int, frames: list[tuple[int, int]]) -> bytes:
    body = struct.pack("<QI4x", h, len(frames))
    for mid, off in frames:
        body += struct.pack("<I4xQ", mid, off)
    return rec(2, body)


def alloc(seq: int, t: int, addr: int, size: int, h: int, tid: int = 7, kind: int = 0) -> bytes:
    return rec(3, struct.pack("<QQQQQIB3x", seq, t, addr, size, h, tid, kind))


def free(seq: int, t: int, addr: int, kind: int = 0) -> bytes:
    return rec(4, struct.pack("<QQQB7x", seq, t, addr, kind))


def sample(seq: int, s: int, e: int, i: int, sampled: int, touched: int, written: int) -> bytes:
    return rec(5, struct.pack("<QQQIIII", seq, s, e, i, sampled, touched, written))


def end(t: int, dropped: int = 0, reason: int = 0) -> bytes:
    return rec(6, struct.pack("<QQI4x", t, dropped, reason))


def write_tiny_log(path: Path, n: int, t0: int = 5_000, block: int = 1 << 20) -> Path:
    """A log of ``n`` ALLOC+FREE pairs of 64-byte objects at one site (``2n`` records, 96 B
    a pair), written ``block`` pairs at a time: logs of tens of millions of records for the
    reader's memory bound (tests, benchmarks/scale.py --huge-log)."""
    with open(path, "wb") as fh:
        fh.write(header() + site(7, [(1, 7)]))
        for first in range(0, n, block):
            seq = np.arange(first, min(n, first + block), dtype=np.uint64)
            rec = np.zeros((len(seq), 24), dtype="<u4")  # ALLOC (56 B) + FREE (40 B)
            a = rec[:, :14].view("<u8")  # 7 words
            rec[:, 0], rec[:, 1] = 3, 56
            addr = 0x1000 + (seq % 64) * 64
            a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5] = seq, t0 + seq * 10, addr, 64, 7
            f = rec[:, 14:].view("<u8")  # 5 words
            rec[:, 14], rec[:, 15] = 4, 40
            f[:, 1], f[:, 2], f[:, 3] = seq, t0 + seq * 10 + 5, addr
            fh.write(rec.tobytes())
        fh.write(end(t0 + n * 10 + 100))
    return path


def bind(seq: int, node: int, err: int) -> bytes:
    return rec(7, struct.pack("<QIi", seq, node, err))


def stats(values: list[int]) -> bytes:
    return rec(8, struct.pack("<I4x", len(values)) + struct.pack(f"<{len(values)}Q", *values))


SITE = 0xDEADBEEFCAFEF00D
FULL = (
    header()
    + module(0, "/opt/app/bin/app", bytes.fromhex("ab" * 20))
    + module(3, "/usr/lib/libc.so.6", b"")
    + site(SITE, [(0, 0x1234), (3, 0x29D90)])
    + alloc(1, 6_000, 0x7F0000001000, 1 << 20, SITE, kind=0)
    + alloc(2, 6_500, 0x7F0000200000, 4 << 20, SITE, tid=8, kind=6)
    + rec(99, b"future record type, skipped by length")
    + sample(1, 7_000, 8_000, 3, 4, 3, 1)
    + bind(2, 0, 0)
    + bind(1, 1, 22)
    + free(1, 9_000, 0x7F0000001000, 1)
    + free(2, 9_500, 0x7F0000200000, 2)
    + stats([0, 1, 2, 3])
    + end(10_000, 0, 0)
)


def write(tmp_path: Path, data: bytes, name: str = "shim.100.log") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reads_every_record_type(tmp_path: Path) -> None:
    log = read_log(write(tmp_path, FULL))
    h = log.header
    assert (h.version, h.start_ns, h.pid, h.ppid, h.page_size, h.stack_depth) == (
        1,
        5_000,
        100,
        1,
        4096,
        6,
    )
    assert (h.flags, h.threshold, h.sample_period_ms) == (1, 65536, 10)
    assert log.modules == {
        0: ("/opt/app/bin/app", bytes.fromhex("ab" * 20)),
        3: ("/usr/lib/libc.so.6", b""),
    }
    assert log.sites == {SITE: [("/opt/app/bin/app", 0x1234), ("/usr/lib/libc.so.6", 0x29D90)]}
    assert log.allocs == [
        AllocRecord(1, 6_000, 0x7F0000001000, 1 << 20, SITE, 7, "malloc"),
        AllocRecord(2, 6_500, 0x7F0000200000, 4 << 20, SITE, 8, "mmap"),
    ]
    assert log.frees == [
        FreeRecord(1, 9_000, 0x7F0000001000, "realloc"),
        FreeRecord(2, 9_500, 0x7F0000200000, "munmap"),
    ]
    assert log.samples == [SampleRecord(1, 7_000, 8_000, 3, 4, 3, 1)]
    assert [(b.seq, b.node, b.errno) for b in log.binds] == [(2, 0, 0), (1, 1, 22)]
    assert log.end == EndRecord(10_000, 0, 0)
    assert not log.truncated
    assert log.stats == dict(zip(STATS_NAMES, [0, 1, 2, 3], strict=False))


def test_truncated_tail_is_not_an_error(tmp_path: Path) -> None:
    body_end = len(FULL) - 32  # before END
    for cut in (len(FULL) - 5, body_end, body_end - 3, 64 + 4):
        log = read_log(write(tmp_path, FULL[:cut]))
        assert log.truncated, cut
        assert log.end is None
    log = read_log(write(tmp_path, FULL[: FULL.index(free(1, 9_000, 0x7F0000001000, 1)) + 20]))
    assert log.truncated and len(log.allocs) == 2 and log.frees == []


def test_only_a_header(tmp_path: Path) -> None:
    log = read_log(write(tmp_path, header()))
    assert log.allocs == [] and log.end is None and log.truncated


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a placer shim log"),
        (b"PLSHIM01", "not a placer shim log"),
        (b"GARBAGE!" + header()[8:], "not a placer shim log"),
        (b"\x7fELF" + bytes(100), "not a placer shim log"),
        (header(version=2), "format version 2"),
        (header(size=12), "not a placer shim log"),
        (header(size=4096), "not a placer shim log"),
    ],
)
def test_corrupt_header(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(InvalidInputError, match=message) as err:
        read_log(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [
        struct.pack("<II", 3, 3),  # shorter than a record header
        struct.pack("<II", 3, 60),  # not a multiple of 8
        struct.pack("<II", 3, 16) + bytes(8),  # an ALLOC cannot be 16 bytes
        struct.pack("<II", 1, 1 << 30),  # absurd
    ],
)
def test_impossible_record_length(tmp_path: Path, bad: bytes) -> None:
    data = header() + alloc(1, 1, 2, 3 << 20, 4) + bad + end(9)
    with pytest.raises(InvalidInputError, match="impossible length"):
        read_log(write(tmp_path, data))


def test_module_record_overrunning_its_length(tmp_path: Path) -> None:
    bad = struct.pack("<IIIIB3x4x", 1, 24, 0, 200, 0)
    with pytest.raises(InvalidInputError, match="overruns"):
        read_log(write(tmp_path, header() + bad))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_log(tmp_path / "nope.log")


def test_last_end_counts_after_a_failed_exec(tmp_path: Path) -> None:
    data = header() + alloc(1, 1, 2, 3 << 20, 4) + end(5, reason=END_EXEC)
    log = read_log(write(tmp_path, data))
    assert log.end is not None and log.end.reason == END_EXEC and not log.truncated
    data += free(1, 6, 2) + end(7, reason=15)
    log = read_log(write(tmp_path, data))
    assert log.end == EndRecord(7, 0, 15) and not log.truncated
    log = read_log(write(tmp_path, data[:-32]))
    assert log.truncated  # records after the exec's END, then nothing


def test_a_million_allocs_read_fast(tmp_path: Path) -> None:
    n = 1_000_000
    rows = np.zeros((n, 7), dtype="<u8")
    rows[:, 0] = 3 | (56 << 32)
    rows[:, 1] = np.arange(1, n + 1)
    rows[:, 2] = np.arange(n) * 10 + 6_000
    rows[:, 3] = 0x7F0000000000 + np.arange(n, dtype=np.uint64) * 65536
    rows[:, 4] = 65536
    rows[:, 5] = SITE
    rows[:, 6] = 1234 | (1 << 32)
    data = header() + site(SITE, [(0, 1)]) + rows.tobytes() + end(1 << 40)
    path = write(tmp_path, data)
    t0 = time.perf_counter()
    log = read_log(path)
    took = time.perf_counter() - t0
    assert len(log.allocs) == n and not log.truncated
    assert log.allocs[-1] == AllocRecord(
        n, (n - 1) * 10 + 6_000, 0x7F0000000000 + (n - 1) * 65536, 65536, SITE, 1234, "calloc"
    )
    # about a second on an idle 2-core host; the bound leaves room for a loaded one
    assert took < 20.0, f"reading 1e6 ALLOC records took {took:.2f} s"


def test_find_logs(tmp_path: Path) -> None:
    for name, start in [
        ("shim.300.log", 9),
        ("shim.200.log", 3),
        ("shim.200.1.log", 4),
        ("shim.x.log", 1),
        ("other.1.log", 1),
        ("shim.400.log", None),
    ]:
        data = (
            header(pid=1)
            if start is None
            else header()[:16] + struct.pack("<Q", start) + header()[24:]
        )
        (tmp_path / name).write_bytes(data if start is not None else b"junk")
    got = [p.name for p in find_logs(tmp_path / "shim.%p.log")]
    assert got == ["shim.200.log", "shim.200.1.log", "shim.300.log", "shim.400.log"]
    # without %p: the file itself, and children NAME.PID[.N].EXT
    (tmp_path / "run.log").write_bytes(header())
    (tmp_path / "run.55.log").write_bytes(header())
    (tmp_path / "run.55.2.log").write_bytes(header())
    (tmp_path / "run.x.log").write_bytes(header())
    assert sorted(p.name for p in find_logs(tmp_path / "run.log")) == [
        "run.55.2.log",
        "run.55.log",
        "run.log",
    ]
    assert find_logs(tmp_path / "missing" / "x.%p.log") == []


def test_chunk_bind_records_next_to_whole_ones(tmp_path: Path) -> None:
    """A 48-byte BIND carries the plan chunk and the range bound; 24-byte ones (older logs,
    whole allocations) read as chunk None. Both kinds in one log."""
    chunk = rec(7, struct.pack("<QIiIIQQ", 2, 1, 0, 3, 0, 0x7F0000500000, 1 << 20))
    failed = rec(7, struct.pack("<QIiIIQQ", 2, 0, 22, 4, 0, 0, 0))
    data = (
        header()
        + alloc(2, 6_500, 0x7F0000200000, 8 << 20, SITE, kind=6)
        + bind(2, 0, 0)
        + chunk
        + failed
        + end(10_000)
    )
    log = read_log(write(tmp_path, data))
    assert log.binds == [
        BindRecord(2, 0, 0),
        BindRecord(2, 1, 0, 3, 0x7F0000500000, 1 << 20),
        BindRecord(2, 0, 22, 4, 0, 0),
    ]
    assert read_log(write(tmp_path, header() + failed + end(1), "only.log")).binds == [
        BindRecord(2, 0, 22, 4, 0, 0)
    ]
