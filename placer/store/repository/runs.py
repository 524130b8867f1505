"""Runs, applications, sites, objects, their metrics and deep-mode site statistics.

What profiling writes (one run's sites, objects and per-interval metrics, in bulk) and
what placement, the emulator and the CLI read back. Sites are shared by all runs, so
their get-or-create survives a parallel profile inserting the same site first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from placer.errors import NotFoundError, StoreError
from placer.store.models import (
    AllocObject,
    Application,
    DeepSiteStat,
    ObjectMetric,
    Run,
    Site,
)
from placer.store.repository.common import insert_ignore

#: Rows per statement of the bulk paths (SQLite's and PostgreSQL's parameter limits).
_SITE_BATCH = 500
_OBJECT_BATCH = 1000
_METRIC_BATCH = 5000


class RunNotFoundError(NotFoundError):
    """A run id that is not in the store."""


# ------------------------------------------------------------------------ applications
def application(session: Session, name: str) -> Application:
    """The application called ``name`` (created on first use, race-free)."""
    app = session.scalar(select(Application).where(Application.name == name))
    if app is not None:
        return app
    insert_ignore(session, Application, [{"name": name}], ["name"])
    app = session.scalar(select(Application).where(Application.name == name))
    assert app is not None
    return app


def application_name(session: Session, application_id: int) -> str | None:
    app = session.get(Application, application_id)
    return app.name if app is not None else None


# -------------------------------------------------------------------------------- runs
def add_run(
    session: Session,
    app_name: str,
    kind: str,
    *,
    command: Sequence[Any],
    cwd: str,
    binary_path: str,
    build_id: str,
    inputs: dict[str, Any],
    status: str = "running",
    host_id: int | None = None,
    exit_code: int | None = None,
    wall_seconds: float | None = None,
    signals: dict[str, Any] | None = None,
) -> Run:
    """Store a run of ``app_name`` (the application is created on first use); id set."""
    run = Run(
        application_id=application(session, app_name).id,
        host_id=host_id,
        kind=kind,
        command=list(command),
        cwd=cwd,
        binary_path=binary_path,
        build_id=build_id,
        inputs=inputs,
        status=status,
        exit_code=exit_code,
        wall_seconds=wall_seconds,
        signals=dict(signals or {}),
    )
    session.add(run)
    session.flush()
    return run


def find_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def require_run(session: Session, run_id: int) -> Run:
    """The run, or a one-line error that points to ``placer runs``."""
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFoundError(f"run {run_id} is not in the store (see `placer runs`)")
    return run


def run_with_application(session: Session, run_id: int) -> tuple[Run, str] | None:
    """The run and its application's name, or None."""
    row = session.execute(
        select(Run, Application.name)
        .join(Application, Application.id == Run.application_id)
        .where(Run.id == run_id)
    ).first()
    return None if row is None else (row[0], row[1])


@dataclass(frozen=True)
class RunListing:
    """One line of ``placer runs``: the run, its application, how many objects it stored."""

    run: Run
    application: str
    objects: int


def runs_with_object_counts(
    session: Session, *, app: str | None = None, limit: int = 0
) -> list[RunListing]:
    """Profiled runs, newest first, with their object counts (``limit`` 0: all)."""
    counts = (
        select(AllocObject.run_id, func.count(AllocObject.id).label("n"))
        .group_by(AllocObject.run_id)
        .subquery()
    )
    q = (
        select(Run, Application.name, counts.c.n)
        .join(Application, Application.id == Run.application_id)
        .outerjoin(counts, counts.c.run_id == Run.id)
        .where(Run.kind == "profile")
        .order_by(Run.id.desc())
    )
    if app:
        q = q.where(Application.name == app)
    if limit > 0:
        q = q.limit(limit)
    return [RunListing(run, name, int(n or 0)) for run, name, n in session.execute(q)]


def succeeded_runs_of_build(session: Session, build_id: str, *, besides: int) -> list[Run]:
    """Succeeded runs of one binary except run ``besides``, newest first."""
    return list(
        session.scalars(
            select(Run)
            .where(Run.build_id == build_id, Run.status == "succeeded", Run.id != besides)
            .order_by(Run.id.desc())
        ).all()
    )


def merge_run_signals(run: Run, signals: Mapping[str, Any]) -> None:
    """Add ``signals`` to the run's (a new dict, so the JSON column sees the change)."""
    merged = dict(run.signals or {})
    merged.update(signals)
    run.signals = merged


def abandon_runs(
    session: Session, host_id: int, alive: Callable[[Mapping[str, Any]], bool]
) -> list[Run]:
    """Mark this host's ``running`` runs whose placer process is gone as ``abandoned``.

    A placer killed with SIGKILL cannot finish its run; ``signals.placer`` holds the pid
    (and start time) that owned it, and ``alive`` says whether that process still runs.
    Runs without that record (older placer) are left as they are.
    """
    rows = session.scalars(select(Run).where(Run.status == "running", Run.host_id == host_id)).all()
    gone = []
    for run in rows:
        owner = (run.signals or {}).get("placer")
        if not isinstance(owner, dict) or "pid" not in owner or alive(owner):
            continue
        run.status = "abandoned"
        run.ended_at = dt.datetime.now(dt.UTC)
        merge_run_signals(
            run, {"error": f"placer (pid {owner['pid']}) ended without finishing this run"}
        )
        gone.append(run)
    session.flush()
    return gone


def update_run_inputs(session: Session, run_id: int, values: Mapping[str, Any]) -> Run:
    """Add ``values`` to a run's inputs and write them now."""
    run = require_run(session, run_id)
    run.inputs = {**(run.inputs or {}), **values}
    session.flush()
    return run


# ------------------------------------------------------------------------------- sites
def site_ids_by_hash(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    """Ids of the stored sites among ``hashes`` (unknown hashes are left out)."""
    return _site_ids(session, hashes)


def _site_ids(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    wanted = list(hashes)
    ids: dict[str, int] = {}
    for i in range(0, len(wanted), _SITE_BATCH):
        batch = wanted[i : i + _SITE_BATCH]
        for sid, h in session.execute(
            select(Site.id, Site.site_hash).where(Site.site_hash.in_(batch))
        ):
            ids[h] = sid
    return ids


def get_or_create_sites(session: Session, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Site ids by hash; new hashes are inserted from ``rows`` (hash -> Site columns).

    Sites are shared by all runs: the new ones are inserted with ``ON CONFLICT DO NOTHING``
    (:func:`insert_ignore`), so one that another profile inserted meanwhile is read instead
    of failing the whole run. One statement per set of columns, not a savepoint per site:
    a program of 10,000 sites took ~20 s that way (issue 17).
    """
    ids = site_ids_by_hash(session, rows)
    new: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for h, row in rows.items():
        if h not in ids:
            r = {"site_hash": h, **row}
            new.setdefault(tuple(sorted(r)), []).append(r)
    for same_columns in new.values():
        insert_ignore(session, Site, same_columns, ("site_hash",))
    if new:
        # read back what this insert or a concurrent profile stored
        ids.update(_site_ids(session, [r["site_hash"] for g in new.values() for r in g]))
    missing = [h for h in rows if h not in ids]
    if missing:  # never: inserted or found; a backend without a unique site_hash?
        raise StoreError(f"sites were not stored: {', '.join(missing[:3])}")
    return ids


def sites_by_id(session: Session, site_ids: Iterable[int]) -> dict[int, Site]:
    wanted = set(site_ids)
    if not wanted:
        return {}
    return {s.id: s for s in session.scalars(select(Site).where(Site.id.in_(wanted)))}


def sites_of_run(session: Session, run_id: int) -> list[Site]:
    """The sites the run's objects were allocated at."""
    return list(
        session.scalars(
            select(Site).where(
                Site.id.in_(select(AllocObject.site_id).where(AllocObject.run_id == run_id))
            )
        ).all()
    )


# ----------------------------------------------------------------------------- objects
def add_objects(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Bulk insert of AllocObject rows (column dicts); their ids, in the order given."""
    ids: list[int] = []
    for k in range(0, len(rows), _OBJECT_BATCH):
        batch = rows[k : k + _OBJECT_BATCH]
        ids.extend(
            session.scalars(
                insert(AllocObject).returning(AllocObject.id, sort_by_parameter_order=True),
                list(batch),
            ).all()
        )
    return ids


def add_object_metrics(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Bulk insert of ObjectMetric rows (column dicts, each with its ``object_id``)."""
    for k in range(0, len(rows), _METRIC_BATCH):
        session.execute(insert(ObjectMetric), list(rows[k : k + _METRIC_BATCH]))


def objects_of_run(session: Session, run_id: int) -> list[AllocObject]:
    """The run's objects in the order they were stored."""
    return list(
        session.scalars(
            select(AllocObject).where(AllocObject.run_id == run_id).order_by(AllocObject.id)
        ).all()
    )


def objects_with_sites(session: Session, run_id: int) -> list[tuple[AllocObject, Site]]:
    """The run's objects, each with its site (in the database's order)."""
    rows = session.execute(
        select(AllocObject, Site)
        .join(Site, Site.id == AllocObject.site_id)
        .where(AllocObject.run_id == run_id)
    ).all()
    return [(o, s) for o, s in rows]


def objects_in_time_order(session: Session, run_id: int) -> list[tuple[AllocObject, str]]:
    """The run's objects with their site hashes, in allocation order (chunks in order)."""
    rows = session.execute(
        select(AllocObject, Site.site_hash)
        .join(Site, Site.id == AllocObject.site_id)
        .where(AllocObject.run_id == run_id)
        .order_by(AllocObject.alloc_ns, AllocObject.alloc_seq, AllocObject.chunk_index)
    ).all()
    return [(o, h) for o, h in rows]


def objects_with_sites_in_time_order(
    session: Session, run_id: int
) -> list[tuple[AllocObject, Site]]:
    """The run's objects with their sites, in allocation order (chunks in order)."""
    rows = session.execute(
        select(AllocObject, Site)
        .join(Site, Site.id == AllocObject.site_id)
        .where(AllocObject.run_id == run_id)
        .order_by(AllocObject.alloc_ns, AllocObject.alloc_seq, AllocObject.chunk_index)
    ).all()
    return [(o, s) for o, s in rows]


def metrics_by_object(session: Session, run_id: int) -> dict[int, list[ObjectMetric]]:
    """The run's metric rows by object id, each object's in interval order."""
    out: dict[int, list[ObjectMetric]] = {}
    for m in session.scalars(
        select(ObjectMetric)
        .join(AllocObject, AllocObject.id == ObjectMetric.object_id)
        .where(AllocObject.run_id == run_id)
        .order_by(ObjectMetric.object_id, ObjectMetric.interval_index)
    ):
        out.setdefault(m.object_id, []).append(m)
    return out


# ------------------------------------------------------------------ deep site statistics
def add_deep_site_stats(
    session: Session, run_id: int, stats: Mapping[int, Mapping[str, Any]]
) -> None:
    """Store DeepSiteStat rows of a run: site id -> its columns."""
    session.add_all(
        DeepSiteStat(run_id=run_id, site_id=sid, **values) for sid, values in stats.items()
    )


def clear_deep_site_stats(session: Session, run_id: int) -> None:
    """Drop a run's DeepSiteStat rows (before storing a new pass)."""
    session.execute(delete(DeepSiteStat).where(DeepSiteStat.run_id == run_id))


def deep_stats_by_site(session: Session, run_id: int) -> dict[int, DeepSiteStat]:
    return {
        d.site_id: d
        for d in session.scalars(select(DeepSiteStat).where(DeepSiteStat.run_id == run_id))
    }


def has_deep_stats(session: Session, run_id: int) -> bool:
    """Whether the run holds any deep-mode (DHAT) statistics."""
    found = session.scalar(select(DeepSiteStat.id).where(DeepSiteStat.run_id == run_id).limit(1))
    return found is not None
