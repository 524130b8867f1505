"""A plan binding does not outlive its object (issue 12 point 5, issue 16 item 8).

tests/shim_programs/bindreuse.c allocates ~100 KiB at site A, which the plan binds to
node 0 (this host's only node), lets it go (free, or an in-place shrinking realloc at an
unplanned site), then allocates the same size at unplanned site B, which the allocator
places on A's pages. Unmatched sites keep the default policy: B's pages must show no
`bind:` in /proc/self/numa_maps, while A's showed `bind:0` before it went.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from placer.collectors.shim.library import shim_path
from tests.test_shim_runtime import OTHER_ALLOCATORS, only_log, other_allocator, run

PROGRAM_SRC = Path(__file__).resolve().parent / "shim_programs" / "bindreuse.c"
NO_SAMPLING = {"PLACER_SHIM_SAMPLE_PERIOD_MS": "0"}
SIZE = 100 * 1024
CHUNK = 16 * 1024

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@pytest.fixture(scope="module")
def shim() -> str:
    return str(shim_path())


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bindreuse") / "bindreuse"
    subprocess.run(
        ["cc", "-O1", "-g", "-fno-builtin", "-o", str(out), str(PROGRAM_SRC)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return str(out)


def _lines(res: subprocess.CompletedProcess[bytes]) -> dict[str, tuple[int, str]]:
    """tag -> (address, numa_maps line of the VMA holding the object's first whole page)."""
    assert res.returncode == 0, res.stderr
    out = {}
    for ln in res.stdout.decode().splitlines():
        tag, addr, line = ln.split(" ", 2)
        out[tag] = (int(addr, 16), line)
    return out


@pytest.mark.parametrize("allocator", [None, *OTHER_ALLOCATORS])
@pytest.mark.parametrize("mode", ["free", "realloc"])
@pytest.mark.parametrize("chunks", [False, True], ids=["whole", "chunks"])
def test_reused_memory_of_a_bound_object_keeps_the_default_policy(
    prog: str, shim: str, tmp_path: Path, allocator: str | None, mode: str, chunks: bool
) -> None:
    preload = f"{shim} {other_allocator(allocator)}" if allocator else shim
    # first run, no plan: site A's hash is the site of the object printed as A
    first = run([prog, mode], preload, tmp_path / "s.%p.log", NO_SAMPLING)
    a_addr = _lines(first)["A"][0]
    allocs = only_log(tmp_path / "s.%p.log").allocs
    site_a = next(a.site_hash for a in allocs if a.address == a_addr)
    plan = tmp_path / "plan.txt"
    if chunks:  # chunks 0 and 1 (adjacent: one reset) and 3; B's first page is in chunk 0
        plan.write_text("".join(f"{site_a:#018x} 0 {c} {CHUNK}\n" for c in (0, 1, 3)))
    else:
        plan.write_text(f"{site_a:#018x} 0\n")
    pattern = tmp_path / "p.%p.log"
    res = run([prog, mode], preload, pattern, dict(NO_SAMPLING, PLACER_SHIM_PLAN=str(plan)))
    got = _lines(res)
    (a_addr, a_line), (b_addr, b_line) = got["A"], got["B"]
    log = only_log(pattern)
    assert len(log.binds) == (3 if chunks else 1)
    assert all(b.errno == 0 and b.node == 0 and b.seq == log.binds[0].seq for b in log.binds)
    bound = next(a for a in log.allocs if a.seq == log.binds[0].seq)
    assert bound.address == a_addr and bound.site_hash == site_a
    assert "bind:0" in a_line, a_line  # A was bound while it lived
    a_size = bound.size
    if not (b_addr < a_addr + a_size and a_addr < b_addr + SIZE):
        if allocator is None:
            pytest.fail(f"glibc did not reuse A's memory: A {a_addr:#x}, B {b_addr:#x}")
        pytest.skip(f"{allocator} put B ({b_addr:#x}) away from A ({a_addr:#x})")
    b_page = (b_addr + 4095) & ~4095
    a_lo, a_hi = (a_addr + 4095) & ~4095, (a_addr + a_size) & ~4095
    assert a_lo <= b_page < a_hi  # B's first whole page was one A had bound
    assert "bind:" not in b_line and b_line.split()[1] == "default", b_line
