"""Per-object features from the store: only what a production run collects cheaply.

The honesty rule (design map §5): the emulator makes labels from exact deep-mode counts
(DHAT bytes read/written); a model fed those counts would learn the emulator's formula and
prove nothing. So features come only from the shim (sizes, lifetimes, page-poison samples),
perf software events (first-touch faults) and, where a host has it, ``perf mem``.
:data:`FORBIDDEN_SOURCES` names what must never be read here; a test checks it.

Every feature is scale-free across programs (shares, densities, logs) so a model trained on
some applications transfers to another. Missing signals are NaN (LightGBM routes them).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from placer.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

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


def run_features(session: Any, run_id: int) -> pd.DataFrame:
    """One row per object (chunk) of ``run_id``: identity columns plus :data:`FEATURES`.

    Identity columns: ``object_id, run_id, site_id, site_hash, chunk_index, size_bytes,
    alloc_ns, end_ns, native_site`` (the shim's hash for Python sites); helper columns for
    the baselines: ``access_est`` (touched-page estimate) and ``miss_est`` (perf-mem LLC
    misses, NaN without perf mem).
    """
    import pandas as pd
    from sqlalchemy import select

    from placer.store.models import AllocObject, ObjectMetric, Run, Site

    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} is not in the store (see `placer runs`)")
    objs = session.execute(
        select(AllocObject, Site.site_hash)
        .join(Site, Site.id == AllocObject.site_id)
        .where(AllocObject.run_id == run_id)
        .order_by(AllocObject.alloc_ns, AllocObject.alloc_seq, AllocObject.chunk_index)
    ).all()
    if not objs:
        raise InvalidInputError(
            f"run {run_id} has no objects (nothing at or above the shim's threshold was "
            f"allocated, or the profile failed): nothing to place"
        )
    metrics: dict[int, list[Any]] = {}
    for m in session.scalars(
        select(ObjectMetric)
        .join(AllocObject, AllocObject.id == ObjectMetric.object_id)
        .where(AllocObject.run_id == run_id)
        .order_by(ObjectMetric.object_id, ObjectMetric.interval_index)
    ):
        metrics.setdefault(m.object_id, []).append(m)

    t0 = min(o.alloc_ns for o, _ in objs)
    ends = [o.free_ns for o, _ in objs if o.free_ns is not None]
    ends += [m.end_ns for ms in metrics.values() for m in ms]
    wall_ns = (run.program_seconds or 0.0) * 1e9
    span = max(wall_ns, (max(ends) - t0) if ends else 0.0, 1.0)
    max_interval = max((m.interval_index for ms in metrics.values() for m in ms), default=0)
    site_allocs: dict[int, set[int]] = {}
    for o, _ in objs:
        site_allocs.setdefault(o.site_id, set()).add(o.alloc_seq)
    footprint = float(sum(o.size_bytes for o, _ in objs)) or 1.0

    rows = []
    for o, site_hash in objs:
        ms = metrics.get(o.id, [])
        pages = max(o.size_bytes / PAGE, 1.0)
        dens = [
            (m.interval_index, m.touched_pages / m.sampled_pages) for m in ms if m.sampled_pages > 0
        ]
        touched = sum(m.touched_pages for m in ms)
        written = sum(m.written_pages for m in ms)
        faults = sum(m.page_faults for m in ms) or o.first_touch_faults
        mem_n = sum(m.perf_mem_samples for m in ms)
        summary = o.summary or {}
        lifetime = summary.get("lifetime_ns")
        if not isinstance(lifetime, int | float):
            lifetime = (o.free_ns if o.free_ns is not None else t0 + span) - o.alloc_ns
        active = [d for _, d in dens if d > 0]
        row = {
            "object_id": o.id,
            "run_id": run_id,
            "site_id": o.site_id,
            "site_hash": site_hash,
            "chunk_index": o.chunk_index,
            "size_bytes": int(o.size_bytes),
            "native_site": str(summary.get("native_site") or site_hash),
            "alloc_ns": int(o.alloc_ns),
            "end_ns": int(o.alloc_ns + max(float(lifetime), 0.0)),
            "density_mean": (sum(d for _, d in dens) / len(dens)) if dens else math.nan,
            "density_peak": max((d for _, d in dens), default=math.nan),
            "density_trend": density_trend([(i / max(max_interval, 1), d) for i, d in dens])
            if dens
            else math.nan,
            "active_share": (len(active) / len(dens)) if dens else math.nan,
            "write_share": (written / touched) if touched else math.nan,
            "access_est": sum(d for _, d in dens) * pages,
            "log_size": math.log2(max(o.size_bytes, 1)),
            "size_share": o.size_bytes / footprint,
            "chunk_position": (o.chunk_index / o.chunk_count) if o.chunk_count > 1 else 0.0,
            "lifetime_share": min(max(float(lifetime) / span, 0.0), 1.0),
            "alloc_time_share": min(max((o.alloc_ns - t0) / span, 0.0), 1.0),
            "site_allocs": math.log2(1 + len(site_allocs[o.site_id])),
            "fault_density": faults / pages,
            "miss_est": float(sum(m.perf_mem_llc_misses for m in ms)) if mem_n else math.nan,
            "mem_latency": (sum(m.perf_mem_latency_sum for m in ms) / mem_n) if mem_n else math.nan,
            "tlb_miss_share": (sum(m.perf_mem_tlb_misses for m in ms) / mem_n)
            if mem_n
            else math.nan,
        }
        rows.append(row)
    df = pd.DataFrame(rows)
    total_access = df["access_est"].sum()
    df["access_share"] = df["access_est"] / total_access if total_access > 0 else 0.0
    total_miss = df["miss_est"].sum(min_count=1)
    has_mem = bool(df["miss_est"].notna().any()) and total_miss > 0
    df["llc_miss_share"] = df["miss_est"] / total_miss if has_mem else math.nan
    df["llc_miss_density"] = (df["miss_est"] / (df["size_bytes"] / 2**20)) if has_mem else math.nan
    return df


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
    import pandas as pd

    # a model trained with a retired feature: its values from the column that equals it
    cols = {f: table[f if f in table.columns else RETIRED[f]] for f in names}
    return pd.DataFrame(cols, index=table.index).astype(float)
