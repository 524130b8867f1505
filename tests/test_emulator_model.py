"""The emulator's model and tier specs: the properties docs/emulator.md promises."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from placer.emulator.model import (
    HostDram,
    ObjectTraffic,
    RunProfile,
    costs,
    estimate,
    random_ceiling,
    random_share,
    ratios,
)
from placer.errors import InvalidInputError
from placer.tiers.specs import REQUIRED, SHIPPED, load_spec

MIB = 1024 * 1024
HOST = HostDram(latency_ns=100.0, read_gbps=10.0, write_gbps=10.0, llc_bytes=32 * MIB)


def obj(
    i: int,
    size: int,
    r: float,
    w: float,
    *,
    series: list[float | None] | None = None,
    lifetime: float = 2.0,
) -> ObjectTraffic:
    return ObjectTraffic(
        object_id=i,
        site_id=i,
        site_hash=f"{i:016x}",
        name=f"o{i}",
        chunk_index=0,
        size_bytes=size,
        bytes_read=r,
        bytes_written=w,
        lifetime_s=lifetime,
        density_series=series or [],
        sample_period_s=0.01,
    )


def profile(*objs: ObjectTraffic, wall: float = 2.0, threads: int = 2) -> RunProfile:
    return RunProfile(
        run_id=1, app="t", build_id="b", wall_seconds=wall, threads=threads, objects=list(objs)
    )


def test_shipped_specs_carry_a_source_for_every_constant() -> None:
    for name in SHIPPED:
        spec = load_spec(name)
        assert set(spec.sources) == set(REQUIRED)
        assert all(len(src) > 10 for src in spec.sources.values())
    optane = load_spec("optane")
    assert optane.read_latency_random_ns == 305.0
    assert (optane.read_bandwidth_gbps, optane.write_bandwidth_gbps) == (39.4, 13.9)
    assert optane.access_granularity_bytes == 256
    assert optane.write_saturation_threads == 4


def test_spec_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown tier 'hbm'"):
        load_spec("hbm")
    bad = tmp_path / "x.toml"
    text = load_spec("cxl").path  # shipped; build a spec file with one source missing
    assert text
    bad.write_text('[tier]\nname = "x"\n[constants.read_latency_random_ns]\nvalue = 200\n')
    with pytest.raises(InvalidInputError, match="has no source"):
        load_spec(str(bad))


def test_optane_ratios_follow_the_published_numbers() -> None:
    r = ratios(load_spec("optane"), load_spec("dram"), threads=2)
    assert r["latency"] == pytest.approx(3.0, rel=0.01)  # 305 ns ~ 3x DRAM
    assert r["read_bandwidth"] == pytest.approx(128 / 39.4)
    assert r["write_bandwidth"] == pytest.approx(128 / 13.9)
    assert r["write_random"] == pytest.approx(4 * 128 / 13.9)  # 256 B internal line
    # writes saturate at 4 threads: 8 writer threads double the write cost
    r8 = ratios(load_spec("optane"), load_spec("dram"), threads=8)
    assert r8["write_bandwidth"] == pytest.approx(2 * r["write_bandwidth"])
    assert r8["read_bandwidth"] == r["read_bandwidth"]


def test_page_poison_spread_separates_random_from_streaming() -> None:
    size = 256 * MIB
    # 200 intervals: a stream at 0.1 pass/interval touches ~10% of sampled pages;
    # random accesses of the same volume touch all of them
    stream = obj(1, size, r=20 * size, w=0, series=[0.1] * 200)
    rand = obj(2, size, r=20 * size, w=0, series=[1.0] * 200)
    assert random_share(stream, HOST)[0] == pytest.approx(0.0, abs=0.05)
    assert random_share(rand, HOST)[0] == pytest.approx(1.0, abs=0.05)


def test_random_share_moves_smoothly_as_the_samples_stop_discriminating() -> None:
    """Near one pass per interval the page-poison samples lose their power to tell a stream
    from random accesses; the rate rule takes over gradually, never in one step (a cut-off
    made one cc -u 16 array read as a stream in one profile, 76% random in the next)."""
    size = 8 * MIB
    # a slow (compute-bound) sweep: the rate alone would call it mostly random
    shares = []
    for step in range(61):
        passes = 0.6 + step * 0.01
        o = obj(1, size, r=passes * 5 * size, w=0, series=[0.6] * 5, lifetime=0.13)
        o = dataclasses.replace(o, sampled_pages=40)
        shares.append(random_share(o, HOST)[0])
    assert shares[0] == 0.0  # samples decide: a stream
    assert shares[-1] > 0.5  # blind samples (1.2 passes): the rate decides
    assert max(abs(b - a) for a, b in zip(shares[:-1], shares[1:], strict=True)) < 0.1


def test_rate_above_the_random_ceiling_is_a_stream() -> None:
    size = 128 * MIB
    # 16 write passes in 0.4 s: 5.4 GB/s, half this host's bandwidth but far above what
    # random words can reach (2 threads x 24 misses x 8 B / 100 ns / (1 - hit) ~ 4.4 GB/s)
    stream = obj(1, size, r=0, w=17 * size, series=[1.0] * 10, lifetime=0.4)
    assert random_ceiling(size, HOST, 2) < 17 * size / 0.4 < HOST.write_gbps * 1e9
    assert random_share(stream, HOST, threads=2)[0] == 0.0
    # an all-slow seqwrite stays a write stream: write-bandwidth ratio, no random writes
    c = costs(profile(stream, wall=1.0), load_spec("optane"), load_spec("dram"), HOST)[0][1]
    assert c.t_write_random == 0.0 and c.t_write_seq > 0
    # one dependent word per latency is random; a cache-resident object's rate proves nothing
    chase = obj(2, size, r=0.08e9, w=0, lifetime=1.0)  # no samples: the rate decides
    assert random_share(chase, HOST, threads=2)[0] == pytest.approx(1.0)
    assert random_ceiling(MIB, HOST, 2) == HOST.read_gbps * 1e9


def test_calibration_reference_charges_every_phase() -> None:
    from placer.experiments.calibration import phases

    r = ratios(load_spec("optane"), load_spec("dram"), threads=2)
    host = HostDram(latency_ns=200.0, read_gbps=20.0, write_gbps=20.0, llc_bytes=32 * MIB)
    chase = {"bytes": 128 * MIB, "accesses": 2e6, "time_s": 0.4, "fill_s": 0.05, "setup_s": 0.05}
    ph = {p.name: p for p in phases("chase", chase, r, host)}
    assert ph["chase"].seconds == 0.4 and ph["chase"].ratio == r["latency"]
    # fill: its bandwidth time (its measured time is mostly page faults)
    assert ph["fill"].seconds == pytest.approx(128 * MIB / 20e9)
    # the shuffle: every node's line dirtied at random once, the rest random reads
    wb = ph["shuffle: random writebacks"]
    assert wb.ratio == r["write_random"] and wb.seconds == pytest.approx(128 * MIB / 20e9)
    shuffle = sum(p.seconds for n, p in ph.items() if n.startswith("shuffle"))
    assert shuffle == pytest.approx(0.05)
    ru = {"bytes": 128 * MIB, "accesses": 8e6, "time_s": 0.2, "fill_s": 0.05, "setup_s": 0}
    ph = {p.name: p for p in phases("randupdate", ru, r, host)}
    assert ph["updates: random writebacks"].seconds == pytest.approx(8e6 * 64 / 20e9)
    assert ph["updates: random reads"].seconds == pytest.approx(0.2 - 8e6 * 64 / 20e9)


def test_small_hot_object_costs_little_beyond_compulsory_misses() -> None:
    small = obj(1, 1 * MIB, r=2000 * MIB, w=0, series=[1.0] * 200)
    big = obj(2, 512 * MIB, r=2000 * MIB, w=0, series=[1.0] * 200)
    cs, _ = costs(profile(small, big, wall=100.0), load_spec("optane"), load_spec("dram"), HOST)
    assert cs[1].penalty_s < 0.01 * cs[2].penalty_s


def test_penalty_is_capped_by_lifetime_and_run_time() -> None:
    # far more random misses than 0.5 s of lifetime can hold at 100 ns each: capped
    o = obj(1, 512 * MIB, r=8_000 * MIB, w=0, series=[1.0] * 50, lifetime=0.5)
    cs, r = costs(profile(o, wall=2.0), load_spec("optane"), load_spec("dram"), HOST)
    assert cs[1].dram_time == pytest.approx(0.5)
    assert cs[1].penalty_s == pytest.approx(0.5 * (r["latency"] - 1), rel=1e-6)


def test_writes_cost_more_than_reads_on_optane_not_on_cxl() -> None:
    size = 256 * MIB
    reader = obj(1, size, r=10 * size, w=0, series=[0.05] * 200)
    writer = obj(2, size, r=0, w=10 * size, series=[0.05] * 200)
    p = profile(reader, writer, wall=100.0)
    opt, _ = costs(p, load_spec("optane"), load_spec("dram"), HOST)
    cxl, _ = costs(p, load_spec("cxl"), load_spec("dram"), HOST)
    assert opt[2].penalty_s > 2 * opt[1].penalty_s
    assert cxl[2].penalty_s == pytest.approx(cxl[1].penalty_s, rel=0.01)


def test_estimate_adds_penalties_of_the_slow_objects_only() -> None:
    a = obj(1, 256 * MIB, r=2560 * MIB, w=0, series=[1.0] * 200)
    b = obj(2, 256 * MIB, r=2560 * MIB, w=0, series=[0.05] * 200)
    p = profile(a, b, wall=10.0)
    spec, ref = load_spec("optane"), load_spec("dram")
    none = estimate(p, [], spec, ref, HOST)
    one = estimate(p, [1], spec, ref, HOST)
    both = estimate(p, [1, 2], spec, ref, HOST)
    assert none.runtime_seconds == 10.0
    assert one.runtime_seconds == pytest.approx(10.0 + one.penalties[1])
    assert both.runtime_seconds == pytest.approx(10.0 + one.penalties[1] + one.penalties[2])
    # random reads of the same volume cost more than streaming them
    assert one.penalties[1] > one.penalties[2] > 0


def test_sensitivity_table_moves_with_the_constants() -> None:
    from placer.experiments.sensitivity import KNOBS, table

    rand = obj(1, 256 * MIB, r=2560 * MIB, w=0, series=[1.0] * 200)
    stream = obj(2, 256 * MIB, r=2560 * MIB, w=0, series=[0.05] * 200)
    rows = table(
        [profile(rand, stream, wall=100.0)], load_spec("optane"), load_spec("dram"), HOST, top=1
    )
    assert len(rows) == 2 * len(KNOBS)
    by = {(r["constant"], r["factor"]): r for r in rows}
    # a slower slow tier (latency x1.3) makes the all-slow run slower, a faster one faster
    assert by[("slow read latency", 1.3)]["all_slow_change"] > 0
    assert by[("slow read latency", 0.7)]["all_slow_change"] < 0
    # more slow-tier bandwidth makes streaming cheaper
    assert by[("slow read bandwidth", 1.3)]["all_slow_change"] < 0
    assert all(0.0 <= r["top_kept"] <= 1.0 for r in rows)


def test_chunks_of_a_big_array_cost_what_the_array_costs() -> None:
    """A 128 MiB array streamed 8 times costs the same in the slow tier whether it is one
    object or 16 chunks of 8 MiB: a chunk smaller than the cache is not cache-resident
    when the rest of its array evicts it on every pass."""
    import dataclasses

    spec, ref = load_spec("optane"), load_spec("dram")
    size, passes = 128 * MIB, 8
    whole = obj(1, size, r=passes * size, w=float(size))
    chunks = [
        dataclasses.replace(
            obj(10 + c, size // 16, r=passes * size / 16, w=size / 16),
            site_id=1,
            chunk_index=c,
            alloc_bytes=size,
        )
        for c in range(16)
    ]
    one, _ = costs(profile(whole), spec, ref, HOST)
    split, _ = costs(profile(*chunks), spec, ref, HOST)
    total = sum(c.penalty_s for c in split.values())
    assert one[1].penalty_s > 0
    assert total == pytest.approx(one[1].penalty_s, rel=0.05)


def test_an_object_that_is_its_own_allocation_is_emulated_as_before() -> None:
    """Pooling pattern evidence per allocation leaves unsplit objects bit for bit as they
    were: the numbers below are what the emulator gave before pooling (2026-11-30)."""
    import dataclasses

    objs = [
        obj(1, 256 * MIB, r=20 * 256 * MIB, w=0, series=[0.1] * 200),
        obj(2, 256 * MIB, r=20 * 256 * MIB, w=256 * MIB, series=[1.0] * 200),
        obj(3, 512 * MIB, r=8000 * MIB, w=0, series=[1.0] * 50, lifetime=0.5),
        obj(4, 128 * MIB, r=0.3e9, w=1e8, lifetime=1.0),
        dataclasses.replace(
            obj(5, 4 * MIB, r=400 * MIB, w=0, series=[0.5, None, 0.2] * 20),
            sampled_pages=90,
        ),
    ]
    before = {
        1: (0.0, 0.8960057900321541),
        2: (1.0, 3.090931725038826),
        3: (1.0, 0.7418051973721883),
        4: (0.598115991217171, 1.5319307497966241),
        5: (0.8004015816819634, 0.007922015636405669),
    }
    spec, ref = load_spec("optane"), load_spec("dram")
    # an allocation of one object (alloc_id set, no other chunk) is the same as none
    for variant in (objs, [dataclasses.replace(o, alloc_id=o.object_id) for o in objs]):
        cs, _ = costs(profile(*variant, wall=3.0), spec, ref, HOST)
        assert {i: (c.random_share, c.penalty_s) for i, c in cs.items()} == before
        assert all("pooled" not in c.pattern_evidence for c in cs.values())


def _split_array(
    touch: float, *, chunks: int = 16, intervals: int = 200, seed: int = 1
) -> tuple[ObjectTraffic, list[ObjectTraffic]]:
    """A 128 MiB array read 20 times (one write pass) over 2 s, whole and in ``chunks``
    chunks. The sampler protects one page per chunk per interval; each is touched with
    probability ``touch`` (0.1: a stream at 0.1 passes per interval; 1.0: random accesses
    of the same volume touch every sampled page). The whole array sees all those pages."""
    import dataclasses
    import random

    rng = random.Random(seed)
    size, passes = 128 * MIB, 20
    cols = [[1.0 if rng.random() < touch else 0.0 for _ in range(intervals)] for _ in range(chunks)]
    whole = dataclasses.replace(
        obj(1, size, r=passes * size, w=float(size), lifetime=2.0),
        density_series=[sum(c[i] for c in cols) / chunks for i in range(intervals)],
        sampled_pages=chunks * intervals,
    )
    parts = [
        dataclasses.replace(
            obj(10 + c, size // chunks, r=passes * size / chunks, w=size / chunks, lifetime=2.0),
            site_id=1,
            chunk_index=c,
            density_series=list(cols[c]),
            sampled_pages=intervals,
            alloc_bytes=size,
            alloc_id=7,
        )
        for c in range(chunks)
    ]
    return whole, parts


def test_a_split_stream_is_emulated_like_the_unsplit_array() -> None:
    """seqread-like: each 8 MiB chunk alone has ~20 sparse samples, all touched when any is
    (one page per interval), which looks like one pass per interval and leaves the rate to
    decide: a chunk's 1/16 of the traffic looked random (3.0x all-slow vs 1.18x unsplit
    before pooling). Pooled per allocation, the chunks are the stream the array is."""
    spec, ref = load_spec("optane"), load_spec("dram")
    whole, parts = _split_array(0.1)
    one = estimate(profile(whole, wall=4.0), [1], spec, ref, HOST)
    split = estimate(profile(*parts, wall=4.0), [o.object_id for o in parts], spec, ref, HOST)
    assert one.costs[1].random_share == pytest.approx(0.0, abs=0.05)
    assert split.slowdown == pytest.approx(one.slowdown, rel=0.02)
    shares = {c.random_share for c in split.costs.values()}
    assert len(shares) == 1 and shares.pop() == pytest.approx(0.0, abs=0.05)
    assert all("pooled over 16 chunks" in c.pattern_evidence for c in split.costs.values())


def test_a_split_random_array_stays_random_and_shares_its_lifetime_cap() -> None:
    spec, ref = load_spec("optane"), load_spec("dram")
    whole, parts = _split_array(1.0)
    one = estimate(profile(whole, wall=4.0), [1], spec, ref, HOST)
    split = estimate(profile(*parts, wall=4.0), [o.object_id for o in parts], spec, ref, HOST)
    assert one.costs[1].random_share == pytest.approx(1.0)
    assert all(c.random_share == pytest.approx(1.0) for c in split.costs.values())
    # the array's random reads fill its 2 s life; its chunks together cannot exceed that
    assert sum(c.dram_time for c in split.costs.values()) == pytest.approx(2.0)
    assert split.slowdown == pytest.approx(one.slowdown, rel=0.02)


def test_chunks_sharing_their_allocations_samples_count_them_once() -> None:
    """Today's shim samples an allocation and the ingest copies its counts to each chunk
    (``poison_scope: object``): the pooled evidence is the allocation's, not 16x it."""
    import dataclasses

    from placer.emulator.model import pooled_evidence

    whole, parts = _split_array(0.1)
    copies = [
        dataclasses.replace(
            p,
            density_series=whole.density_series,
            sampled_pages=whole.sampled_pages,
            samples_of_allocation=True,
        )
        for p in parts
    ]
    assert pooled_evidence(copies).sampled_pages == whole.sampled_pages
    cs, _ = costs(profile(*copies, wall=4.0), load_spec("optane"), load_spec("dram"), HOST)
    assert cs[10].random_share == random_share(whole, HOST)[0]


def test_a_thinly_sampled_allocation_borrows_its_sites_pattern() -> None:
    import dataclasses

    spec, ref = load_spec("optane"), load_spec("dram")
    _, sampled = _split_array(0.1)
    unsampled = [
        dataclasses.replace(
            p, object_id=p.object_id + 100, alloc_id=8, density_series=[], sampled_pages=0
        )
        for p in sampled
    ]
    cs, _ = costs(profile(*sampled, *unsampled, wall=8.0), spec, ref, HOST)
    assert cs[110].random_share == pytest.approx(cs[10].random_share, abs=0.05)
    assert "chunks of the site" in cs[110].pattern_evidence
    # alone, the same chunks fall back to their rate (1/16 of the traffic each was random)
    alone, _ = costs(profile(*unsampled, wall=8.0), spec, ref, HOST)
    assert "rate" in alone[110].pattern_evidence
