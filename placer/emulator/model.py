"""The slow-tier emulator's model: from per-object traffic to a runtime under a placement.

The formula, each constant's source and what the model leaves out are in
``docs/emulator.md``; the names below follow it. In short, for each object ``o``:

1. traffic: bytes read ``R`` and written ``W`` (DHAT, exact), size ``S``, lifetime ``L``;
2. pattern: random share ``p`` of the accesses: the page-poison spread vs passes bounds it,
   the rate between one dependent word per latency and the fastest random rate of this host
   picks the point within the bounds;
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
from dataclasses import asdict, dataclass, field
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
    #: the stored host model these numbers are (None: the reference spec, or given by hand)
    host_model_id: int | None = None
    host_model_fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ns": self.latency_ns,
            "read_gbps": self.read_gbps,
            "write_gbps": self.write_gbps,
            "llc_bytes": self.llc_bytes,
            "source": self.source,
            "host_model": self.host_model_id,
            "host_model_fingerprint": self.host_model_fingerprint,
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
    # The allocation a chunk belongs to (its ``alloc_seq``; None: the object is the whole
    # allocation). Chunks of one allocation share one access pattern (docs/emulator.md).
    alloc_id: int | None = None
    # The page-poison samples are the whole allocation's, copied to each chunk (the shim
    # samples allocations; the ingest marks such chunks ``poison_scope: object``).
    samples_of_allocation: bool = False
    # A summarized run's aggregate row (docs/profiling.md) stands for ``multiplicity``
    # objects of ``instance_bytes`` each (0: ``size_bytes``) living ``lifetime_s`` each:
    # priced as that many objects sharing its traffic, as the full form prices them.
    multiplicity: int = 1
    instance_bytes: int = 0

    @property
    def cache_size(self) -> int:
        """The size that decides whether the object's accesses hit the cache."""
        return max(self.alloc_bytes, self.instance_bytes or self.size_bytes, 1)


@dataclass
class RunProfile:
    """A profiled run as the emulator needs it: base time, threads, objects' traffic.

    ``wall_seconds`` is the all-DRAM base time in the profile's ``time_base``.
    """

    run_id: int
    app: str
    build_id: str
    wall_seconds: float
    threads: int
    objects: list[ObjectTraffic]
    deep_run_id: int | None = None
    notes: list[str] = field(default_factory=list)
    #: what ``wall_seconds`` and the lifetimes count: ``cpu`` (the program's CPU time, all
    #: threads: what other load on the host does not stretch) or ``wall`` (older profiles)
    time_base: str = "wall"

    @property
    def footprint(self) -> int:
        return sum(o.size_bytes for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the whole profile (recorded runs for tests and benchmarks)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunProfile:
        fields = {k: v for k, v in doc.items() if k != "objects"}
        return cls(**fields, objects=[ObjectTraffic(**o) for o in doc["objects"]])


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


@dataclass(frozen=True)
class PatternEvidence:
    """What decides the random share: page-poison spread and byte rate, over one or more
    objects (the chunks of one allocation are pooled, see :func:`pooled_evidence`)."""

    volume: float  # bytes read + written
    size: float  # bytes
    active: list[float]  # densities of the active (touched) intervals
    weights: list[float] | None  # per active interval (None: equal weights)
    passes: float  # passes over the object per active interval (0: no active interval)
    sampled_pages: int  # distinct sampled pages behind ``active`` (sampling noise)
    sampled: bool  # page-poison samples exist (a sampler period was set)
    lifetime_s: float
    cache_size: float


def evidence(obj: ObjectTraffic) -> PatternEvidence:
    """One object's own evidence (the unchunked path: exactly what it always used)."""
    active = [d for d in obj.density_series if d is not None and d > 0]
    # an aggregate: the evidence of one of its objects (its share of the traffic)
    volume = (obj.bytes_read + obj.bytes_written) / max(obj.multiplicity, 1)
    size = obj.instance_bytes or obj.size_bytes
    return PatternEvidence(
        volume=volume,
        size=size,
        active=active,
        weights=None,
        passes=volume / size / len(active) if active and size > 0 else 0.0,
        sampled_pages=obj.sampled_pages,
        sampled=obj.sample_period_s > 0,
        lifetime_s=obj.lifetime_s,
        cache_size=obj.cache_size,
    )


def pooled_evidence(objs: list[ObjectTraffic]) -> PatternEvidence:
    """The evidence of several chunks of one array taken together.

    Accesses to one array follow one pattern, so its chunks' samples are one body of
    evidence. Chunks whose samples are the allocation's (``samples_of_allocation``) share
    them: the allocation's series counts once. Chunks sampled on their own over the same
    intervals (as many sampled intervals each) are summed per interval as counts (touched /
    sampled pages; a chunk's sampled pages per interval taken as its total over its sampled
    intervals): the series the unsplit array would have had. Otherwise every chunk's active
    intervals count, weighted the same way. The stream/random predictions use the pooled
    passes per interval (all volume over all active byte-intervals) and the rate is the
    whole allocation's (all volume over its lifetime).
    """
    if len(objs) == 1:
        return evidence(objs[0])
    size = float(sum(o.size_bytes for o in objs))
    volume = sum(o.bytes_read + o.bytes_written for o in objs)
    active: list[float] = []
    weights: list[float] | None = None
    if all(o.samples_of_allocation for o in objs):
        own = evidence(max(objs, key=lambda o: (o.sampled_pages, len(o.density_series))))
        active, sampled_pages = own.active, own.sampled_pages
        passes = volume / size / len(active) if active and size > 0 else 0.0
    else:
        active, weights, passes = _pool_samples(objs, volume, size)
        sampled_pages = sum(o.sampled_pages for o in objs)
    return PatternEvidence(
        volume=volume,
        size=size,
        active=active,
        weights=weights,
        passes=passes,
        sampled_pages=sampled_pages,
        sampled=any(o.sample_period_s > 0 for o in objs),
        lifetime_s=max(o.lifetime_s for o in objs),
        cache_size=max(o.cache_size for o in objs),
    )


def _pool_samples(
    objs: list[ObjectTraffic], volume: float, size: float
) -> tuple[list[float], list[float] | None, float]:
    """Active densities, their weights (None: equal) and passes per interval of chunks
    sampled on their own (see :func:`pooled_evidence`)."""
    per_interval = []
    for o in objs:
        n_seen = sum(1 for d in o.density_series if d is not None)
        per_interval.append(o.sampled_pages / n_seen if n_seen and o.sampled_pages > 0 else 1.0)
    # the sampled intervals of each chunk, in order (None: an interval with no sample)
    seen = [[d for d in o.density_series if d is not None] for o in objs]
    lengths = {len(x) for x in seen}
    active: list[float] = []
    if len(lengths) == 1:
        for i in range(lengths.pop()):
            touched = sum(x[i] * w for x, w in zip(seen, per_interval, strict=True))
            if touched > 0:
                active.append(touched / sum(per_interval))
        return active, None, volume / size / len(active) if active and size > 0 else 0.0
    weights: list[float] = []
    byte_intervals = 0.0
    for o, w in zip(objs, per_interval, strict=True):
        own_active = [d for d in o.density_series if d is not None and d > 0]
        active += own_active
        weights += [w] * len(own_active)
        byte_intervals += o.size_bytes * len(own_active)
    return active, weights, volume / byte_intervals if byte_intervals > 0 else 0.0


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
    return share_of(evidence(obj), host, threads)


#: A gap this wide between the stream and random predictions of the touched share lets the
#: page-poison samples decide alone; below it the rate rule weighs in, linearly to all at 0.
GAP_DISCRIMINATES = 0.3


def share_of(ev: PatternEvidence, host: HostDram, threads: int = 1) -> tuple[float, str]:
    """:func:`random_share` on given (own or pooled) evidence.

    The page-poison answer is the lower end of what the samples allow (a stream unless the
    excess over its prediction is beyond two standard errors); the rate rule's answer
    weighs in as the gap between the stream and random predictions closes: nothing while
    the gap is at least :data:`GAP_DISCRIMINATES`, all of it when ``pi >= 1`` leaves the
    samples blind (gap 0). So ``p`` moves smoothly with the evidence: a cut-off between the
    two rules made one array read as a stream in one profile and as 76% random in the
    next (cc -u 16: 0.70 vs 0.87 passes per interval).
    """
    volume = ev.volume
    if volume <= 0 or ev.size <= 0:
        return 0.0, "no traffic"
    weight, p_poison, poison = 1.0, 0.0, ""
    active = ev.active
    if active and ev.sampled:
        passes = ev.passes
        d_seq = min(1.0, passes)
        d_rand = 1.0 - math.exp(-passes * PAGE / WORD)
        if ev.weights is None:
            observed = sum(active) / len(active)
        else:
            observed = sum(d * w for d, w in zip(active, ev.weights, strict=True)) / sum(ev.weights)
        gap = d_rand - d_seq
        weight = min(1.0, max(0.0, 1.0 - gap / GAP_DISCRIMINATES))
        if weight < 1.0:
            n = max(ev.sampled_pages, len(active))
            noise = 2.0 * math.sqrt(max(observed * (1 - observed), 0.0) / n)
            p_poison = min(1.0, max(0.0, (observed - d_seq - noise) / gap))
            poison = (
                f"page-poison: touched {observed:.2f} vs stream {d_seq:.2f} / random "
                f"{d_rand:.2f} at {passes:.2f} passes per interval"
            )
            if weight == 0.0:
                return p_poison, poison
    if ev.lifetime_s <= 0:
        p_rate, why = 0.5, "no lifetime: even mix assumed"
    else:
        rate = volume / ev.lifetime_s
        lo = WORD / (host.latency_ns * 1e-9)
        hi = random_ceiling(ev.cache_size, host, threads)
        if hi <= lo:
            p_rate, why = 0.5, "host constants inconsistent: even mix assumed"
        else:
            p_seq = math.log(max(rate, lo) / lo) / math.log(hi / lo)
            p_rate = 1.0 - min(1.0, max(0.0, p_seq))
            why = (
                f"rate: {rate / 1e9:.3f} GB/s between {lo / 1e9:.3f} (dependent words) and "
                f"{hi / 1e9:.3f} (random ceiling)"
            )
    if not poison:
        return p_rate, why
    p = (1.0 - weight) * p_poison + weight * p_rate
    return p, f"{poison}, {1 - weight:.0%}; {why}, {weight:.0%}"


#: Fewer sampled pages than this behind an allocation's pooled page-poison evidence is thin:
#: the allocation then borrows the spread of its site's other chunked allocations.
THIN_SAMPLED_PAGES = 16


def _thin(ev: PatternEvidence) -> bool:
    return not (ev.sampled and ev.active) or ev.sampled_pages < THIN_SAMPLED_PAGES


def _sampled(o: ObjectTraffic) -> bool:
    return o.sample_period_s > 0 and any(d for d in o.density_series if d)


def pooled_shares(
    objects: list[ObjectTraffic], host: HostDram, threads: int = 1
) -> dict[int, tuple[float, str]]:
    """Random share of every object, pooled over the chunks of each allocation.

    An object that is its own allocation (``alloc_id`` None, or alone) keeps its own
    evidence, unchanged. The chunks of one allocation get one share from their pooled
    evidence (:func:`pooled_evidence`); when that is thin (:data:`THIN_SAMPLED_PAGES`), the
    page-poison spread and passes of all chunks of the same site stand in for it while
    the rate stays the allocation's own. Volumes stay per chunk.
    """
    groups: dict[tuple[int, int], list[ObjectTraffic]] = {}
    out: dict[int, tuple[float, str]] = {}
    for o in objects:
        if o.alloc_id is None:
            out[o.object_id] = random_share(o, host, threads)
        else:
            groups.setdefault((o.site_id, o.alloc_id), []).append(o)
    by_site: dict[int, list[ObjectTraffic]] = {}
    for (site, _), members in groups.items():
        by_site.setdefault(site, []).extend(members)
    for (site, _), members in groups.items():
        ev = pooled_evidence(members)
        how = f"pooled over {len(members)} chunks of the allocation"
        site_sampled = [m for m in by_site[site] if _sampled(m)]
        if len(members) > 1 and _thin(ev) and site_sampled:
            site_ev = pooled_evidence(site_sampled)
            if not _thin(site_ev):
                # the site's spread and passes per interval; the allocation's own rate
                ev = PatternEvidence(
                    volume=ev.volume,
                    size=site_ev.size,
                    active=site_ev.active,
                    weights=site_ev.weights,
                    passes=site_ev.passes,
                    sampled_pages=site_ev.sampled_pages,
                    sampled=site_ev.sampled,
                    lifetime_s=ev.lifetime_s,
                    cache_size=ev.cache_size,
                )
                how = (
                    f"pooled over {len(site_sampled)} sampled chunks of the site "
                    f"({len(members)} of the allocation: too few samples)"
                )
        p, why = share_of(ev, host, threads)
        if len(members) > 1:
            why = f"{why}; {how}"
        for o in members:
            out[o.object_id] = (p, why)
    return out


def _misses(nbytes: float, gran: float, compulsory: float, hit: float) -> float:
    """Lines moved to/from memory: compulsory lines plus the capacity misses beyond them."""
    lines = nbytes / gran
    first = min(lines, compulsory)
    return first + (lines - first) * (1.0 - hit)


def object_cost(
    obj: ObjectTraffic,
    host: HostDram,
    threads: int = 1,
    pattern: tuple[float, str] | None = None,
) -> ObjectCost:
    """Step 2-4 for one object: DRAM time of its memory traffic, before the caps.

    ``pattern``: the random share and its evidence when decided for more than this object
    (the pooled chunks of an allocation); None: from the object's own evidence.
    """
    p, why = pattern if pattern is not None else random_share(obj, host, threads)
    c_eff = host.llc_bytes * LLC_SHARE
    size = max(obj.instance_bytes or obj.size_bytes, 1)
    m = max(obj.multiplicity, 1)  # one of an aggregate's objects: its share of the traffic
    bytes_read, bytes_written = obj.bytes_read / m, obj.bytes_written / m
    hit_rand = min(1.0, c_eff / obj.cache_size)
    hit_seq = 1.0 if obj.cache_size <= c_eff else 0.0
    # The first write of each byte is taken as a streaming initialization (fill loops,
    # memset, calloc); only the writes beyond one pass can be random. Those follow the
    # random reads: a program rarely stores a random word it did not load first (hash
    # inserts, scatter updates, counters), so each randomly read word may be written back
    # at random, up to the writes there are (docs/emulator.md, "Random writes").
    w_init = min(bytes_written, float(size))
    w_rest = bytes_written - w_init
    w_rand = min(w_rest, p * max(w_rest, bytes_read))
    parts = {}
    for kind, share, gran, hit in (("rand", p, WORD, hit_rand), ("seq", 1 - p, LINE, hit_seq)):
        comp = share * size / LINE
        writes = w_rand if kind == "rand" else w_rest - w_rand + w_init
        parts[kind] = (
            _misses(share * bytes_read, gran, comp, hit),
            _misses(writes, gran, size / LINE if kind == "seq" else comp, hit),
        )
    lat = host.latency_ns * 1e-9
    return ObjectCost(
        object_id=obj.object_id,
        random_share=p,
        pattern_evidence=why,
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


def _cap_lifetime(group: list[ObjectCost], lifetime: float) -> None:
    """Cap 1 for one object, or for the chunks of one allocation taken together.

    Streams and writebacks are priced at the bandwidth this host achieves, so they are
    taken as they are; the random-read stall time (serial, MLP 1) is what the lifetime
    bounds: it shrinks to the time left, i.e. to the implied MLP (shared among chunks in
    proportion to their own stall time).
    """
    total = sum(c.dram_time for c in group)
    if lifetime <= 0 or total <= lifetime:
        return
    t_bw = sum(c.t_read_seq + c.t_write_seq + c.t_write_random for c in group)
    if t_bw >= lifetime:
        for c in group:
            c.t_read_random = 0.0
            _scale(c, lifetime / t_bw)
        return
    if len(group) == 1:
        group[0].t_read_random = lifetime - t_bw
        return
    stall = sum(c.t_read_random for c in group)
    for c in group:
        c.t_read_random = (lifetime - t_bw) * c.t_read_random / stall


def costs(
    profile: RunProfile, spec: TierSpec, ref: TierSpec, host: HostDram
) -> tuple[dict[int, ObjectCost], dict[str, float]]:
    """Every object's capped DRAM time and its penalty alone in ``spec``'s tier."""
    # rates per CPU-second are per thread: their random ceiling is one thread's
    rate_threads = 1 if profile.time_base == "cpu" else profile.threads
    shares = pooled_shares(profile.objects, host, rate_threads)
    out = {
        o.object_id: object_cost(o, host, profile.threads, shares[o.object_id])
        for o in profile.objects
    }
    # cap 1: an allocation's memory time fits in its lifetime (the chunks of one
    # allocation live together, so they share the cap: what one object alone would get)
    allocs: dict[tuple[int, int], list[ObjectTraffic]] = {}
    for o in profile.objects:
        if o.alloc_id is not None:
            allocs.setdefault((o.site_id, o.alloc_id), []).append(o)
    for o in profile.objects:
        if o.alloc_id is None or len(allocs[(o.site_id, o.alloc_id)]) == 1:
            _cap_lifetime([out[o.object_id]], o.lifetime_s)
    for members in allocs.values():
        if len(members) > 1:
            _cap_lifetime([out[o.object_id] for o in members], max(o.lifetime_s for o in members))
    for o in profile.objects:  # an aggregate: its objects' costs, each capped by its life
        if o.multiplicity > 1:
            _scale(out[o.object_id], float(o.multiplicity))
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
