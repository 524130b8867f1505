"""Issue 17: a log's cost follows the objects that matter, not the allocation count.

The summarized form of a run (collectors/profile/reduce.py) must give the features and the
per-site evidence of the full form; reading a log must not hold it whole; too many sites is
bad input.
"""

from __future__ import annotations

import json
import math
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from examples.build import examples_bin
from placer.collectors.profile import ingest, reduce
from placer.collectors.profile.reduce import count_allocations, reduce_log
from placer.collectors.shim.log import LogScan
from placer.emulator.load import load_profile
from placer.emulator.model import HostDram, estimate
from placer.errors import InvalidInputError
from placer.placement.features import FEATURES, run_features
from placer.store import Store
from placer.store.models import AllocObject
from placer.store.repository.runs import add_deep_site_stats, objects_of_run
from placer.tiers.specs import load_spec
from tests.test_shim_log import (
    alloc,
    end,
    free,
    header,
    module,
    sample,
    site,
    write_tiny_log,
)

T0 = 5_000  # the header's start (tests.test_shim_log.header)
KiB, MiB = 1 << 10, 1 << 20
SMALL_SITE, BIG_SITE, EXIT_SITE = 0x51, 0xB1, 0xE1
OK = ingest.RunOutcome(status="succeeded", exit_code=0, signal=None, wall_seconds=1.0)


def churn_log(path: Path, n_small: int = 25_000, ring: int = 16, sample_every: int = 50) -> Path:
    """Small buffers cycling through a ring at one site (every 50th sampled once), large
    long-lived sampled buffers at a second, and buffers alive at exit at a third."""
    out = [header(), module(1, "/opt/app", b"\x01" * 20)]
    out += [site(h, [(1, h)]) for h in (SMALL_SITE, BIG_SITE, EXIT_SITE)]
    step = 10_000  # 10 us between small allocations
    seq = 0
    slots: list[tuple[int, int] | None] = [None] * ring
    big_at = {n_small * k // 6: k for k in range(6)}
    period = 10_000_000
    for i in range(n_small):
        t = T0 + i * step
        slot = slots[i % ring]
        if slot is not None:
            out.append(free(slot[0], t - 1, slot[1]))
        addr = 0x10000000 + (i % ring) * 0x20000
        out.append(alloc(seq, t, addr, 64 * KiB, SMALL_SITE))
        if sample_every and i % sample_every == 0:
            iv = (t - T0) // period
            out.append(sample(seq, t, t + 5, iv, 4, 1 + i % 3, i % 2))
        slots[i % ring] = (seq, addr)
        seq += 1
        if i in big_at:  # a 4 MiB buffer alive for 60 ms, sampled each 10 ms
            k = big_at[i]
            bseq, baddr = seq, 0x7000000000 + k * 8 * MiB
            out.append(alloc(bseq, t + 1, baddr, 4 * MiB, BIG_SITE))
            for j in range(1, 6):
                tt = t + j * period
                out.append(sample(bseq, tt, tt + 5, (tt - T0) // period, 16, 4 + j + k, j))
            seq += 1
            out.append(free(bseq, t + 6 * period, baddr))  # the log is not in time order
    for k in range(3):  # alive at exit
        out.append(alloc(seq, T0 + n_small * step + k, 0x9000000 + k * MiB, 128 * KiB, EXIT_SITE))
        seq += 1
    for s in slots:
        if s is not None:
            out.append(free(s[0], T0 + n_small * step + 10, s[1]))
    out.append(end(T0 + n_small * step + 100))
    path.write_bytes(b"".join(out))
    return path


def _ingest(store: Store, log_path: Path, *, summarize: bool) -> int:
    run_id = ingest.begin_run(
        store,
        app_name="churn",
        command=["churn"],
        binary_path="/opt/app",
        build_id="ab" * 20,
        inputs={},
    )
    ingest.ingest_profile(
        store, run_id, ingest.ProfileInputs(logs=[reduce_log(log_path, summarize=summarize)]), OK
    )
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'p.db'}")
    s.upgrade()
    return s


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 0.01 * max(abs(a), abs(b)) + 1e-12


#: The issue's run is 100,000 allocations; the quick case keeps the suite fast.
SIZES = [25_000, pytest.param(100_000, marks=pytest.mark.slow, id="100k")]


@pytest.mark.parametrize("n_small", SIZES)
def test_summarized_form_gives_the_full_forms_features(
    store: Store, tmp_path: Path, n_small: int
) -> None:
    log = churn_log(tmp_path / "shim.100.log", n_small=n_small)
    full = _ingest(store, log, summarize=False)
    summ = _ingest(store, log, summarize=True)
    with store.session() as s:
        full_objs = objects_of_run(s, full)
        summ_objs = objects_of_run(s, summ)
        f_full = run_features(s, full)
        f_summ = run_features(s, summ)
    assert len(full_objs) == n_small + 6 + 3
    # the large and the alive-at-exit buffers one by one, the small ones per window
    kept = [o for o in summ_objs if "aggregate" not in (o.summary or {})]
    aggs = [o for o in summ_objs if "aggregate" in (o.summary or {})]
    assert len(kept) == 9 and 0 < len(aggs) <= reduce.MAX_WINDOWS
    assert sum(o.summary["aggregate"]["objects"] for o in aggs) == n_small
    assert sum(o.summary["aggregate"]["bytes"] for o in aggs) == n_small * 64 * KiB
    # features of the kept objects: the full form's, within 1%
    by_seq = f_full.set_index("object_id")
    seq_of = {o.id: o.alloc_seq for o in full_objs}
    full_by_seq = {seq_of[int(i)]: row for i, row in by_seq.iterrows()}
    summ_seq = {o.id: o.alloc_seq for o in summ_objs}
    compared = 0
    for _, row in f_summ.iterrows():
        seq = summ_seq[int(row["object_id"])]
        if seq >= reduce.AGGREGATE_SEQ:
            continue
        for name in FEATURES:
            assert _close(float(row[name]), float(full_by_seq[seq][name])), (seq, name)
        compared += 1
    assert compared == 9

    # per site: the sampled evidence is conserved (the aggregate's intervals pool its
    # objects' pages) and the most bytes alive at once is what the time-aware DRAM budget
    # holds. (An aggregate row's touched-page estimate is pooled density x its pages, not
    # the sum over its objects: docs/profiling.md.)
    def pages(objs: list[AllocObject]) -> list[int]:
        sm = [o.summary for o in objs if o.site_id == objs[0].site_id]
        return [sum(x[k] for x in sm) for k in ("sampled_pages", "touched_pages", "written_pages")]

    small_full = [o for o in full_objs if o.size_bytes == 64 * KiB]
    assert pages(small_full) == pages(aggs)
    small_peak = max(o.size_bytes for o in aggs)
    assert small_peak == 16 * 64 * KiB  # the ring: 16 buffers of the small site at once


def test_small_runs_keep_every_object(tmp_path: Path) -> None:
    log = churn_log(tmp_path / "shim.100.log", n_small=500)
    got = reduce_log(log)
    assert got.folded is None and len(got.allocs) == 509 and got.allocations == 509


def _tiny_log(path: Path, n: int) -> Path:
    """n ALLOC+FREE pairs of 64-byte objects at one site, written with numpy."""
    return write_tiny_log(path, n, T0, block=max(n // 3, 1))  # several blocks


def test_reading_a_huge_log_holds_the_live_objects_not_the_log(tmp_path: Path) -> None:
    """Peak memory of reading 40k and 300k tiny records: the same, and below the log."""
    peaks = []
    for n in (40_000, 300_000):
        path = _tiny_log(tmp_path / f"shim.{n}.log", n)
        tracemalloc.start()
        got = reduce_log(path, summarize=True)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert got.allocations == n and got.folded is not None
        assert len(got.allocs) <= reduce.MAX_WINDOWS
    size = (tmp_path / "shim.300000.log").stat().st_size  # 29 MB
    assert peaks[1] < 1.5 * peaks[0] + 4 * MiB
    assert peaks[1] < size  # read_log held the whole file and ~1 KB per record


def test_more_sites_than_the_cap_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = [header(), module(1, "/opt/app", b"")]
    for k in range(12):
        out += [site(100 + k, [(1, k)]), alloc(k, T0 + k, 0x10000 + k * 0x10000, 64 * KiB, 100 + k)]
    path = tmp_path / "shim.100.log"
    path.write_bytes(b"".join(out) + end(T0 + 1000))
    monkeypatch.setenv("PLACER_MAX_SITES", "10")
    with pytest.raises(InvalidInputError, match="more than 10 distinct sites"):
        reduce_log(path)
    monkeypatch.setenv("PLACER_MAX_SITES", "12")
    assert count_allocations(path) == 12 and reduce_log(path).allocations == 12


def test_scan_reads_across_block_boundaries(tmp_path: Path) -> None:
    """Records cut by a block boundary are read whole (blocks of the smallest size)."""
    path = _tiny_log(tmp_path / "shim.100.log", 30_000)
    got = LogScan(path, block_bytes=1)  # rounded up to one record's maximum
    seqs = [s for b in got.blocks() for s in b.alloc_seq]
    assert seqs == list(range(30_000)) and not got.truncated and got.end is not None


@pytest.fixture(scope="module")
def churn() -> Path:
    try:
        return examples_bin("churn")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"cannot build examples/bin/churn: {exc}")


def test_profile_stores_sites_not_allocations(run_placer, churn: Path) -> None:
    """50,000 allocations through 8 sites, 64 alive: a few rows per site, every allocation
    counted, and objects/recommend work on them."""
    r = run_placer("profile", "--no-perf", "--", str(churn), "-n", "50000", "-S", "8")
    assert r.returncode == 0, r.stderr
    assert "from 50000 allocations" in r.stderr
    run_id = int(r.stderr.split("placer: run ")[1].split()[0])
    doc = json.loads(
        run_placer("objects", str(run_id), "--format", "json", "--limit", "0", check=True).stdout
    )
    objs = doc["objects"]
    assert 8 <= len(objs) <= 8 * reduce.MAX_WINDOWS
    assert len({o["site"]["hash"] for o in objs}) == 8
    assert max(o["size_bytes"] for o in objs) <= 64 * 64 * KiB  # never more than was alive
    rec = run_placer("recommend", str(run_id), "--dram-budget", "50%")
    assert rec.returncode == 0, rec.stderr


def test_too_many_sites_one_line_exit_2(run_placer, churn: Path) -> None:
    r = run_placer(
        "profile",
        "--no-perf",
        "--",
        str(churn),
        "-n",
        "100",
        "-S",
        "20",
        env={"PLACER_MAX_SITES": "10"},
    )
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert "more than 10 distinct sites" in last and "Traceback" not in r.stderr


@pytest.mark.parametrize("n_small", SIZES)
def test_emulator_prices_the_summarized_form_as_the_full_form(
    store: Store, tmp_path: Path, n_small: int
) -> None:
    """All objects in the slow tier, with DHAT traffic per site: the same runtime and the
    same penalty per site (within 1%). The small objects carry no page-poison samples, as
    the shim writes them (it samples objects from 1 MiB on)."""
    log = churn_log(tmp_path / "shim.100.log", n_small=n_small, sample_every=0)
    runs = (_ingest(store, log, summarize=False), _ingest(store, log, summarize=True))
    stat = {
        "blocks": 100,
        "total_bytes": 10 * MiB,
        "bytes_read": 400 * MiB,
        "bytes_written": 100 * MiB,
        "total_lifetime_ns": 10**9,
        "details": {},
    }
    with store.session() as s:
        for run in runs:
            add_deep_site_stats(s, run, {o.site_id: stat for o in objects_of_run(s, run)})
    host = HostDram(latency_ns=100.0, read_gbps=10.0, write_gbps=10.0, llc_bytes=32 * MiB)
    got = []
    with store.session() as s:
        for run in runs:
            prof = load_profile(s, run)
            est = estimate(
                prof,
                [o.object_id for o in prof.objects],
                load_spec("optane"),
                load_spec("dram"),
                host,
            )
            per_site: dict[int, float] = {}
            for o in prof.objects:
                per_site[o.site_id] = per_site.get(o.site_id, 0.0) + est.penalties[o.object_id]
            got.append((est.runtime_seconds, per_site))
    (full_rt, full_sites), (summ_rt, summ_sites) = got
    assert full_rt > 1.5 * 0.25  # the slow tier costs something here
    assert _close(full_rt, summ_rt)
    assert sorted(full_sites) == sorted(summ_sites)
    for site_id, pen in full_sites.items():
        assert abs(pen - summ_sites[site_id]) <= 0.01 * full_rt


def test_churn_paces_its_allocations_and_refuses_a_negative_pace(churn: Path) -> None:
    """``-t`` (the daemon growth benchmark's steady job) spreads the allocations over the
    given seconds; the count and checksum are those of the unpaced run."""
    plain = subprocess.run([str(churn), "-n", "3000"], capture_output=True, text=True, check=True)
    paced = subprocess.run(
        [str(churn), "-n", "3000", "-t", "0.3"], capture_output=True, text=True, check=True
    )
    fields = {kv.split("=")[0]: kv.split("=")[1] for kv in paced.stdout.split()[1:]}
    plain_fields = {kv.split("=")[0]: kv.split("=")[1] for kv in plain.stdout.split()[1:]}
    assert fields["allocations"] == "3000" and fields["checksum"] == plain_fields["checksum"]
    # it sleeps until each block of 1024 is due: the last (allocation 2048) at 0.3 * 2048/3000
    # s; a lower bound only, which a slow host cannot break
    assert float(fields["time_s"]) >= 0.3 * 2048 / 3000
    bad = subprocess.run([str(churn), "-t", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage: churn" in bad.stderr
