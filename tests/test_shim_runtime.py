"""The preloaded shim on real programs: what it logs, and that the program does not notice.

Each test runs the scenario program (tests/shim_programs/shimtest.c, compiled once per
session into a temporary directory) with and without the shim, with timeouts so that a
deadlock fails the test instead of hanging the suite.
"""

from __future__ import annotations

import collections
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from placer.collectors.shim.library import shim_path
from placer.collectors.shim.log import END_EXEC, find_logs, read_log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROGRAM_SRC = HERE / "shim_programs" / "shimtest.c"
KiB = 1024
MiB = 1024 * KiB
# Aggressive sampling: 16 pages of every object >= 1 MiB poisoned every 5 ms (up to
# 25 600 pages/s, four times the default rate), with no cost budget (the default budget
# would skip most of these intervals, and these tests are about races with many).
AGGRESSIVE = {
    "PLACER_SHIM_SAMPLE_PERIOD_MS": "5",
    "PLACER_SHIM_SAMPLE_PAGES": "16",
    "PLACER_SHIM_SAMPLE_MAX_PAGES": "128",
    "PLACER_SHIM_SAMPLE_BUDGET": "0",
}

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@pytest.fixture(scope="session")
def shim() -> str:
    return str(shim_path())


@pytest.fixture(scope="session")
def prog(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("shimprog") / "shimtest"
    subprocess.run(
        ["cc", "-O1", "-g", "-fno-builtin", "-pthread", "-o", str(out), str(PROGRAM_SRC)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return str(out)


def run(
    argv: list[str],
    shim: str | None,
    log: Path | None,
    extra: dict[str, str] | None = None,
    timeout: float = 240,
    **kw: object,
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLACER_SHIM_")}
    env.pop("LD_PRELOAD", None)
    if shim:
        env["LD_PRELOAD"] = shim
        if log is not None:
            env["PLACER_SHIM_LOG"] = str(log)
    env.update(extra or {})
    return subprocess.run(argv, env=env, capture_output=True, timeout=timeout, **kw)  # type: ignore[call-overload,no-any-return]


def only_log(pattern: Path):  # type: ignore[no-untyped-def]
    logs = find_logs(pattern)
    assert len(logs) == 1, logs
    return read_log(logs[0])


def test_threshold_and_every_entry_point(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "sizes"], shim, pattern)
    assert res.returncode == 0, res.stderr
    lines = [ln.split() for ln in res.stdout.decode().splitlines()]
    small = {int(s, 16) for _, s, _ in lines}
    large = {int(b, 16): int(i) for i, _, b in lines}
    log = only_log(pattern)
    assert log.end is not None and log.end.reason == 0 and not log.truncated
    logged = {a.address: a for a in log.allocs}
    assert not small & logged.keys(), "allocations below the threshold were logged"
    assert large.keys() <= logged.keys()
    kinds = {large[addr]: logged[addr].kind for addr in large}
    assert kinds == {
        0: "malloc",
        1: "calloc",
        2: "realloc",
        3: "posix_memalign",
        4: "aligned_alloc",
        5: "memalign",
        6: "valloc",
        7: "valloc",
        8: "mmap",
    }
    sizes = {large[a]: logged[a].size for a in large}
    assert sizes[0] == 100 * KiB and sizes[1] == 100 * KiB and sizes[8] == MiB
    freed = {f.seq: f.kind for f in log.frees}
    for addr, i in large.items():
        assert freed[logged[addr].seq] == ("munmap" if i == 8 else "free")
    # every ALLOC's site is described, with the program's own frame first
    for a in log.allocs:
        frames = log.sites[a.site_hash]
        assert frames and frames[0][0] == os.path.realpath(prog)
    assert log.header.threshold == 64 * KiB and log.header.pid > 0


def test_threshold_setting(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "sizes"], shim, pattern, {"PLACER_SHIM_THRESHOLD": "512K"})
    assert res.returncode == 0
    log = only_log(pattern)
    assert [a.size for a in log.allocs] == [MiB]
    assert log.header.threshold == 512 * KiB


def test_realloc_free_munmap_pairs(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "pairs"], shim, pattern)
    assert res.returncode == 0 and res.stdout == b"pairs done\n"
    log = only_log(pattern)
    allocs = sorted(log.allocs, key=lambda a: a.seq)
    frees = {f.seq: f for f in log.frees}
    seq = [(a.kind, a.size) for a in allocs]
    assert seq[:3] == [("malloc", 100 * KiB), ("realloc", 300 * KiB), ("realloc", 200 * KiB)]
    assert frees[allocs[0].seq].kind == "realloc"  # moved or resized by realloc
    assert frees[allocs[1].seq].kind == "realloc"  # shrunk below the threshold
    assert frees[allocs[2].seq].kind == "free"
    assert seq[3] == ("malloc", 150 * KiB) and frees[allocs[3].seq].kind == "realloc"
    # mmap 4 MiB -> mremap to 8 MiB -> tail unmapped -> the rest unmapped
    assert seq[4:] == [("mmap", 4 * MiB), ("realloc", 8 * MiB), ("mmap", 6 * MiB)]
    assert frees[allocs[4].seq].kind == "realloc"
    assert frees[allocs[5].seq].kind == "munmap"
    assert frees[allocs[6].seq].kind == "munmap"
    assert allocs[6].address == allocs[5].address
    assert allocs[6].site_hash == allocs[5].site_hash  # the remnant keeps its site
    assert all(a.seq in frees for a in allocs), "every object ends"


def test_same_site_same_hash_across_runs_with_aslr(prog: str, shim: str, tmp_path: Path) -> None:
    aslr = Path("/proc/sys/kernel/randomize_va_space")
    if aslr.exists() and aslr.read_text().strip() == "0":
        pytest.skip("ASLR is off on this host")
    seen = []
    for i in range(2):
        pattern = tmp_path / f"run{i}.%p.log"
        res = run([prog, "site"], shim, pattern)
        assert res.returncode == 0
        log = only_log(pattern)
        [alloc] = log.allocs
        assert alloc.address == int(res.stdout.split()[0], 16)
        seen.append((alloc.address, alloc.site_hash, log.sites[alloc.site_hash]))
    (addr1, hash1, frames1), (addr2, hash2, frames2) = seen
    assert addr1 != addr2, "ASLR should move the heap between runs"
    assert hash1 == hash2
    assert frames1 == frames2


def test_eight_threads_no_deadlock(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "threads", "8"], shim, pattern, AGGRESSIVE, timeout=120)
    assert res.returncode == 0 and res.stdout == b"threads done\n", res.stderr
    log = only_log(pattern)
    assert not log.truncated and log.end.dropped_records == 0  # type: ignore[union-attr]
    # per thread: 300 mallocs >= 64 KiB, 6 calloc + 6 realloc
    assert len({a.tid for a in log.allocs}) == 8
    assert len(log.allocs) == 8 * (300 + 12)
    assert len({a.seq for a in log.allocs}) == len(log.allocs)
    freed = {f.seq for f in log.frees}
    assert freed == {a.seq for a in log.allocs}


def test_small_buffer_many_flushes(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "threads", "8"], shim, pattern, {"PLACER_SHIM_BUFFER": "64K"})
    assert res.returncode == 0
    log = only_log(pattern)
    assert len(log.allocs) == 8 * 312 and len(log.frees) == len(log.allocs)
    assert log.end is not None and log.end.dropped_records == 0


def test_program_that_closes_and_reuses_every_descriptor(
    prog: str, shim: str, tmp_path: Path
) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "closefds"], shim, pattern)
    assert res.returncode == 0 and res.stdout == b"closed\n"
    log = only_log(pattern)
    assert [a.size for a in log.allocs] == [100 * KiB] + [200 * KiB] * 50
    assert len(log.frees) == 51 and log.end is not None and not log.truncated
    assert log.stats["log_reopens"] >= 1


def test_stack_depth_setting(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "sizes"], shim, pattern, {"PLACER_SHIM_STACK_DEPTH": "2"})
    assert res.returncode == 0
    log = only_log(pattern)
    assert log.header.stack_depth == 2
    assert {len(frames) for frames in log.sites.values()} == {2}


def test_fork_children_write_their_own_logs(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([prog, "fork", "3"], shim, pattern, AGGRESSIVE, timeout=120)
    assert res.returncode == 0 and res.stdout == b"forked 3\n", res.stderr
    logs = [read_log(p) for p in find_logs(pattern)]
    assert len(logs) == 4
    pids = {lg.header.pid for lg in logs}
    parent = [lg for lg in logs if lg.header.ppid not in pids]
    assert len(parent) == 1
    root = parent[0]
    children = [lg for lg in logs if lg is not root]
    assert all(c.header.ppid == root.header.pid for c in children)
    parent_obj = next(a for a in root.allocs if a.size == 200 * KiB)
    for c in children:
        assert c.end is not None and not c.truncated
        sizes = [a.size for a in c.allocs]
        assert 300 * KiB in sizes
        # the inherited object's free is logged in the child, under the parent's seq
        assert parent_obj.seq in {f.seq for f in c.frees}
        assert c.modules and c.sites  # a child log is self-contained
    assert not root.truncated


def test_output_identical_with_and_without_shim(prog: str, shim: str, tmp_path: Path) -> None:
    ref = run([prog, "output", "60"], None, None)
    assert ref.returncode == 0
    for extra in ({}, AGGRESSIVE):
        got = run([prog, "output", "60"], shim, tmp_path / "o.%p.log", extra)
        assert got.returncode == 0
        assert got.stdout == ref.stdout and got.stderr == ref.stderr


def test_kernel_buffers_under_aggressive_sampling(prog: str, shim: str, tmp_path: Path) -> None:
    """read/pread/readv/fread fill, write/fwrite drain large sampled buffers: no EFAULT."""
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(5 * MiB + 12345))
    argv = [prog, "io", str(data), "24"]
    ref = run(argv, None, None)
    assert ref.returncode == 0, ref.stderr
    pattern = tmp_path / "io.%p.log"
    extra = dict(AGGRESSIVE, PLACER_SHIM_SAMPLE_PERIOD_MS="1")
    got = run(argv, shim, pattern, extra, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout == ref.stdout and got.stderr == ref.stderr
    log = only_log(pattern)
    assert log.header.flags & 1
    assert log.stats["io_unpoisons"] > 0, "the I/O wrappers never met a poisoned page"
    assert sum(s.written_pages for s in log.samples) > 0


def test_own_segfault_still_kills_and_log_is_flushed(prog: str, shim: str, tmp_path: Path) -> None:
    ref = run([prog, "segv"], None, None)
    assert ref.returncode == -signal.SIGSEGV
    pattern = tmp_path / "shim.%p.log"
    got = run([prog, "segv"], shim, pattern)
    assert got.returncode == -signal.SIGSEGV
    log = only_log(pattern)
    assert [a.size for a in log.allocs] == [500 * KiB]
    assert log.end is not None and log.end.reason == signal.SIGSEGV
    assert not log.truncated


def test_sigterm_flushes_then_dies_by_sigterm(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLACER_SHIM_")}
    env.update(LD_PRELOAD=shim, PLACER_SHIM_LOG=str(pattern))
    proc = subprocess.Popen([prog, "sleep"], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    log = only_log(pattern)
    assert [a.size for a in log.allocs] == [500 * KiB]
    assert log.end is not None and log.end.reason == signal.SIGTERM


def test_killed_program_leaves_a_readable_truncated_log(
    prog: str, shim: str, tmp_path: Path
) -> None:
    pattern = tmp_path / "shim.%p.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLACER_SHIM_")}
    env.update(LD_PRELOAD=shim, PLACER_SHIM_LOG=str(pattern))
    proc = subprocess.Popen([prog, "sleep"], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.kill()
        proc.wait(timeout=20)
    finally:
        proc.kill()
    log = only_log(pattern)
    assert log.truncated and log.end is None  # SIGKILL: nothing could be flushed


def test_program_sigsegv_handler_installed_after_the_shim(
    prog: str, shim: str, tmp_path: Path
) -> None:
    ref = run([prog, "handler", "0.6"], None, None)
    assert ref.returncode == 0, ref.stdout
    got = run([prog, "handler", "0.6"], shim, tmp_path / "h.%p.log", AGGRESSIVE)
    assert got.returncode == 0, (got.stdout, got.stderr)
    assert got.stdout == ref.stdout == b"faults recovered 1, caught 1, sum>0 1\n"
    log = only_log(tmp_path / "h.%p.log")
    assert log.stats["sample_faults"] > 0 and log.stats["foreign_segv"] > 0


def test_threads_blocking_sigsegv_survive_sampling(prog: str, shim: str, tmp_path: Path) -> None:
    got = run([prog, "blocked", "0.6"], shim, tmp_path / "b.%p.log", AGGRESSIVE)
    assert got.returncode == 0 and got.stdout == b"blocked done\n", got
    log = only_log(tmp_path / "b.%p.log")
    assert log.stats["sample_faults"] > 0


def test_sampling_finds_the_hot_object(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "hc.%p.log"
    got = run([prog, "hotcold", "0.8"], shim, pattern, timeout=60)
    assert got.returncode == 0
    hot_addr, cold_addr = (int(x, 16) for x in got.stdout.split()[:2])
    log = only_log(pattern)
    by_addr = {a.address: a.seq for a in log.allocs}
    per: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for s in log.samples:
        acc = per[s.seq]
        acc[0] += s.sampled_pages
        acc[1] += s.touched_pages
        acc[2] += s.written_pages
    hot, cold = per[by_addr[hot_addr]], per[by_addr[cold_addr]]
    assert hot[0] > 50 and cold[0] > 50, (hot, cold)
    hot_share, cold_share = hot[1] / hot[0], cold[1] / cold[0]
    # on an idle host about 0.9 vs 0.05; a loaded host runs the program in fewer intervals
    assert hot_share > 0.1 and hot_share > 4 * cold_share, (hot, cold)
    assert hot[2] > 0 and hot[2] <= hot[1]
    assert log.header.sample_period_ms == 10


def _sampling_cost(log) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(cost in ns as the shim's budget counts it, poisoned pages) of one run."""
    st = log.stats
    cost = st["sampler_cpu_ns"] + st["fault_ns"] + 2000 * st["sample_faults"]
    return cost, sum(s.sampled_pages for s in log.samples)


def test_sampling_budget_bounds_the_cost(prog: str, shim: str, tmp_path: Path) -> None:
    """A 1% budget holds a 1 ms, 32-page sampler to about 1% of the program's CPU time."""
    fast = dict(AGGRESSIVE, PLACER_SHIM_SAMPLE_PERIOD_MS="1", PLACER_SHIM_SAMPLE_PAGES="32")
    results = {}
    for budget in ("0", "1"):
        pattern = tmp_path / f"b{budget}.%p.log"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        got = run(
            [prog, "hotcold", "1.0"], shim, pattern, dict(fast, PLACER_SHIM_SAMPLE_BUDGET=budget)
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert got.returncode == 0, got.stderr
        cpu_ns = int(1e9 * (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime))
        log = only_log(pattern)
        results[budget] = (*_sampling_cost(log), cpu_ns, log.stats["budget_skips"])
    (cost0, pages0, _, skips0), (cost1, pages1, cpu1, skips1) = results["0"], results["1"]
    assert skips0 == 0 and skips1 > 0, results
    assert pages1 > 0  # still sampled, only less often
    # the budget: 1% of the program's CPU, 20 ms of grace, one interval's overshoot
    assert cost1 <= 0.01 * cpu1 + 20e6 + 3e6, results
    assert cost0 > 3 * cost1 and pages0 > 3 * pages1, results


def test_sampling_budget_setting_read(prog: str, shim: str, tmp_path: Path) -> None:
    """Decimal percentages are read; a malformed value keeps the default (and says so)."""
    fast = dict(AGGRESSIVE, PLACER_SHIM_SAMPLE_PERIOD_MS="1")
    skips = {}
    for value in ("0.000", "0.5", "bogus"):
        pattern = tmp_path / f"s{len(skips)}.%p.log"
        extra = dict(fast, PLACER_SHIM_SAMPLE_BUDGET=value, PLACER_SHIM_DEBUG="1")
        got = run([prog, "hotcold", "0.5"], shim, pattern, extra)
        assert got.returncode == 0, got.stderr
        skips[value] = (only_log(pattern).stats["budget_skips"], got.stderr)
    assert skips["0.000"][0] == 0  # 0: no budget
    assert skips["0.5"][0] > 0
    assert skips["bogus"][0] > 0 and b"PLACER_SHIM_SAMPLE_BUDGET" in skips["bogus"][1]


def test_sampling_off(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "off.%p.log"
    got = run([prog, "hotcold", "0.2"], shim, pattern, {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0"})
    assert got.returncode == 0
    log = only_log(pattern)
    assert not log.samples and log.header.flags & 1 == 0 and log.header.sample_period_ms == 0


def test_exec_keeps_both_images_logs(prog: str, shim: str, tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    got = run([prog, "exec"], shim, pattern)
    assert got.returncode == 0
    paths = find_logs(pattern)
    assert len(paths) == 2 and paths[1].name.endswith(".1.log"), paths
    first, second = (read_log(p) for p in paths)
    assert first.header.pid == second.header.pid
    assert first.end is not None and first.end.reason == END_EXEC
    assert [a.size for a in first.allocs] == [100 * KiB]
    assert [a.size for a in second.allocs] == [123 * KiB]


def test_pattern_without_pid_fork_then_exec(prog: str, shim: str, tmp_path: Path) -> None:
    """Without %p the root keeps the name; a forked child that execs never overwrites it."""
    pattern = tmp_path / "run.log"
    got = run([prog, "forkexec"], shim, pattern)
    assert got.returncode == 0, got.stderr
    names = sorted(p.name for p in find_logs(pattern))
    assert len(names) == 3 and "run.log" in names, names
    logs = {p.name: read_log(p) for p in find_logs(pattern)}
    root = logs["run.log"]
    assert [a.size for a in root.allocs] == [200 * KiB] and root.end.reason == 0  # type: ignore[union-attr]
    child = [lg for n, lg in logs.items() if n != "run.log"]
    assert {lg.header.pid for lg in child} == {child[0].header.pid} != {root.header.pid}
    assert sorted(lg.end.reason for lg in child) == [0, END_EXEC]  # type: ignore[union-attr]
    assert [a.size for lg in child for a in lg.allocs] == [123 * KiB]


def test_no_log_variable_means_plain_forwarding(prog: str, shim: str, tmp_path: Path) -> None:
    got = run([prog, "output", "10"], shim, None, cwd=tmp_path)
    ref = run([prog, "output", "10"], None, None)
    assert got.stdout == ref.stdout and got.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_unwritable_log_degrades_to_forwarding(prog: str, shim: str, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.%p.log"
    got = run([prog, "output", "10"], shim, missing)
    ref = run([prog, "output", "10"], None, None)
    assert got.returncode == 0 and got.stdout == ref.stdout and got.stderr == b""


OTHER_ALLOCATORS = ["libjemalloc.so.2", "libtcmalloc_minimal.so.4"]


def other_allocator(name: str) -> Path:
    """The installed library of another allocator, to preload under the shim; skips the
    test when it is not installed."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu"):
        if (lib := Path(d) / name).exists():
            return lib
    pytest.skip(f"{name} not installed (Debian: libjemalloc2 / libtcmalloc-minimal4)")


@pytest.mark.parametrize("allocator", OTHER_ALLOCATORS)
def test_other_allocators(prog: str, shim: str, tmp_path: Path, allocator: str) -> None:
    lib = other_allocator(allocator)
    preload = f"{shim} {lib}"
    pattern = tmp_path / "a.%p.log"
    ref = run([prog, "output", "30"], None, None, {"LD_PRELOAD": str(lib)})
    got = run([prog, "output", "30"], preload, pattern, AGGRESSIVE)
    assert got.returncode == 0 and got.stdout == ref.stdout
    log = only_log(pattern)
    assert len(log.allocs) >= 30 and len(log.frees) >= 30
    res = run([prog, "threads", "8"], preload, tmp_path / "t.%p.log", AGGRESSIVE, timeout=120)
    assert res.returncode == 0 and res.stdout == b"threads done\n"
    tlog = only_log(tmp_path / "t.%p.log")
    assert len(tlog.allocs) == 8 * 312 and len(tlog.frees) == len(tlog.allocs)


def test_plan_binds_to_node0(prog: str, shim: str, tmp_path: Path) -> None:
    """A planned site is mbind()-ed (raw syscall) to its node; numa_maps shows it there."""
    off = {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0"}
    first = run([prog, "numa"], shim, tmp_path / "p1.%p.log", off)
    assert first.returncode == 0
    addr = int(first.stdout.split()[0], 16)
    log = only_log(tmp_path / "p1.%p.log")
    site = next(a.site_hash for a in log.allocs if a.address == addr)
    assert not log.binds and log.header.flags & 2 == 0
    plan = tmp_path / "plan.txt"
    plan.write_text(f"# site node\n{site:#018x} 0\n12345 1\n")
    pattern = tmp_path / "p2.%p.log"
    res = run([prog, "numa"], shim, pattern, dict(off, PLACER_SHIM_PLAN=str(plan)))
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode().splitlines()
    addr = int(out[0], 16)
    log2 = only_log(pattern)
    assert log2.header.flags & 2
    [bind] = log2.binds
    bound = next(a for a in log2.allocs if a.seq == bind.seq)
    assert bound.address == addr and bound.site_hash == site
    assert bind.node == 0 and bind.errno == 0
    page = (addr + 4095) & ~4095
    vmas = [ln for ln in out[1:] if ln.strip()]
    starts = sorted(int(ln.split()[0], 16) for ln in vmas)
    vma_start = max(s for s in starts if s <= page)
    line = next(ln for ln in vmas if int(ln.split()[0], 16) == vma_start)
    assert "bind:0" in line and " N0=" in line, line


@pytest.mark.slow
def test_python_under_the_shim(shim: str, tmp_path: Path) -> None:
    """CPython with numpy (many allocations, threads, its own signal handling) under the shim."""
    pytest.importorskip("numpy")
    code = (
        "import numpy as np, threading\n"
        "def work(seed):\n"
        "    r = np.random.default_rng(seed)\n"
        "    a = r.random(2_000_000); b = np.sort(a); return float(b[1000])\n"
        "ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(round(sum(np.arange(10**6) * 2.0) / 1e9, 6))\n"
    )
    ref = run([sys.executable, "-c", code], None, None, timeout=120)
    pattern = tmp_path / "py.%p.log"
    t0 = time.monotonic()
    got = run([sys.executable, "-c", code], shim, pattern, AGGRESSIVE, timeout=120)
    assert time.monotonic() - t0 < 100
    assert got.returncode == 0 and got.stdout == ref.stdout, got.stderr
    log = only_log(pattern)
    assert len(log.allocs) > 4 and not log.truncated


@pytest.mark.slow
def test_redis_server_with_jemalloc(shim: str, tmp_path: Path) -> None:
    """Debian's redis-server (linked with jemalloc, threads, fork for BGSAVE, sockets)."""
    server, bench, cli = (shutil.which(x) for x in ("redis-server", "redis-benchmark", "redis-cli"))
    if not (server and bench and cli):
        pytest.skip("redis-server/redis-tools not installed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    pattern = tmp_path / "redis.%p.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLACER_SHIM_")}
    env.update(AGGRESSIVE, LD_PRELOAD=shim, PLACER_SHIM_LOG=str(pattern))
    args = [
        server,
        "--port",
        port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
        "--daemonize",
        "no",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run([cli, "-p", port, "ping"], capture_output=True, timeout=10)
            if ping.stdout.strip() == b"PONG":
                break
            time.sleep(0.1)
        else:
            pytest.fail("redis-server under the shim did not answer")
        res = subprocess.run(
            [
                bench,
                "-p",
                port,
                "-q",
                "-n",
                "3000",
                "-c",
                "8",
                "-d",
                "100000",
                "-t",
                "set,get,lpush",
            ],
            capture_output=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        assert (
            subprocess.run([cli, "-p", port, "bgsave"], capture_output=True, timeout=10).returncode
            == 0
        )
        for _ in range(100):
            info = subprocess.run(
                [cli, "-p", port, "info", "persistence"], capture_output=True, timeout=10
            ).stdout
            if b"rdb_bgsave_in_progress:0" in info:
                break
            time.sleep(0.1)
        assert b"rdb_last_bgsave_status:ok" in info
        subprocess.run([cli, "-p", port, "shutdown", "nosave"], capture_output=True, timeout=10)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    logs = [read_log(p) for p in find_logs(pattern)]
    main = max(logs, key=lambda lg: len(lg.allocs))
    assert len(main.allocs) > 100 and main.end is not None and main.end.reason == 0
    assert any(frames[0][0].startswith("/usr/bin/redis") for frames in main.sites.values())
    assert len(logs) >= 2  # the BGSAVE child logged too


def _numa_site(prog: str, shim: str, tmp_path: Path) -> int:
    off = {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0"}
    first = run([prog, "numa"], shim, tmp_path / "site.%p.log", off)
    assert first.returncode == 0
    addr = int(first.stdout.split()[0], 16)
    return next(a.site_hash for a in only_log(tmp_path / "site.%p.log").allocs if a.address == addr)


def test_plan_binds_chunks_of_one_allocation(prog: str, shim: str, tmp_path: Path) -> None:
    """`site node chunk size` lines bind chunk ranges of the allocation: one mbind and one
    BIND record per chunk, and numa_maps shows the bound ranges as their own bind:0 VMAs
    (mbind of a sub-range splits the VMA) next to default-policy ones."""
    site = _numa_site(prog, shim, tmp_path)
    plan = tmp_path / "plan.txt"
    lines = [f"{site:#018x} 0 {c} {MiB}" for c in (2, 5, 7, 9)]  # 8 MiB: no chunk 9
    plan.write_text("# chunks\n" + "\n".join(lines) + "\n12345 1 0 4096\n")
    pattern = tmp_path / "c.%p.log"
    res = run(
        [prog, "numa"],
        shim,
        pattern,
        {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0", "PLACER_SHIM_PLAN": str(plan)},
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode().splitlines()
    addr = int(out[0], 16)
    log = only_log(pattern)
    assert log.stats["plan_bad_lines"] == 0
    assert [b.chunk for b in log.binds] == [2, 5, 7]
    assert all(b.errno == 0 and b.node == 0 for b in log.binds)
    assert log.stats["binds_ok"] == 3 and log.stats["binds_failed"] == 0
    [alloc] = [a for a in log.allocs if a.seq == log.binds[0].seq]
    assert alloc.address == addr and alloc.size == 8 * MiB
    end_page = (addr + 8 * MiB) & ~4095
    for b in log.binds:  # the whole pages whose first byte is in the chunk
        lo = (addr + b.chunk * MiB + 4095) & ~4095
        assert b.start == lo and b.start + b.length == min((lo + MiB), end_page)
    vmas = {int(ln.split()[0], 16): ln for ln in out[1:] if ln.strip()}
    for b in log.binds:
        line = vmas.get(b.start)
        assert line is not None and "bind:0" in line and " N0=" in line, (b, line)
        assert f"N0={b.length // 4096} " in line, line  # touched: every page on node 0
    # the chunk between two bound ones keeps the default policy, in a VMA of its own
    line = vmas[log.binds[0].start + log.binds[0].length]
    assert line.split()[1] == "default", line


def _strip_times(text: bytes) -> list[str]:
    return [
        w
        for w in text.decode().split()
        if not w.split("=")[0].endswith(("_s", "_per_s", "_per_access"))
    ]


def test_chunk_plan_leaves_program_output_unchanged(shim: str, tmp_path: Path) -> None:
    """examples/bin/seqread -m 64M with every other 4 MiB chunk of its array bound: all
    binds succeed and the program's result (checksum, counts) is what it is without."""
    if subprocess.run(["make", "-s", "-C", str(REPO / "examples")]).returncode != 0:
        pytest.skip("cannot build the examples (make -C examples)")
    prog = REPO / "examples" / "bin" / "seqread"
    argv = [str(prog), "-m", "64M", "-i", "2"]
    ref = run(argv, None, None)
    assert ref.returncode == 0
    off = {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0"}
    first = run(argv, shim, tmp_path / "s.%p.log", off)
    big = max(only_log(tmp_path / "s.%p.log").allocs, key=lambda a: a.size)
    plan = tmp_path / "plan.txt"
    chunks = list(range(0, -(-big.size // (4 * MiB)), 2))
    plan.write_text("".join(f"{big.site_hash:#x} 0 {c} {4 * MiB}\n" for c in chunks))
    got = run(argv, shim, tmp_path / "p.%p.log", dict(off, PLACER_SHIM_PLAN=str(plan)))
    assert got.returncode == 0, got.stderr
    assert _strip_times(got.stdout) == _strip_times(ref.stdout) == _strip_times(first.stdout)
    assert got.stderr == ref.stderr
    log = only_log(tmp_path / "p.%p.log")
    binds = [b for b in log.binds if b.chunk is not None]
    assert sorted(b.chunk for b in binds) == chunks
    assert all(b.errno == 0 and b.length > 0 for b in binds)


def test_malformed_plan_lines_are_skipped(prog: str, shim: str, tmp_path: Path) -> None:
    """Bad lines (chunk or whole) are skipped and counted; good ones still apply and the
    program behaves exactly as without the shim."""
    site = _numa_site(prog, shim, tmp_path)
    bad = [
        f"{site:#x} 0 1",  # chunk without a size
        f"{site:#x} 0 x 4096",
        f"{site:#x} 0 1 0",  # zero chunk size
        f"{site:#x} 0 1 -4096",
        f"{site:#x} 0 1 4096 extra",
        f"{site:#x} 0 99999999999999999999999 4096",  # overflows
        f"{site:#x} 0 1 99999999999999999999999",
        f"{site:#x} 1024 1 4096",  # node out of range
        f"{site:#x} 0x1 1 4096",
        f"{site:#x}",
        "0x 0",
        "0x" + "f" * 40 + " 0",  # more than 64 bits
        "not-a-site 0 0 4096",
        "\x00\x01garbage\xff 0",
        "9" * 5000 + " 0",
    ]
    good = f"{site:#x} 0 1 {MiB}  # chunk 1, a trailing comment"
    plan = tmp_path / "plan.txt"
    plan.write_bytes(("\n".join(bad[:7] + [good] + bad[7:]) + "\n").encode("latin-1"))
    ref = run([prog, "output", "60"], None, None)
    pattern = tmp_path / "m.%p.log"
    extra = {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0", "PLACER_SHIM_PLAN": str(plan)}
    got = run([prog, "output", "60"], shim, pattern, extra)
    assert got.returncode == 0 and got.stdout == ref.stdout and got.stderr == ref.stderr
    assert only_log(pattern).stats["plan_bad_lines"] == len(bad)
    res = run([prog, "numa"], shim, tmp_path / "n.%p.log", extra)
    assert res.returncode == 0, res.stderr
    log = only_log(tmp_path / "n.%p.log")
    assert [(b.chunk, b.errno) for b in log.binds] == [(1, 0)]
    assert log.stats["plan_bad_lines"] == len(bad)
