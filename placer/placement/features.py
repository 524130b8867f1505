"""Per-object features: only what a production run collects cheaply, computed in one place.

:func:`features` takes a :class:`RunObservation` (per object an :class:`ObjectObservation`:
site, size, times, chunk, per-interval page-poison samples and faults, perf mem counts) and
is the only code that computes a feature. Two adapters build observations:
:func:`observations_from_store` (stored runs; :func:`run_features`, what models train on)
and the daemon's live object table, so online ranking sees the features training saw.

The honesty rule (docs/placement.md): the emulator makes labels from exact deep-mode counts
(DHAT bytes read/written); a model fed those counts would learn the emulator's formula and
prove nothing. So features come only from the shim (sizes, lifetimes, page-poison samples),
perf software events (first-touch faults) and, where a host has it, ``perf mem``.
:data:`FORBIDDEN_SOURCES` names what must never be read here; a test checks it.

Every feature is scale-free across programs (shares, densities, logs) so a model trained on
some applications transfers to another. Missing signals are NaN (LightGBM routes them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from placer.errors import InvalidInputError
from placer.store.repository.runs import metrics_by_object, objects_in_time_order, require_run

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

#: Feature name → what it measures. The order is the model's column order.
FEATURES: dict[str, str] = {
    "density_mean": "mean sampled access density (touched / sampled pages) over active intervals",
    "density_peak": "highest sampled access density of any interval",
    "density_trend": "slope of the density over the run (per run length; >0: heats up)",
    "active_share": "share of the object's lifetime intervals in which it was touched",
    "write_share": "written / touched sampled pages",
    "access_share": "object's share of the run's estimated touched pages (density x pages)",
    "log_size": "log2 of the object's (chunk's) size in bytes",
    "size_share": "size / run footprint",
    "chunk_position": "chunk index / chunk count (0 for unsplit objects)",
    "lifetime_share": "lifetime / run wall time",
    "alloc_time_share": "allocation time within the run (0 = start, 1 = end)",
    "site_allocs": "log2(1 + allocations at the same site in the run)",
    "fault_density": "first-touch page faults per page",
    "llc_miss_share": "perf mem: object's share of the run's LLC misses (NaN without perf mem)",
    "llc_miss_density": "perf mem: LLC-miss samples per MiB",
    "mem_latency": "perf mem: mean sampled load latency (cycles)",
    "tlb_miss_share": "perf mem: share of samples that missed the TLB",
}

#: Feature sets the feature study (``placer evaluate --features``) compares.
FEATURE_SETS: dict[str, list[str]] = {
    "density": ["density_mean", "density_peak", "density_trend", "active_share"],
    "traffic": ["access_share", "write_share", "fault_density"],
    "shape": [
        "log_size",
        "size_share",
        "chunk_position",
        "lifetime_share",
        "alloc_time_share",
        "site_allocs",
    ],
    "perf_mem": ["llc_miss_share", "llc_miss_density", "mem_latency", "tlb_miss_share"],
    "all": list(FEATURES),
}

#: Features no longer computed → the column that holds the same values, so a model trained
#: with them still runs. ``access_per_byte`` (touched-page estimate / pages / intervals) was
#: the mean sampled density again, equal to ``density_mean`` on every object: dropped.
RETIRED: dict[str, str] = {"access_per_byte": "density_mean"}

#: Store tables/columns deep mode fills; features must never read them.
FORBIDDEN_SOURCES = ("DeepSiteStat", "placer_deep_site_stats", "bytes_read", "bytes_written")

PAGE = 4096


class Interval(NamedTuple):
    """One object's evidence in one sampling interval: a store metric row, a live poison sample.

    ``interval`` is the shim's interval number (global to the run, so trends compare across
    objects); ``end_ns`` is when the interval closed, where known (the store knows it).
    """

    interval: int
    sampled: int = 0
    touched: int = 0
    written: int = 0
    faults: int = 0
    end_ns: int | None = None


class MemCounts(NamedTuple):
    """perf mem samples that fell in one object during one interval or live window."""

    samples: int
    llc_misses: int
    latency_sum: float  # load latency summed over loads; divided by all samples (as trained)
    tlb_misses: int


@dataclass(frozen=True)
class ObjectObservation:
    """What a production run shows of one object (or chunk): the only input to :func:`features`.

    Identity fields (``object_id``, ``site_id``, ``native_site``) are carried into the table;
    ``site`` and ``alloc_seq`` group allocations per site (chunks share their ``alloc_seq``).
    ``lifetime_ns`` is the profile's own lifetime where it recorded one; otherwise the object
    lives until ``free_ns``, or to the end of what was observed.
    """

    site: str
    alloc_seq: int
    size: int
    alloc_ns: int
    free_ns: int | None = None
    lifetime_ns: float | None = None
    chunk_index: int = 0
    chunk_count: int = 1
    intervals: Sequence[Interval] = ()
    mem: Sequence[MemCounts] = ()
    first_touch_faults: int = 0
    object_id: int | None = None
    site_id: int | None = None
    native_site: str | None = None


@dataclass
class RunHistory:
    """What the features need of objects no longer observed (the daemon's freed objects).

    Bounded state (one counter per site), so a long-lived job's run-wide shares, footprint and
    site counts stay those of the whole run so far, as in training. Fold whole allocations.
    """

    first_alloc_ns: int | None = None
    last_end_ns: int | None = None
    last_interval: int | None = None
    footprint: int = 0
    access_est: float = 0.0
    miss_est: float | None = None  # None: no perf mem evidence
    site_allocs: dict[str, int] = field(default_factory=dict)

    def fold(self, obs: ObjectObservation) -> None:
        """Add one object that leaves the observed set (freed) to the run's history."""
        self.first_alloc_ns = _min(self.first_alloc_ns, obs.alloc_ns)
        for end in _ends(obs):
            self.last_end_ns = _max(self.last_end_ns, end)
        for iv in obs.intervals:
            self.last_interval = _max(self.last_interval, iv.interval)
        self.footprint += obs.size
        self.access_est += _access_est(obs)
        miss = _miss_est(obs)
        if not math.isnan(miss):
            self.miss_est = miss if self.miss_est is None else self.miss_est + miss
        if obs.chunk_index == 0:
            self.site_allocs[obs.site] = self.site_allocs.get(obs.site, 0) + 1


@dataclass(frozen=True)
class RunObservation:
    """The observed objects of one run, and how long the run was watched.

    ``wall_ns``: the program's run time (a stored run); ``until_ns``: observed until then (a
    live job: now). ``history``: objects no longer observed that still count run-wide.
    """

    objects: Sequence[ObjectObservation]
    wall_ns: float = 0.0
    until_ns: int | None = None
    history: RunHistory | None = None
    run_id: int | None = None


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


def _ends(obs: ObjectObservation) -> list[int]:
    ends = [iv.end_ns for iv in obs.intervals if iv.end_ns is not None]
    return ends + ([obs.free_ns] if obs.free_ns is not None else [])


def _densities(intervals: Iterable[Interval]) -> list[tuple[int, float]]:
    return [(iv.interval, iv.touched / iv.sampled) for iv in intervals if iv.sampled > 0]


def density_mean(intervals: Iterable[Interval]) -> float:
    """Mean sampled access density over the intervals with samples; NaN without any."""
    dens = _densities(intervals)
    return (sum(d for _, d in dens) / len(dens)) if dens else math.nan


def _pages(obs: ObjectObservation) -> float:
    return max(obs.size / PAGE, 1.0)


def _access_est(obs: ObjectObservation) -> float:
    return sum(d for _, d in _densities(obs.intervals)) * _pages(obs)


def _miss_est(obs: ObjectObservation) -> float:
    mem_n = sum(m.samples for m in obs.mem)
    return float(sum(m.llc_misses for m in obs.mem)) if mem_n else math.nan


def density_trend(values: list[tuple[float, float]]) -> float:
    """Least-squares slope of (position in [0, 1], density); 0 with fewer than 2 points."""
    if len(values) < 2:
        return 0.0
    n = len(values)
    mx = sum(x for x, _ in values) / n
    my = sum(y for _, y in values) / n
    sxx = sum((x - mx) ** 2 for x, _ in values)
    if sxx <= 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in values) / sxx


#: Identity and helper columns ahead of the features, in :func:`features`' column order.
IDENTITY = (
    "object_id",
    "run_id",
    "site_id",
    "site_hash",
    "chunk_index",
    "size_bytes",
    "native_site",
    "alloc_ns",
    "end_ns",
)


def features(run: RunObservation) -> pd.DataFrame:
    """One row per observed object: identity columns plus :data:`FEATURES`.

    The one place any feature is computed, for stored runs (:func:`run_features`) and live
    jobs (the daemon's object table) alike, so the model sees online what it was trained on.
    Identity columns: :data:`IDENTITY` (``native_site``: the shim's hash for Python sites);
    helper columns for the baselines: ``access_est`` (touched-page estimate) and ``miss_est``
    (perf-mem LLC misses, NaN without perf mem).
    """
    import pandas as pd  # lazy: heavy

    objs = run.objects
    hist = run.history or RunHistory()
    if not objs:
        return pd.DataFrame(columns=[*IDENTITY, *FEATURES, "access_est", "miss_est"])
    t0 = min(o.alloc_ns for o in objs)
    if hist.first_alloc_ns is not None:
        t0 = min(t0, hist.first_alloc_ns)
    ends = [e for o in objs for e in _ends(o)]
    ends += [e for e in (hist.last_end_ns, run.until_ns) if e is not None]
    span = max(run.wall_ns, (max(ends) - t0) if ends else 0.0, 1.0)
    alive_until = run.until_ns if run.until_ns is not None else t0 + span
    max_interval = max((iv.interval for o in objs for iv in o.intervals), default=0)
    if hist.last_interval is not None:
        max_interval = max(max_interval, hist.last_interval)
    site_seqs: dict[str, set[int]] = {}
    for o in objs:
        site_seqs.setdefault(o.site, set()).add(o.alloc_seq)
    footprint = float(sum(o.size for o in objs) + hist.footprint) or 1.0

    rows = []
    for o in objs:
        pages = _pages(o)
        dens = _densities(o.intervals)
        touched = sum(iv.touched for iv in o.intervals)
        written = sum(iv.written for iv in o.intervals)
        faults = sum(iv.faults for iv in o.intervals) or o.first_touch_faults
        mem_n = sum(m.samples for m in o.mem)
        lifetime = o.lifetime_ns
        if lifetime is None:  # alive: until the end of observation (or of the run)
            lifetime = (o.free_ns if o.free_ns is not None else alive_until) - o.alloc_ns
        active = [d for _, d in dens if d > 0]
        site_allocs = len(site_seqs[o.site]) + hist.site_allocs.get(o.site, 0)
        rows.append(
            {
                "object_id": o.object_id,
                "run_id": run.run_id,
                "site_id": o.site_id,
                "site_hash": o.site,
                "chunk_index": o.chunk_index,
                "size_bytes": int(o.size),
                "native_site": str(o.native_site or o.site),
                "alloc_ns": int(o.alloc_ns),
                "end_ns": int(o.alloc_ns + max(float(lifetime), 0.0)),
                "density_mean": density_mean(o.intervals),
                "density_peak": max((d for _, d in dens), default=math.nan),
                "density_trend": density_trend([(i / max(max_interval, 1), d) for i, d in dens])
                if dens
                else math.nan,
                "active_share": (len(active) / len(dens)) if dens else math.nan,
                "write_share": (written / touched) if touched else math.nan,
                "access_est": _access_est(o),
                "log_size": math.log2(max(o.size, 1)),
                "size_share": o.size / footprint,
                "chunk_position": (o.chunk_index / o.chunk_count) if o.chunk_count > 1 else 0.0,
                "lifetime_share": min(max(float(lifetime) / span, 0.0), 1.0),
                "alloc_time_share": min(max((o.alloc_ns - t0) / span, 0.0), 1.0),
                "site_allocs": math.log2(1 + site_allocs),
                "fault_density": faults / pages,
                "miss_est": _miss_est(o),
                "mem_latency": (sum(m.latency_sum for m in o.mem) / mem_n) if mem_n else math.nan,
                "tlb_miss_share": (sum(m.tlb_misses for m in o.mem) / mem_n) if mem_n else math.nan,
            }
        )
    df = pd.DataFrame(rows)
    total_access = df["access_est"].sum() + hist.access_est
    df["access_share"] = df["access_est"] / total_access if total_access > 0 else 0.0
    total_miss = df["miss_est"].sum(min_count=1)
    if hist.miss_est is not None:
        total_miss = hist.miss_est if pd.isna(total_miss) else total_miss + hist.miss_est
    seen_mem = bool(df["miss_est"].notna().any()) or hist.miss_est is not None
    has_mem = seen_mem and total_miss > 0
    df["llc_miss_share"] = df["miss_est"] / total_miss if has_mem else math.nan
    df["llc_miss_density"] = (df["miss_est"] / (df["size_bytes"] / 2**20)) if has_mem else math.nan
    return df


def observations_from_store(session: Session, run_id: int) -> RunObservation:
    """The stored evidence of ``run_id`` (objects, their metric rows) as observations."""
    run = require_run(session, run_id)
    objs = objects_in_time_order(session, run_id)
    if not objs:
        raise InvalidInputError(
            f"run {run_id} has no objects (nothing at or above the shim's threshold was "
            f"allocated, or the profile failed): nothing to place"
        )
    metrics = metrics_by_object(session, run_id)
    out = []
    aggregates: list[ObjectObservation] = []
    for o, site_hash in objs:
        ms = metrics.get(o.id, [])
        summary = o.summary or {}
        lifetime = summary.get("lifetime_ns")
        native = summary.get("native_site")
        out.append(
            ObjectObservation(
                site=site_hash,
                alloc_seq=o.alloc_seq,
                size=o.size_bytes,
                alloc_ns=o.alloc_ns,
                free_ns=o.free_ns,
                lifetime_ns=float(lifetime) if isinstance(lifetime, int | float) else None,
                chunk_index=o.chunk_index,
                chunk_count=o.chunk_count,
                intervals=[
                    Interval(
                        m.interval_index,
                        m.sampled_pages,
                        m.touched_pages,
                        m.written_pages,
                        m.page_faults,
                        m.end_ns,
                    )
                    for m in ms
                ],
                mem=[
                    MemCounts(
                        m.perf_mem_samples,
                        m.perf_mem_llc_misses,
                        m.perf_mem_latency_sum,
                        m.perf_mem_tlb_misses,
                    )
                    for m in ms
                    if m.perf_mem_samples
                ],
                first_touch_faults=o.first_touch_faults,
                object_id=o.id,
                site_id=o.site_id,
                native_site=str(native) if native else None,
            )
        )
        if "aggregate" in summary:
            aggregates.append(out[-1])
    folded = ((run.signals or {}).get("shim") or {}).get("summarized")
    return RunObservation(
        out,
        wall_ns=(run.program_seconds or 0.0) * 1e9,
        run_id=run_id,
        history=_summarized_history(folded, aggregates),
    )


def _summarized_history(
    folded: object, aggregates: Sequence[ObjectObservation]
) -> RunHistory | None:
    """What a summarized run's folded objects add run-wide, beyond its aggregate rows.

    The ingest (collectors/profile/reduce.py) stores one aggregate object per site and
    window for many small short-lived objects and keeps their exact totals; the run-wide
    shares and per-site counts of the kept objects are then those of the full form.
    """
    if not isinstance(folded, dict):
        return None
    hist = RunHistory()
    hist.footprint = int(folded.get("bytes", 0)) - sum(a.size for a in aggregates)
    hist.access_est = float(folded.get("access_est", 0.0)) - sum(_access_est(a) for a in aggregates)
    rows: dict[str, int] = {}
    for a in aggregates:
        rows[a.site] = rows.get(a.site, 0) + 1
    site_objects = folded.get("site_objects") or {}
    for site, n in site_objects.items():
        hist.site_allocs[str(site)] = int(n) - rows.get(str(site), 0)
    return hist


def run_features(session: Session, run_id: int) -> pd.DataFrame:
    """One row per object (chunk) of ``run_id``: :func:`features` of its stored evidence."""
    return features(observations_from_store(session, run_id))


def matrix(table: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """The model's input: the chosen feature columns, in :data:`FEATURES` order."""
    names = list(features or FEATURES)
    unknown = [f for f in names if f not in FEATURES and f not in RETIRED]
    if unknown:
        raise InvalidInputError(
            f"unknown feature {unknown[0]!r} (known: {', '.join(FEATURES)}); a model trained "
            f"on it needs retraining with this version (`placer train`)"
        )
    if all(f in table.columns for f in names):
        return table[names].astype(float)
    import pandas as pd  # lazy: heavy

    # a model trained with a retired feature: its values from the column that equals it
    cols = {f: table[f if f in table.columns else RETIRED[f]] for f in names}
    return pd.DataFrame(cols, index=table.index).astype(float)
