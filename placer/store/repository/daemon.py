"""Daemon jobs and their events, and the outcomes the fleet report lists beside them.

The daemon writes a job's row when it attaches, then state snapshots and events in
batches (:mod:`placer.daemon.ingest`); events are inserted race-free on their natural key
``(job_id, kind, seq)``, so a batch re-sent after a crash inserts nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from placer.store.models import DaemonEvent, DaemonJob, Run
from placer.store.repository.common import insert_ignore

EVENT_KEY = ("job_id", "kind", "seq")
#: Events kept per job and kind: the newest. A job watched for hours makes a window event
#: per tick and a decision per object it places; without a bound the store grows with
#: the job's age (issue 17). Totals live in the job's state (``decisions_total``, ...).
EVENTS_KEPT = 10_000

# --------------------------------------------------------------------------------- jobs


def add_daemon_job(
    session: Session,
    *,
    host_id: int | None,
    pid: int,
    pid_start_time: int,
    kind: str,
    command: list[Any],
    run_id: int | None,
    state: dict[str, Any],
    last_seen_at: dt.datetime,
) -> DaemonJob:
    """A newly attached job's row (flushed: its id is set)."""
    row = DaemonJob(
        host_id=host_id,
        pid=pid,
        pid_start_time=pid_start_time,
        kind=kind,
        command=command,
        status="attached",
        run_id=run_id,
        state=state,
        last_seen_at=last_seen_at,
    )
    session.add(row)
    session.flush()
    return row


def attached_jobs(session: Session, host_id: int | None) -> list[DaemonJob]:
    """Jobs the store says this host's daemon watches (a restarted daemon adopts them)."""
    stmt = select(DaemonJob).where(DaemonJob.status == "attached", DaemonJob.host_id == host_id)
    return list(session.scalars(stmt))


def host_job(session: Session, job_id: int, host_id: int | None) -> DaemonJob | None:
    """Job ``job_id`` if this host's daemon attached it."""
    stmt = select(DaemonJob).where(DaemonJob.id == job_id, DaemonJob.host_id == host_id)
    return session.scalars(stmt).first()


def link_job_run(session: Session, job: DaemonJob, run_id: int) -> bool:
    """Set the job's run; False (nothing changed) when run ``run_id`` is not stored."""
    if session.get(Run, run_id) is None:
        return False
    session.execute(update(DaemonJob).where(DaemonJob.id == job.id).values(run_id=run_id))
    return True


def daemon_jobs(session: Session, *, limit: int = 0, job_id: int | None = None) -> list[DaemonJob]:
    """Jobs newest first: only ``job_id`` when given, else the newest ``limit`` (0: all)."""
    stmt = select(DaemonJob).order_by(DaemonJob.id.desc())
    if job_id is not None:
        stmt = stmt.where(DaemonJob.id == job_id)
    elif limit > 0:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def update_job(session: Session, job_id: int, values: Mapping[str, Any]) -> None:
    """Write ``values`` (state, status, times, pid) on the job's row."""
    session.execute(update(DaemonJob).where(DaemonJob.id == job_id).values(**values))


# ------------------------------------------------------------------------------- events


def add_events(
    session: Session, rows: Sequence[Mapping[str, Any]], keep: int = EVENTS_KEPT
) -> None:
    """Insert events in one statement; one already stored (same job, kind, seq) is skipped.

    Then each (job, kind) written keeps its newest ``keep`` events (by ``seq``): older ones
    are deleted, so the store levels off however long a job runs.
    """
    insert_ignore(session, DaemonEvent, rows, EVENT_KEY)
    newest: dict[tuple[int, str], int] = {}
    for r in rows:
        key = (int(r["job_id"]), str(r["kind"]))
        newest[key] = max(newest.get(key, -1), int(r["seq"]))
    for (job_id, kind), seq in newest.items():
        if seq >= keep:
            session.execute(
                delete(DaemonEvent).where(
                    DaemonEvent.job_id == job_id,
                    DaemonEvent.kind == kind,
                    DaemonEvent.seq <= seq - keep,
                )
            )


def job_events(
    session: Session, job_id: int, kind: str, limit: int
) -> list[tuple[dt.datetime, dict[str, Any]]]:
    """The job's newest ``limit`` events of ``kind`` as (time, document), newest first."""
    stmt = (
        select(DaemonEvent.at, DaemonEvent.document)
        .where(DaemonEvent.job_id == job_id, DaemonEvent.kind == kind)
        .order_by(DaemonEvent.seq.desc())
        .limit(limit)
    )
    return [(at, doc) for at, doc in session.execute(stmt)]


# ------------------------------------------------------------------- fleet: the plans made
