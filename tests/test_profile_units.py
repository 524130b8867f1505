"""Unit tests of the profiling pipeline's parts: index, perf text, DHAT, sizes, ELF, signals."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from placer.collectors.profile import dhat, perf
from placer.collectors.profile.intervals import Hit, ObjectIndex, Span
from placer.collectors.profile.runner import classify
from placer.collectors.profile.session import parse_size, prepare
from placer.errors import InvalidInputError

DATA = Path(__file__).parent / "data" / "profile"


# ----------------------------------------------------------------- interval index
def test_index_respects_address_reuse_and_lifetimes() -> None:
    # two objects at the same address one after the other, one alive at exit
    spans = [Span(0x1000, 0x100, 10, 20), Span(0x1000, 0x200, 20, None), Span(0x5000, 0x10, 5, 8)]
    idx = ObjectIndex(spans)
    hits = idx.lookup(
        [15, 20, 25, 25, 6, 9, 1], [0x10FF, 0x1000, 0x11FF, 0x1200, 0x5000, 0x5000, 0x1000]
    )
    assert hits == [Hit(0, 0), Hit(1, 0), Hit(1, 0), None, Hit(2, 0), None, None]


def test_index_matches_brute_force_on_random_workload() -> None:
    rng = random.Random(7)
    spans, live, t = [], [], 0
    for _ in range(400):
        t += rng.randint(1, 5)
        if live and rng.random() < 0.45:
            i = live.pop(rng.randrange(len(live)))
            s = spans[i]
            spans[i] = Span(s.start, s.size, s.alloc_ns, t)
        else:  # allocate in a small address space so ranges are reused often
            size = rng.randint(1, 8) * 0x1000
            start = rng.randrange(0, 64) * 0x1000
            if all(
                not (start < spans[j].start + spans[j].size and spans[j].start < start + size)
                for j in live
            ):
                spans.append(Span(start, size, t, None))
                live.append(len(spans) - 1)
    idx = ObjectIndex(spans, chunk_size=0x2000)
    times = [rng.randint(0, t + 3) for _ in range(3000)]
    addrs = [rng.randrange(0, 72 * 0x1000) for _ in range(3000)]
    got = idx.lookup(times, addrs)
    for tq, aq, hit in zip(times, addrs, got, strict=True):
        want = [
            i
            for i, s in enumerate(spans)
            if s.start <= aq < s.start + s.size
            and s.alloc_ns <= tq
            and (s.free_ns is None or tq < s.free_ns)
        ]
        assert len(want) <= 1
        if not want:
            assert hit is None
        else:
            s = spans[want[0]]
            chunk = (aq - s.start) // 0x2000 if s.size > 0x2000 else 0
            assert hit == Hit(want[0], chunk)


def test_chunk_count() -> None:
    idx = ObjectIndex([], chunk_size=2 << 20)
    assert idx.chunk_count(1 << 20) == 1
    assert idx.chunk_count(5 << 20) == 3
    assert ObjectIndex([]).chunk_count(5 << 30) == 1


# ----------------------------------------------------------------- perf
def test_perf_mem_script_parsed_and_decoded() -> None:
    samples = list(perf.parse_script((DATA / "perf_mem_script.txt").read_text()))
    assert len(samples) == 8
    first = samples[0]
    assert (first.pid, first.tid, first.time_ns) == (4242, 4242, 1000_000_100_000)
    assert first.addr == 0x7F0000001040 and first.weight == 7 and first.is_mem
    levels = [s.source.level for s in samples[:5]]
    assert levels == ["L1", "DRAM", "PMEM", "remote-DRAM", "L1"]
    assert [s.source.tlb for s in samples[:5]] == ["hit", "miss", "hit", "hit", "unknown"]
    assert [s.source.op for s in samples[:5]] == ["load", "load", "load", "load", "store"]
    assert [s.source.llc_miss for s in samples[:5]] == [False, True, True, True, False]
    assert samples[1].tid == 4243 and samples[1].pid == 4242


def test_perf_fault_lines_parsed() -> None:
    text = (
        " 9865/9865    572.488171557:      page-faults/period=1/:     556aedca0424\n"
        " 9865/9866    572.489110817: task-clock/period=1000000/:                0\n"
        "garbage line\n"
    )
    s = list(perf.parse_script(text))
    assert len(s) == 2
    assert s[0].is_fault and not s[0].is_mem and s[0].addr == 0x556AEDCA0424
    assert s[0].time_ns == 572_488_171_557
    assert s[1].is_clock and s[1].tid == 9866


def test_fake_perf_not_permitted(tmp_path: Path) -> None:
    fake = tmp_path / "perf"
    fake.write_text(
        "#!/bin/sh\necho 'Error: Access to performance monitoring and "
        "observability operations is limited.' >&2\nexit 255\n"
    )
    fake.chmod(0o755)
    status = perf.probe(str(fake))
    assert not status.faults and not status.mem
    assert "not permitted" in status.reason and "limited" in status.reason
    assert perf.record_prefix(status, tmp_path) == []


# ----------------------------------------------------------------- DHAT
def test_dhat_recorded_file_parsed_and_joined() -> None:
    prof = dhat.read_dhat(DATA / "dhat_small.json")
    assert prof.time_unit == "instrs" and len(prof.points) == 2
    big = max(prof.points, key=lambda p: p.total_bytes)
    assert (big.total_bytes, big.bytes_read, big.bytes_written) == (800000, 400000, 800000)
    assert big.key()[:2] == (("d.c", 3), ("d.c", 4))
    sites = {
        1: ["/src/d.c:3", "/src/d.c:4", "libc.so.6+0x271ca"],  # malloc via mk()
        2: ["/src/d.c:4", "libc.so.6+0x271ca"],  # the calloc in main
        3: ["/src/other.c:9"],
    }
    groups = dhat.match_points(prof.points, sites)
    assert set(groups) == {1, 2}
    assert groups[1][0].total_bytes == 800000 and groups[2][0].total_bytes == 400000


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not JSON"),
        (
            '{"dhatFileVersion": 2, "mode": "heap", "pps": [{"tb": 1, "fs": [5]}], '
            '"ftbl": ["[root]"]}',
            "outside 'ftbl'",
        ),
        (
            '{"dhatFileVersion": 2, "mode": "heap", "pps": [{"tb": -3, "tbk": 1, "rb": 0, "wb": 0, '
            '"tl": 0, "fs": []}], "ftbl": []}',
            "'tb'",
        ),
        ('{"hello": 1}', "dhatFileVersion"),
    ],
)
def test_corrupt_dhat_is_one_clear_error(tmp_path: Path, content: str, needle: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InvalidInputError) as err:
        dhat.read_dhat(p)
    assert "corrupt DHAT file" in str(err.value) and needle in str(err.value)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------- sizes, programs, status
def test_parse_size() -> None:
    assert parse_size("2MiB") == 2 << 20
    assert parse_size("64k") == 65536
    assert parse_size("4096") == 4096
    with pytest.raises(InvalidInputError):
        parse_size("lots")


def test_prepare_refuses_missing_and_static_programs(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="command not found: no-such-prog-xyz"):
        prepare(["no-such-prog-xyz"], None)
    src = tmp_path / "s.c"
    src.write_text("int main(void){return 0;}\n")
    static = tmp_path / "static"
    built = subprocess.run(["cc", "-static", "-o", str(static), str(src)], capture_output=True)
    if built.returncode != 0:
        pytest.skip(f"no static libc to build a static test program: {built.stderr[:200]!r}")
    with pytest.raises(InvalidInputError, match="statically linked"):
        prepare([str(static)], None)


def test_prepare_spots_python_scripts(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("print('hi')\n")
    prep = prepare([sys.executable, str(script), "--x"], None)
    assert prep.python_script == [str(script), "--x"] and prep.app_name == "job.py"
    script.write_text(f"#!{sys.executable}\nprint('hi')\n")
    script.chmod(0o755)
    prep = prepare([str(script)], "myjob")
    assert prep.python_script is not None and prep.app_name == "myjob"
    assert prepare([sys.executable, "-c", "pass"], None).python_script is None
    true = shutil.which("true")
    assert true and prepare([true], None).python_script is None


def test_classify_statuses() -> None:
    assert classify(0, []) == ("succeeded", 0, None)
    assert classify(3, []) == ("failed", 3, None)
    assert classify(-signal.SIGSEGV, []) == ("failed", 139, signal.SIGSEGV)
    assert classify(-signal.SIGKILL, []) == ("killed", 137, signal.SIGKILL)
    assert classify(0, [signal.SIGINT]) == ("interrupted", 0, None)
    assert classify(-signal.SIGINT, []) == ("interrupted", 130, signal.SIGINT)
