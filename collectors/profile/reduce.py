"""Read a shim log in one pass, keeping the objects that matter and summarizing the rest.

A long job allocates millions of buffers through a few sites, with few alive at once; what
placement decides is per site, and what it prices is the live bytes and the access
evidence. :func:`reduce_log` streams a log (:class:`LogScan`, one block at a time) with a
table of the live objects only, and returns a :class:`ShimLog` that
:func:`placer.collectors.profile.ingest.ingest_profile` stores as before, holding:

- every **significant** object as itself: at least :data:`SIGNIFICANT_BYTES`, or alive for
  :data:`SIGNIFICANT_LIFETIME_NS`, or alive at exit, or sampled by page poisoning in
  :data:`SIGNIFICANT_SAMPLED_INTERVALS` intervals (at most :data:`MAX_KEPT` of them);
- for the others, one **aggregate** object per site and time window (at most
  :data:`MAX_WINDOWS` windows, which double in length as the run goes on, and at most
  :data:`MAX_AGGREGATES` aggregates in all, down to one per site): its size is the
  most bytes the site's small objects held at once in the window (so the time-aware DRAM
  budget holds), its lifetime the window's, its SAMPLEs the sum of theirs per interval, and
  its ``aggregate`` summary the count, bytes, byte-seconds, lifetime histogram (log2 ns)
  and sampled/touched/written pages of what it stands for;
- ``folded``: run-wide totals of the summarized objects, so the features of the kept
  objects (shares of the run's footprint and accesses, allocations per site) are what the
  full form gives (``placer.placement.features.observations_from_store`` adds them back).

Runs of at most :data:`SUMMARIZE_ABOVE` allocations keep every object (the full form).
Memory: the live objects, the sites, the kept objects and the aggregates; never one entry
per allocation seen. More than :data:`MAX_SITES` distinct sites is refused (bad input).
docs/profiling.md says what is kept and why.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placer.collectors.shim.log import (
    ALLOC_KINDS,
    REC_ALLOC,
    REC_FREE,
    AllocRecord,
    FreeRecord,
    LogBlock,
    LogScan,
    SampleRecord,
    ShimLog,
)
from placer.errors import InvalidInputError

__all__ = [
    "AGGREGATE_SEQ",
    "MAX_AGGREGATES",
    "MAX_KEPT",
    "MAX_SITES",
    "MAX_WINDOWS",
    "SIGNIFICANT_BYTES",
    "SIGNIFICANT_LIFETIME_NS",
    "SIGNIFICANT_SAMPLED_INTERVALS",
    "SUMMARIZE_ABOVE",
    "reduce_log",
]

#: Runs with at most this many allocations keep every object (nothing is summarized).
SUMMARIZE_ABOVE = 20_000
#: Objects this large are kept: the shim samples pages of objects from 1 MiB on, and a
#: plan's chunks and the sampled access series are about them.
SIGNIFICANT_BYTES = 1 << 20
#: Objects alive this long are kept (a second of residency is a placement decision).
SIGNIFICANT_LIFETIME_NS = 1_000_000_000
#: Objects sampled in this many intervals are kept (they have an access-density series).
SIGNIFICANT_SAMPLED_INTERVALS = 2
#: At most this many objects are kept one by one; later significant ones are summarized
#: (and counted in ``signals.shim.summarized.over_cap``).
MAX_KEPT = 200_000
#: Distinct allocation sites a run may have: more is refused as bad input, since a plan
#: per site and the per-site summaries are what keep the store bounded.
#: ``PLACER_MAX_SITES`` overrides it.
MAX_SITES = 50_000
#: Time windows per site for the summaries; the first is 100 ms long, and all double
#: whenever the run outgrows them.
MAX_WINDOWS = 32
FIRST_WINDOW_NS = 100_000_000
#: Aggregate objects a run may hold in all: with many sites the windows widen until the
#: aggregates fit (down to one per site), so what comes downstream stays bounded.
MAX_AGGREGATES = 16_384
#: Aggregate objects' sequence numbers start here (the shim's own count never gets near).
AGGREGATE_SEQ = 1 << 62
PAGE = 4096


@dataclass(slots=True)
class _Live:
    seq: int
    site: int
    addr: int
    size: int
    time: int
    tid: int
    kind: str
    samples: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Agg:
    site: int
    first_ns: int
    last_ns: int
    peak_bytes: int = 0
    count: int = 0
    bytes: int = 0
    byte_ns: int = 0
    lifetime_ns: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    #: interval → [start, end, sampled, touched, written]
    intervals: dict[int, list[int]] = field(default_factory=dict)

    def merge(self, other: _Agg) -> None:
        self.first_ns = min(self.first_ns, other.first_ns)
        self.last_ns = max(self.last_ns, other.last_ns)
        self.peak_bytes = max(self.peak_bytes, other.peak_bytes)
        self.count += other.count
        self.bytes += other.bytes
        self.byte_ns += other.byte_ns
        self.lifetime_ns += other.lifetime_ns
        for b, n in other.hist.items():
            self.hist[b] = self.hist.get(b, 0) + n
        for i, v in other.intervals.items():
            cur = self.intervals.get(i)
            if cur is None:
                self.intervals[i] = list(v)
            else:
                cur[0], cur[1] = min(cur[0], v[0]), max(cur[1], v[1])
                cur[2] += v[2]
                cur[3] += v[3]
                cur[4] += v[4]


class _Reducer:
    def __init__(self, scan: LogScan, summarize: bool) -> None:
        self.scan = scan
        self.summarize = summarize
        self.t0 = scan.header.start_ns
        self.width = FIRST_WINDOW_NS
        self.live: dict[int, _Live] = {}
        self.kept: list[tuple[_Live, int | None]] = []  # (object, free time or None)
        self.aggs: dict[tuple[int, int], _Agg] = {}
        self.small_live: dict[int, int] = {}  # site → bytes of its live small objects
        self.peaks: dict[tuple[int, int], int] = {}  # (site, window) → most small bytes
        self.sites: set[int] = set()
        self.max_sites = _max_sites()
        self.allocations = 0
        self.over_cap = 0
        self.folded_count: dict[int, int] = {}
        self.folded_bytes = 0
        self.folded_access = 0.0
        self.last_seen = scan.header.start_ns
        self.pending: dict[str, np.ndarray] = {
            k: np.zeros(0, dtype=np.uint64 if k == "site" else np.int64)
            for k in ("seq", "site", "addr", "size", "time", "tid", "kind")
        }
        self.samples_of: dict[int, list[tuple[int, int, int, int, int, int]]] = {}

    def window(self, t: int) -> int:
        w = max(t - self.t0, 0) // self.width
        while w >= MAX_WINDOWS:
            self._widen()
            w = max(t - self.t0, 0) // self.width
        return w

    def _widen(self) -> None:
        """Double the windows: merge each site's pairs (bounded summaries on long runs)."""
        self.width *= 2
        merged: dict[tuple[int, int], _Agg] = {}
        for (site, w), agg in self.aggs.items():
            cur = merged.get((site, w // 2))
            if cur is None:
                merged[(site, w // 2)] = agg
            else:
                cur.merge(agg)
        self.aggs = merged
        peaks: dict[tuple[int, int], int] = {}
        for (site, w), b in self.peaks.items():
            key = (site, w // 2)
            peaks[key] = max(peaks.get(key, 0), b)
        self.peaks = peaks

    def alloc(self, obj: _Live) -> None:
        self.allocations += 1
        if obj.site not in self.sites:
            if len(self.sites) >= self.max_sites:
                raise InvalidInputError(
                    f"the program allocated at more than {self.max_sites} distinct sites "
                    f"(the cap; PLACER_MAX_SITES raises it, docs/profiling.md): profile "
                    f"with a larger --threshold"
                )
            self.sites.add(obj.site)
        self.live[obj.seq] = obj
        if self.summarize and obj.size < SIGNIFICANT_BYTES:
            now = self.small_live.get(obj.site, 0) + obj.size
            self.small_live[obj.site] = now
            key = (obj.site, self.window(obj.time))
            if now > self.peaks.get(key, 0):
                self.peaks[key] = now

    def free(self, seq: int, t: int) -> None:
        obj = self.live.pop(seq, None)
        if obj is None:
            return  # not this process's allocation (a forked child frees the parent's)
        if self.summarize and obj.size < SIGNIFICANT_BYTES:
            self.small_live[obj.site] -= obj.size
        self.finish(obj, t)

    def finish(self, obj: _Live, free_ns: int | None) -> None:
        if not self.summarize or self._significant(obj, free_ns):
            if len(self.kept) < MAX_KEPT or not self.summarize:
                self.kept.append((obj, free_ns))
                return
            self.over_cap += 1
        self.fold(obj, free_ns if free_ns is not None else self.last_seen)

    def _significant(self, obj: _Live, free_ns: int | None) -> bool:
        if free_ns is None or obj.size >= SIGNIFICANT_BYTES:
            return True
        if free_ns - obj.time >= SIGNIFICANT_LIFETIME_NS:
            return True
        sampled = {s[0] for s in obj.samples if s[3] > 0}
        return len(sampled) >= SIGNIFICANT_SAMPLED_INTERVALS

    def fold(self, obj: _Live, end_ns: int) -> None:
        key = (obj.site, self.window(obj.time))
        agg = self.aggs.get(key)
        if agg is None:
            agg = self.aggs[key] = _Agg(obj.site, obj.time, end_ns)
        life = max(end_ns - obj.time, 0)
        agg.first_ns = min(agg.first_ns, obj.time)
        agg.last_ns = max(agg.last_ns, end_ns)
        agg.count += 1
        agg.bytes += obj.size
        agg.byte_ns += obj.size * life
        agg.lifetime_ns += life
        bucket = life.bit_length()
        agg.hist[bucket] = agg.hist.get(bucket, 0) + 1
        self._add_samples(agg, obj.size, obj.samples)
        self.folded_count[obj.site] = self.folded_count.get(obj.site, 0) + 1
        self.folded_bytes += obj.size

    def run(self) -> None:
        if self.summarize:
            for b in self.scan.blocks():
                self._block(b)
        else:
            for b in self.scan.blocks():
                self._replay(b)
        end_ns = self.scan.end.time_ns if self.scan.end is not None else None
        self.last_seen = max(self.last_seen, end_ns or 0)
        for obj in list(self.live.values()):  # alive at exit: significant
            self.kept.append((obj, None))
        self.live.clear()
        p = self.pending
        for k in range(len(p["seq"])):
            obj = self._obj(p, k)
            obj.samples = list(self.samples_of.pop(obj.seq, []))
            self.kept.append((obj, None))

    def _replay(self, b: LogBlock) -> None:
        """The full form: every record replayed in the log's order (small runs)."""
        live = self.live
        kinds = [ALLOC_KINDS[k] if k < len(ALLOC_KINDS) else "unknown" for k in b.alloc_kind]
        allocs = zip(
            b.alloc_seq.tolist(),
            b.alloc_time.tolist(),
            b.alloc_addr.tolist(),
            b.alloc_size.tolist(),
            b.alloc_site.tolist(),
            b.alloc_tid.tolist(),
            kinds,
            strict=True,
        )
        samples = zip(
            b.sample_seq.tolist(),
            b.sample_start.tolist(),
            b.sample_end.tolist(),
            b.sample_interval.tolist(),
            b.sample_sampled.tolist(),
            b.sample_touched.tolist(),
            b.sample_written.tolist(),
            strict=True,
        )
        frees = zip(b.free_seq.tolist(), b.free_time.tolist(), strict=True)
        for rtype in b.order.tolist():
            if rtype == REC_ALLOC:
                seq, t, addr, size, site, tid, kind = next(allocs)
                self.alloc(_Live(seq, site, addr, size, t, tid, kind))
            elif rtype == REC_FREE:
                seq, t = next(frees)
                self.free(seq, t)
            else:
                seq, start, end, interval, sampled, touched, written = next(samples)
                obj = live.get(seq)
                if obj is not None:
                    obj.samples.append((interval, start, end, sampled, touched, written))
        self._seen(b)

    def _seen(self, b: LogBlock) -> None:
        for times in (b.alloc_time, b.free_time, b.sample_end):
            if len(times):
                self.last_seen = max(self.last_seen, int(times.max()))

    def _windows(self, times: np.ndarray) -> np.ndarray:
        if not len(times):
            return np.zeros(0, dtype=np.int64)
        while (int(times.max()) - self.t0) // self.width >= MAX_WINDOWS:
            self._widen()
        out: np.ndarray = np.maximum(times - self.t0, 0) // self.width
        return out

    @staticmethod
    def _obj(t: dict[str, np.ndarray], k: int) -> _Live:
        code = int(t["kind"][k])
        return _Live(
            int(t["seq"][k]),
            int(t["site"][k]),
            int(t["addr"][k]),
            int(t["size"][k]),
            int(t["time"][k]),
            int(t["tid"][k]),
            ALLOC_KINDS[code] if code < len(ALLOC_KINDS) else "unknown",
        )

    def _block(self, b: LogBlock) -> None:
        """The summarized form, one block at a time in numpy: the live objects are a table
        carried between blocks; the freed ones are kept or folded per (site, window)."""
        self.allocations += len(b.alloc_seq)
        for h in np.unique(b.alloc_site).tolist():
            if h not in self.sites:
                if len(self.sites) >= self.max_sites:
                    raise InvalidInputError(
                        f"the program allocated at more than {self.max_sites} distinct sites "
                        f"(the cap; PLACER_MAX_SITES raises it, docs/profiling.md): profile "
                        f"with a larger --threshold"
                    )
                self.sites.add(h)
        self._seen(b)
        order = b.order
        new = {
            "seq": b.alloc_seq,
            "site": b.alloc_site,
            "addr": b.alloc_addr,
            "size": b.alloc_size,
            "time": b.alloc_time,
            "tid": b.alloc_tid,
            "kind": b.alloc_kind,
        }
        p = self.pending
        t = {k: np.concatenate([p[k], new[k]]) for k in new}
        npend = len(p["seq"])
        tpos = np.concatenate(
            [np.full(npend, -1, dtype=np.int64), np.nonzero(order == REC_ALLOC)[0]]
        )
        # SAMPLEs: attached to their live objects (few: the shim samples objects >= 1 MiB)
        if len(b.sample_seq):
            known = set(t["seq"].tolist())
            for rec in zip(
                b.sample_seq.tolist(),
                b.sample_interval.tolist(),
                b.sample_start.tolist(),
                b.sample_end.tolist(),
                b.sample_sampled.tolist(),
                b.sample_touched.tolist(),
                b.sample_written.tolist(),
                strict=True,
            ):
                if rec[0] in known:
                    self.samples_of.setdefault(rec[0], []).append(rec[1:])
        # FREEs matched to the table by seq (a forked child frees its parent's: ignored)
        by_seq = np.argsort(t["seq"], kind="stable")
        sseq = t["seq"][by_seq]
        j = np.searchsorted(sseq, b.free_seq)
        ok = j < len(sseq)
        ok[ok] = sseq[j[ok]] == b.free_seq[ok]
        fi = by_seq[j[ok]]
        fpos = np.nonzero(order == REC_FREE)[0][ok]
        ftime = b.free_time[ok]
        after = tpos[fi] < fpos
        fi, fpos, ftime = fi[after], fpos[after], ftime[after]
        fi, first = np.unique(fi, return_index=True)
        fpos, ftime = fpos[first], ftime[first]
        self._peaks(t, tpos, fi, fpos)
        # kept or folded
        size, atime = t["size"][fi], t["time"][fi]
        life = np.maximum(ftime - atime, 0)
        sig = (size >= SIGNIFICANT_BYTES) | (life >= SIGNIFICANT_LIFETIME_NS)
        fseq = t["seq"][fi]
        if self.samples_of:
            for k in np.nonzero(~sig)[0].tolist():
                got = self.samples_of.get(int(fseq[k]))
                if got and len({r[0] for r in got if r[3] > 0}) >= SIGNIFICANT_SAMPLED_INTERVALS:
                    sig[k] = True
        for k in np.nonzero(sig)[0].tolist():
            if len(self.kept) >= MAX_KEPT:
                self.over_cap += 1
                sig[k] = False
                continue
            obj = self._obj(t, int(fi[k]))
            obj.samples = [
                (iv, st, en, sa, to, wr)
                for iv, st, en, sa, to, wr in self.samples_of.pop(obj.seq, [])
            ]
            self.kept.append((obj, int(ftime[k])))
        fold = ~sig
        self._fold(t["site"][fi][fold], atime[fold], ftime[fold], size[fold], life[fold])
        while len(self.aggs) > MAX_AGGREGATES and self.width <= self.last_seen - self.t0:
            self._widen()
        if self.samples_of:
            for k in np.nonzero(fold)[0].tolist():
                got = self.samples_of.pop(int(fseq[k]), None)
                if got:
                    self._fold_samples(int(t["site"][fi[k]]), int(atime[k]), int(size[k]), got)
        keep = np.ones(len(t["seq"]), dtype=bool)
        keep[fi] = False
        self.pending = {k: v[keep] for k, v in t.items()}

    def _peaks(
        self, t: dict[str, np.ndarray], tpos: np.ndarray, fi: np.ndarray, fpos: np.ndarray
    ) -> None:
        """Most bytes of each site's small objects alive at once, per window: the live
        bytes replayed in the log's order (+size at ALLOC, -size at FREE)."""
        small = t["size"] < SIGNIFICANT_BYTES
        ea = np.nonzero(small & (tpos >= 0))[0]
        ef = fi[small[fi]]
        if not len(ea) and not len(ef):
            return
        pos = np.concatenate([tpos[ea], fpos[small[fi]]])
        site = np.concatenate([t["site"][ea], t["site"][ef]])
        delta = np.concatenate([t["size"][ea], -t["size"][ef]])
        when = np.concatenate([t["time"][ea], t["time"][ef]])
        is_alloc = np.concatenate([np.ones(len(ea), bool), np.zeros(len(ef), bool)])
        o = np.lexsort((pos, site))
        pos, site, delta, when, is_alloc = pos[o], site[o], delta[o], when[o], is_alloc[o]
        starts = np.r_[True, site[1:] != site[:-1]]
        grp = np.cumsum(starts) - 1
        cs = np.cumsum(delta)
        before = (cs - delta)[starts]
        carry = np.array([self.small_live.get(h, 0) for h in site[starts].tolist()], np.int64)
        running = cs - before[grp] + carry[grp]
        ends = np.r_[np.nonzero(starts)[0][1:] - 1, len(site) - 1]
        for h, v in zip(site[starts].tolist(), running[ends].tolist(), strict=True):
            self.small_live[h] = v
        site, running, when = site[is_alloc], running[is_alloc], when[is_alloc]
        if not len(site):
            return
        w = self._windows(when)
        o = np.lexsort((w, site))
        site, w, running = site[o], w[o], running[o]
        st = np.nonzero(np.r_[True, (site[1:] != site[:-1]) | (w[1:] != w[:-1])])[0]
        top = np.maximum.reduceat(running, st)
        for h, win, v in zip(site[st].tolist(), w[st].tolist(), top.tolist(), strict=True):
            if v > self.peaks.get((h, win), 0):
                self.peaks[(h, win)] = v

    def _fold(
        self,
        site: np.ndarray,
        atime: np.ndarray,
        ftime: np.ndarray,
        size: np.ndarray,
        life: np.ndarray,
    ) -> None:
        """Add freed small short-lived objects to their (site, window) aggregates."""
        if not len(site):
            return
        w = self._windows(atime)
        bucket = np.frexp(life.astype(np.float64))[1].astype(np.int64)  # = life.bit_length()
        o = np.lexsort((bucket, w, site))
        site, w, bucket = site[o], w[o], bucket[o]
        atime, ftime, size, life = atime[o], ftime[o], size[o], life[o]
        n = len(site)
        st = np.nonzero(np.r_[True, (site[1:] != site[:-1]) | (w[1:] != w[:-1])])[0]
        bt = np.nonzero(
            np.r_[True, (site[1:] != site[:-1]) | (w[1:] != w[:-1]) | (bucket[1:] != bucket[:-1])]
        )[0]
        bcount = np.diff(np.r_[bt, n])
        hists: dict[tuple[int, int], dict[int, int]] = {}
        for h, win, b, c in zip(
            site[bt].tolist(), w[bt].tolist(), bucket[bt].tolist(), bcount.tolist(), strict=True
        ):
            hists.setdefault((h, win), {})[b] = c
        cols = zip(
            site[st].tolist(),
            w[st].tolist(),
            np.diff(np.r_[st, n]).tolist(),
            np.add.reduceat(size, st).tolist(),
            np.add.reduceat(size.astype(np.float64) * life, st).tolist(),
            np.add.reduceat(life, st).tolist(),
            np.minimum.reduceat(atime, st).tolist(),
            np.maximum.reduceat(ftime, st).tolist(),
            strict=True,
        )
        for h, win, count, nbytes, byte_ns, life_ns, first, last in cols:
            agg = self.aggs.get((h, win))
            if agg is None:
                agg = self.aggs[(h, win)] = _Agg(h, first, last)
            agg.merge(
                _Agg(h, first, last, 0, count, nbytes, int(byte_ns), life_ns, hists[(h, win)])
            )
            self.folded_count[h] = self.folded_count.get(h, 0) + count
            self.folded_bytes += nbytes

    def _fold_samples(
        self, site: int, atime: int, size: int, samples: Sequence[tuple[int, ...]]
    ) -> None:
        agg = self.aggs[(site, int(self._windows(np.array([atime], np.int64))[0]))]
        self._add_samples(agg, size, samples)

    def _add_samples(self, agg: _Agg, size: int, samples: Sequence[tuple[int, ...]]) -> None:
        """Merge one folded object's page samples into its aggregate, per interval, and add
        its touched-page estimate (placement.features._access_est) to the folded total."""
        per_interval: dict[int, list[int]] = {}
        for interval, start, end, sampled, touched, written in samples:
            cur = agg.intervals.get(interval)
            if cur is None:
                agg.intervals[interval] = [start, end, sampled, touched, written]
            else:
                cur[0], cur[1] = min(cur[0], start), max(cur[1], end)
                cur[2] += sampled
                cur[3] += touched
                cur[4] += written
            acc = per_interval.setdefault(interval, [0, 0])
            acc[0] += sampled
            acc[1] += touched
        pages = max(size / PAGE, 1.0)
        self.folded_access += sum(t / s for s, t in per_interval.values() if s > 0) * pages

    def to_log(self) -> ShimLog:
        allocs: list[AllocRecord] = []
        frees: list[FreeRecord] = []
        samples: list[SampleRecord] = []
        for obj, free_ns in self.kept:
            allocs.append(
                AllocRecord(obj.seq, obj.time, obj.addr, obj.size, obj.site, obj.tid, obj.kind)
            )
            if free_ns is not None:
                frees.append(FreeRecord(obj.seq, free_ns, obj.addr, "free"))
            for interval, start, end, sampled, touched, written in obj.samples:
                samples.append(
                    SampleRecord(obj.seq, start, end, interval, sampled, touched, written)
                )
        aggregates: dict[int, dict[str, Any]] = {}
        site_rows: dict[int, int] = {}
        for k, ((site, w), agg) in enumerate(sorted(self.aggs.items())):
            seq = AGGREGATE_SEQ + k
            size = max(self.peaks.get((site, w), 0), max(agg.bytes // max(agg.count, 1), 1))
            # address 0: no sampled address falls in it, so perf and Python sightings that
            # hit a summarized object stay unmatched rather than land on the wrong one
            allocs.append(AllocRecord(seq, agg.first_ns, 0, size, site, 0, "malloc"))
            frees.append(FreeRecord(seq, agg.last_ns, 0, "free"))
            for interval, (start, end, sampled, touched, written) in sorted(agg.intervals.items()):
                samples.append(SampleRecord(seq, start, end, interval, sampled, touched, written))
            span = max(agg.last_ns - agg.first_ns, 1)
            aggregates[seq] = {
                "objects": agg.count,
                "bytes": agg.bytes,
                "mean_live_bytes": agg.byte_ns / span,
                "mean_lifetime_ns": agg.lifetime_ns / max(agg.count, 1),
                "lifetime_log2_ns": {str(b): n for b, n in sorted(agg.hist.items())},
                "window_ns": [agg.first_ns, agg.last_ns],
            }
            site_rows[site] = site_rows.get(site, 0) + 1
        scan = self.scan
        return ShimLog(
            header=scan.header,
            modules=scan.modules,
            sites=scan.sites,
            allocs=allocs,
            frees=frees,
            samples=samples,
            binds=scan.binds,
            end=scan.end,
            truncated=scan.truncated,
            stats=scan.stats,
            clocks=sorted(scan.clocks),
            allocations=self.allocations,
            aggregates=aggregates,
            folded={
                "objects": sum(self.folded_count.values()),
                "bytes": self.folded_bytes,
                "access_est": self.folded_access,
                "site_objects": {
                    f"{s & 0xFFFFFFFFFFFFFFFF:016x}": n for s, n in self.folded_count.items()
                },
                "kept": len(self.kept),
                "aggregates": len(aggregates),
                "over_cap": self.over_cap,
                "window_ns": self.width,
            }
            if self.summarize
            else None,
        )


def _max_sites() -> int:
    raw = os.environ.get("PLACER_MAX_SITES", "")
    try:
        return max(int(raw), 1) if raw else MAX_SITES
    except ValueError:
        raise InvalidInputError(f"PLACER_MAX_SITES={raw!r}: not a whole number") from None


def count_allocations(path: str | os.PathLike[str]) -> int:
    """ALLOC records in a log (one streaming pass; used to choose the full or summarized form)."""
    scan = LogScan(path)
    return sum(len(b.alloc_seq) for b in scan.blocks())


def reduce_log(path: str | os.PathLike[str], *, summarize: bool | None = None) -> ShimLog:
    """One pass over the log at ``path``: the significant objects and per-site summaries.

    ``summarize``: None chooses (summarize above :data:`SUMMARIZE_ABOVE` allocations), True
    or False forces the summarized or the full form. The returned log has three more
    attributes: ``allocations`` (ALLOC records seen), ``aggregates`` (aggregate seq → its
    summary) and ``folded`` (run-wide totals of the summarized objects; None when nothing
    was summarized).
    """
    red = _Reducer(LogScan(path), summarize is not False)
    red.run()
    if summarize is None and red.allocations <= SUMMARIZE_ABOVE:
        red = _Reducer(LogScan(path), False)  # a small log: a second, cheap pass, keeping all
        red.run()
    return red.to_log()
