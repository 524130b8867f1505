"""The shim under programs that reach the kernel around it (issue 16, items 5-7).

tests/shim_programs/kernelcalls.c waits (in /proc/self/maps, without touching the page)
until the shim has poisoned a page of a large heap buffer, then hands exactly that page to
a call the shim used not to wrap: raw ``syscall(SYS_pread64)``, ``syscall(SYS_preadv)``,
``epoll_wait``, ``getdents64``, ``clock_gettime`` of a CPU clock, ``poll``, ``fstat``; or
installs its SIGSEGV handler with a raw ``rt_sigaction``. The kernel does not fault and
retry on a protected page, so before the fix these calls failed with EFAULT and the
program's handler got the shim's poison faults. Each case runs with glibc, and with
jemalloc and tcmalloc preloaded before and after the shim (allocator first, the shim's
mmap hook ran inside jemalloc's mutex and started the sampler there: a deadlock).
Every run has a timeout, so a hang fails; nothing depends on speed (the program waits for
a poisoned page, at most 30 s each, then goes on).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from placer.collectors.shim.library import shim_path
from placer.collectors.shim.log import find_logs, read_log
from tests.test_shim_runtime import OTHER_ALLOCATORS, only_log, other_allocator, run

PROGRAM_SRC = Path(__file__).resolve().parent / "shim_programs" / "kernelcalls.c"
# A page held poisoned for a whole 50 ms interval of wall time, 16 per object, no budget.
SAMPLING = {
    "PLACER_SHIM_SAMPLE_PERIOD_MS": "50",
    "PLACER_SHIM_SAMPLE_CLOCK": "wall",
    "PLACER_SHIM_SAMPLE_PAGES": "16",
    "PLACER_SHIM_SAMPLE_BUDGET": "0",
}
# (allocator library name or None for glibc, whether it is preloaded before the shim)
SETUPS = [(None, False)] + [(a, first) for a in OTHER_ALLOCATORS for first in (True, False)]
SETUP_IDS = ["glibc"] + [
    f"{a.split('.')[0].removeprefix('lib')}-{'first' if first else 'after'}"
    for a in OTHER_ALLOCATORS
    for first in (True, False)
]

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@pytest.fixture(scope="module")
def shim() -> str:
    return str(shim_path())


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("kernelcalls") / "kernelcalls"
    subprocess.run(
        ["cc", "-O1", "-g", "-fno-builtin", "-o", str(out), str(PROGRAM_SRC)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return str(out)


def _preloads(shim: str, allocator: str | None, first: bool) -> tuple[str | None, str]:
    """(LD_PRELOAD of the native reference run, LD_PRELOAD with the shim)."""
    if allocator is None:
        return None, shim
    lib = str(other_allocator(allocator))
    return lib, f"{lib} {shim}" if first else f"{shim} {lib}"


def _skip_unless_seen(prog: str, preload: str, tmp_path: Path, allocator: str | None) -> None:
    """An allocator preloaded first may take its memory where the shim cannot see it
    (tcmalloc: brk); then nothing is sampled and waiting for a poisoned page is pointless."""
    pattern = tmp_path / "probe.%p.log"
    got = run([prog, "big"], preload, pattern, SAMPLING, timeout=60)
    assert got.returncode == 0 and got.stdout == b"big done\n"
    if not only_log(pattern).allocs:
        pytest.skip(f"{allocator} (first) takes its memory with brk: the shim samples nothing")


def _native(argv: list[str], preload: str | None) -> subprocess.CompletedProcess[bytes]:
    return run(argv, None, None, {"LD_PRELOAD": preload} if preload else None, timeout=120)


@pytest.mark.parametrize(("allocator", "first"), SETUPS, ids=SETUP_IDS)
def test_kernel_writes_into_poisoned_pages_succeed(
    prog: str, shim: str, tmp_path: Path, allocator: str | None, first: bool
) -> None:
    """Raw syscall(), epoll_wait, getdents64, clock_gettime, poll, fstat on a page the
    shim had just poisoned: the same results as without the shim, no EFAULT."""
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 64)
    ref_pre, preload = _preloads(shim, allocator, first)
    if first:
        _skip_unless_seen(prog, preload, tmp_path, allocator)
    ref = _native([prog, "calls", str(data), str(tmp_path), "2"], ref_pre)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    pattern = tmp_path / "k.%p.log"
    argv = [prog, "calls", str(data), str(tmp_path), "2", "wait"]
    got = run(argv, preload, pattern, SAMPLING, timeout=600)
    assert got.stdout.decode() == ref.stdout.decode()
    assert got.returncode == 0 and got.stderr == ref.stderr
    log = only_log(pattern)
    assert log.stats["io_unpoisons"] > 0, "no call met a poisoned page: the test proved nothing"


@pytest.mark.parametrize(("allocator", "first"), SETUPS, ids=SETUP_IDS)
def test_handler_installed_by_raw_rt_sigaction_sees_only_real_faults(
    prog: str, shim: str, tmp_path: Path, allocator: str | None, first: bool
) -> None:
    """syscall(SYS_rt_sigaction, SIGSEGV, ...): the program reads back what it set, its
    handler never gets a poison fault (exit 42), and still gets its own fault (exit 7)."""
    ref_pre, preload = _preloads(shim, allocator, first)
    if first:
        _skip_unless_seen(prog, preload, tmp_path, allocator)
    ref = _native([prog, "rawsegv", "3"], ref_pre)
    assert ref.returncode == 7, ref.stdout + ref.stderr
    pattern = tmp_path / "r.%p.log"
    got = run([prog, "rawsegv", "3", "wait"], preload, pattern, SAMPLING, timeout=300)
    assert got.returncode == 7, (got.returncode, got.stdout, got.stderr)
    assert got.stdout == ref.stdout and got.stderr == ref.stderr
    log = only_log(pattern)
    assert log.stats["sample_faults"] > 0  # the touched pages were poisoned


@pytest.mark.parametrize(("allocator", "first"), SETUPS, ids=SETUP_IDS)
def test_handler_installed_by_inline_syscall_stops_sampling(
    prog: str, shim: str, tmp_path: Path, allocator: str | None, first: bool
) -> None:
    """An inline rt_sigaction (the one way around the shim): it sees the shim's handler as
    the old one, but the shim then poisons nothing, so its handler gets no poison fault."""
    _, preload = _preloads(shim, allocator, first)
    if first:
        _skip_unless_seen(prog, preload, tmp_path, allocator)
    pattern = tmp_path / "i.%p.log"
    got = run([prog, "inlinesegv", "2", "wait"], preload, pattern, SAMPLING, timeout=300)
    if got.stdout.startswith(b"skip"):
        pytest.skip(got.stdout.decode().strip())
    assert got.returncode == 7, (got.returncode, got.stdout, got.stderr)
    assert b"touched 2\n" in got.stdout
    log = only_log(pattern)
    assert log.stats["sample_faults"] == 0 and log.stats["handler_skips"] > 0


@pytest.mark.parametrize(("allocator", "first"), SETUPS, ids=SETUP_IDS)
def test_large_allocations_never_deadlock_the_sampler_start(
    prog: str, shim: str, tmp_path: Path, allocator: str | None, first: bool
) -> None:
    """With jemalloc preloaded first, its mmap under its own mutex started the sampler,
    whose pthread_create allocated through jemalloc: 8 of 8 runs hung."""
    ref_pre, preload = _preloads(shim, allocator, first)
    ref = _native([prog, "big"], ref_pre)
    pattern = tmp_path / "b.%p.log"
    for _ in range(3):
        got = run([prog, "big"], preload, pattern, SAMPLING, timeout=60)
        assert got.returncode == 0 and got.stdout == ref.stdout == b"big done\n"
        # tcmalloc first takes its memory with brk, out of the shim's sight
        assert only_log(pattern).allocs or first, "no large allocation was logged"
        for path in pattern.parent.glob("b.*.log"):
            path.unlink()


@pytest.mark.parametrize(("allocator", "first"), SETUPS, ids=SETUP_IDS)
def test_fork_children_start_their_own_sampler(
    prog: str, shim: str, tmp_path: Path, allocator: str | None, first: bool
) -> None:
    """A child of fork holds the parent's large buffer: its sampler starts (never inside a
    fork handler that runs before the allocator's), and a raw read into a page it
    poisoned succeeds."""
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 64)
    ref_pre, preload = _preloads(shim, allocator, first)
    if first:
        _skip_unless_seen(prog, preload, tmp_path, allocator)
    ref = _native([prog, "forkbig", str(data), "2"], ref_pre)
    assert ref.returncode == 0 and ref.stdout == b"child 0 exit 0\nchild 1 exit 0\n"
    pattern = tmp_path / "f.%p.log"
    got = run([prog, "forkbig", str(data), "2", "wait"], preload, pattern, SAMPLING, timeout=300)
    assert got.returncode == 0 and got.stdout == ref.stdout, (got.stdout, got.stderr)
    logs = [read_log(p) for p in find_logs(pattern)]
    assert len(logs) == 3
    children = [lg for lg in logs if lg.header.ppid in {x.header.pid for x in logs}]
    assert len(children) == 2
    for child in children:  # (a child that _exits logs no SAMPLE for its last interval)
        assert child.stats["sample_intervals"] > 0 and child.stats["io_unpoisons"] > 0
