"""The slow-tier emulator's model: from per-object traffic to a runtime under a placement.

The formula, each constant's source and what the model leaves out are in
``docs/emulator.md``; the names below follow it. In short, for each object ``o``:

1. traffic: bytes read ``R`` and written ``W`` (DHAT, exact), size ``S``, lifetime ``L``;
2. pattern: random share ``p`` of the accesses (page-poison spread vs passes, else the rate
   between one dependent word per latency and the fastest random rate of this host);
3. cache: line accesses ``R·(p/w + (1-p)/64)``; beyond compulsory misses, random lines hit
   the LLC with probability ``min(1, C_eff/S)`` and streams hit only if ``S <= C_eff``;
4. DRAM time of the misses with this host's DRAM constants, capped by ``L`` for the object
   and by the run's wall time for all objects together (no program spends more time
   waiting for memory than it ran: the caps stand for memory-level parallelism);
5. slow-tier time: each component times the spec's ratio to the reference DRAM (latency for
   random reads, read/write bandwidth for streams and writebacks, random writebacks
   amplified by the tier's internal access granularity, writes by saturation when the
   program runs more threads than the tier's write saturation point);
6. penalty = slow-tier time - DRAM time; runtime = base + sum of penalties of slow objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from placer.tiers.specs import TierSpec

LINE = 64  # bytes per cache line
WORD = 8  # bytes per random access (w): 64-bit loads/stores, see docs/emulator.md
PAGE = 4096
LLC_SHARE = 0.5  # C_eff = LLC_SHARE x LLC: the rest is held by other data (assumption)
# Most demand misses one core keeps in flight (memory-level parallelism ceiling): a generous
# upper bound, twice the 10-12 L1D line fill buffers of the Skylake/Cascade Lake cores the
# Optane numbers were measured on (docs/emulator.md, step 1). Random accesses cannot move
# more than threads x MLP_MAX words per DRAM latency; faster traffic is streaming.
MLP_MAX = 24


@dataclass(frozen=True)
class HostDram:
    """This host's DRAM as programs see it (measured by the microbenchmarks, or reference)."""

    latency_ns: float
    read_gbps: float
    write_gbps: float
    llc_bytes: int
    source: str = "reference"

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ns": self.latency_ns,
            "read_gbps": self.read_gbps,
            "write_gbps": self.write_gbps,
            "llc_bytes": self.llc_bytes,
            "source": self.source,
        }


@dataclass
class ObjectTraffic:
    """What the emulator knows of one object (or chunk) of a run."""

    object_id: int
    site_id: int
    site_hash: str
    name: str
    chunk_index: int
    size_bytes: int
    bytes_read: float
    bytes_written: float
    lifetime_s: float
    density_series: list[float | None] = field(default_factory=list)
    sample_period_s: float = 0.0
    traffic_source: str = "dhat"  # dhat | sampled-lower-bound | none
    sampled_pages: int = 0  # pages the sampler protected over the object's life
    # The whole allocation a chunk belongs to (0: the object is the allocation). A chunk of
    # a large array competes for the cache with the rest of it: cache terms use this size.
    alloc_bytes: int = 0

    @property
    def cache_size(self) -> int:
        """The size that decides whether the object's accesses hit the cache."""
        return max(self.alloc_bytes, self.size_bytes, 1)


@dataclass
class RunProfile:
    """A profiled run as the emulator needs it: base time, threads, objects' traffic."""

    run_id: int
    app: str
    build_id: str
    wall_seconds: float
    threads: int
    objects: list[ObjectTraffic]
    deep_run_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def footprint(self) -> int:
        return sum(o.size_bytes for o in self.objects)


@dataclass
class ObjectCost:
    """DRAM-time components of one object and its slow-tier penalty (seconds)."""

    object_id: int
    random_share: float
    pattern_evidence: str
    t_read_random: float
    t_read_seq: float
    t_write_seq: float
    t_write_random: float
    penalty_s: float = 0.0

    @property
    def dram_time(self) -> float:
        return self.t_read_random + self.t_read_seq + self.t_write_seq + self.t_write_random


@dataclass
class Estimate:
    """Emulated runtime of a run under a placement, with per-object penalties."""

    base_seconds: float
    runtime_seconds: float
    slow_objects: list[int]
    penalties: dict[int, float]  # every object's penalty if it alone were slow
    costs: dict[int, ObjectCost]
    ratios: dict[str, float]

    @property
    def slowdown(self) -> float:
        return self.runtime_seconds / self.base_seconds if self.base_seconds else math.nan


def ratios(spec: TierSpec, ref: TierSpec, threads: int) -> dict[str, float]:
    """Slow-tier cost per unit of DRAM time, per access kind (docs/emulator.md, step 5)."""
    sat = spec.write_saturation_threads
    saturation = max(1.0, threads / sat) if sat > 0 else 1.0
    amplification = max(1.0, spec.access_granularity_bytes / max(ref.access_granularity_bytes, 1))
    write = ref.write_bandwidth_gbps / spec.write_bandwidth_gbps
    return {
        "latency": spec.read_latency_random_ns / ref.read_latency_random_ns,
        "read_bandwidth": ref.read_bandwidth_gbps / spec.read_bandwidth_gbps,
        "write_bandwidth": write * saturation,
        "write_random": write * saturation * amplification,
        "saturation": saturation,
        "amplification": amplification,
    }


def random_ceiling(size: float, host: HostDram, threads: int) -> float:
    """Fastest byte rate random word accesses to an object of ``size`` can reach here.

    ``threads x MLP_MAX`` misses in flight, one word each per DRAM latency; accesses that
    hit the cache (``min(1, C_eff / size)`` of them) are free. Capped by the streaming
    bandwidth (a cache-resident object can be random at any rate: the rate says nothing).
    """
    hit = min(1.0, host.llc_bytes * LLC_SHARE / max(size, 1.0))
    stream = host.read_gbps * 1e9
    if hit >= 1.0:
        return stream
    misses = max(threads, 1) * MLP_MAX * WORD / (host.latency_ns * 1e-9)
    return min(stream, misses / (1.0 - hit))


def random_share(obj: ObjectTraffic, host: HostDram, threads: int = 1) -> tuple[float, str]:
    """Share of accesses that are random (0 = streaming, 1 = random), and the evidence used.

    Page-poison evidence: over the intervals an object is touched, a stream making ``pi``
    passes per interval touches about ``min(1, pi)`` of the sampled pages, while random
    accesses of the same volume touch ``1 - exp(-pi * PAGE / WORD)`` of them. The observed
    touched share between the two gives the mix (beyond two standard errors of sampling
    noise; random writes are the costliest mistake). When ``pi >= 1`` both predict 1 and the
    rate evidence decides: the bytes per second the object served over its life, on a log
    scale between one dependent random word per DRAM latency (all random) and the fastest
    rate random accesses could reach on this host with ``threads`` threads
    (:func:`random_ceiling`; at or above it the traffic cannot be random: a stream).
    """
    volume = obj.bytes_read + obj.bytes_written
    if volume <= 0 or obj.size_bytes <= 0:
        return 0.0, "no traffic"
    active = [d for d in obj.density_series if d is not None and d > 0]
    if active and obj.sample_period_s > 0:
        passes = volume / obj.size_bytes / len(active)
        d_seq = min(1.0, passes)
        d_rand = 1.0 - math.exp(-passes * PAGE / WORD)
        observed = sum(active) / len(active)
        if d_rand - d_seq > 0.15:
            # sampling noise: a stream is assumed unless the excess over its prediction
            # is beyond two standard errors of the sampled share
            n = max(obj.sampled_pages, len(active))
            noise = 2.0 * math.sqrt(max(observed * (1 - observed), 0.0) / n)
            p = (observed - d_seq - noise) / (d_rand - d_seq)
            return min(1.0, max(0.0, p)), (
                f"page-poison: touched {observed:.2f} vs stream {d_seq:.2f} / random "
                f"{d_rand:.2f} at {passes:.2f} passes per interval"
            )
    if obj.lifetime_s <= 0:
        return 0.5, "no lifetime: even mix assumed"
    rate = volume / obj.lifetime_s
    lo = WORD / (host.latency_ns * 1e-9)
    hi = random_ceiling(obj.cache_size, host, threads)
    if hi <= lo:
        return 0.5, "host constants inconsistent: even mix assumed"
    p_seq = math.log(max(rate, lo) / lo) / math.log(hi / lo)
    p_seq = min(1.0, max(0.0, p_seq))
    return 1.0 - p_seq, (
        f"rate: {rate / 1e9:.3f} GB/s between {lo / 1e9:.3f} (dependent words) and "
        f"{hi / 1e9:.3f} (random ceiling)"
    )


def _misses(nbytes: float, gran: float, compulsory: float, hit: float) -> float:
    """Lines moved to/from memory: compulsory lines plus the capacity misses beyond them."""
    lines = nbytes / gran
    first = min(lines, compulsory)
    return first + (lines - first) * (1.0 - hit)


def object_cost(obj: ObjectTraffic, host: HostDram, threads: int = 1) -> ObjectCost:
    """Step 2-4 for one object: DRAM time of its memory traffic, before the caps."""
    p, evidence = random_share(obj, host, threads)
    c_eff = host.llc_bytes * LLC_SHARE
    size = max(obj.size_bytes, 1)
    hit_rand = min(1.0, c_eff / obj.cache_size)
    hit_seq = 1.0 if obj.cache_size <= c_eff else 0.0
    # The first write of each byte is taken as a streaming initialization (fill loops,
    # memset, calloc); only the writes beyond one pass take the object's random share.
    w_init = min(obj.bytes_written, float(size))
    w_rest = obj.bytes_written - w_init
    parts = {}
    for kind, share, gran, hit in (("rand", p, WORD, hit_rand), ("seq", 1 - p, LINE, hit_seq)):
        comp = share * size / LINE
        writes = share * w_rest + (w_init if kind == "seq" else 0.0)
        parts[kind] = (
            _misses(share * obj.bytes_read, gran, comp, hit),
            _misses(writes, gran, size / LINE if kind == "seq" else comp, hit),
        )
    lat = host.latency_ns * 1e-9
    return ObjectCost(
        object_id=obj.object_id,
        random_share=p,
        pattern_evidence=evidence,
        t_read_random=parts["rand"][0] * lat,
        t_read_seq=parts["seq"][0] * LINE / (host.read_gbps * 1e9),
        t_write_seq=parts["seq"][1] * LINE / (host.write_gbps * 1e9),
        t_write_random=parts["rand"][1] * LINE / (host.write_gbps * 1e9),
    )


def _scale(cost: ObjectCost, f: float) -> None:
    cost.t_read_random *= f
    cost.t_read_seq *= f
    cost.t_write_seq *= f
    cost.t_write_random *= f


def costs(
    profile: RunProfile, spec: TierSpec, ref: TierSpec, host: HostDram
) -> tuple[dict[int, ObjectCost], dict[str, float]]:
    """Every object's capped DRAM time and its penalty alone in ``spec``'s tier."""
    out = {o.object_id: object_cost(o, host, profile.threads) for o in profile.objects}
    for o in profile.objects:  # cap 1: an object's memory time fits in its lifetime
        c = out[o.object_id]
        if o.lifetime_s <= 0 or c.dram_time <= o.lifetime_s:
            continue
        # Streams and writebacks are priced at the bandwidth this host achieves, so they
        # are taken as they are; the random-read stall time (serial, MLP 1) is what the
        # lifetime bounds: it shrinks to the time left, i.e. to the implied MLP.
        t_bw = c.t_read_seq + c.t_write_seq + c.t_write_random
        if t_bw >= o.lifetime_s:
            c.t_read_random = 0.0
            _scale(c, o.lifetime_s / t_bw)
        else:
            c.t_read_random = o.lifetime_s - t_bw
    total = sum(c.dram_time for c in out.values())
    if profile.wall_seconds > 0 and total > profile.wall_seconds:  # cap 2: all fit the run
        for c in out.values():
            _scale(c, profile.wall_seconds / total)
    r = ratios(spec, ref, profile.threads)
    for c in out.values():
        slow = (
            c.t_read_random * r["latency"]
            + c.t_read_seq * r["read_bandwidth"]
            + c.t_write_seq * r["write_bandwidth"]
            + c.t_write_random * r["write_random"]
        )
        c.penalty_s = max(0.0, slow - c.dram_time)
    return out, r


def estimate(
    profile: RunProfile, slow: Iterable[int], spec: TierSpec, ref: TierSpec, host: HostDram
) -> Estimate:
    """Runtime of ``profile`` with the objects ``slow`` (ids) in the slow tier."""
    cs, r = costs(profile, spec, ref, host)
    chosen = sorted(set(slow))
    unknown = [i for i in chosen if i not in cs]
    if unknown:
        raise KeyError(unknown[0])
    runtime = profile.wall_seconds + sum(cs[i].penalty_s for i in chosen)
    return Estimate(
        base_seconds=profile.wall_seconds,
        runtime_seconds=runtime,
        slow_objects=chosen,
        penalties={i: c.penalty_s for i, c in cs.items()},
        costs=cs,
        ratios=r,
    )
