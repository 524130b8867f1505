"""Batched, idempotent writes of the daemon to the store, with a bounded buffer.

Everything the daemon stores goes through one FIFO: events (``placer_daemon_events``
rows) and job-state snapshots (the ``state`` document and status of a
``placer_daemon_jobs`` row). A flush writes up to ``batch_max`` items in one transaction,
in order, so the state stored for a job always matches the events stored before it: the
state carries the shim-log offset and the per-kind event counters a restarted daemon
resumes from. Events are inserted with ``ON CONFLICT DO NOTHING`` on their natural key
``(job_id, kind, seq)``, so re-ingesting after a crash inserts nothing twice.

While the store is unreachable (or locked beyond the daemon's ``store_timeout``) items
stay queued; the queue holds at most ``buffer_max`` items, and past that the oldest are
dropped and counted (``dropped``), never an unbounded memory.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from placer.contracts.pipeline import StageInfo
from placer.errors import StoreError
from placer.store.repository.daemon import add_events, update_job
from placer.store.repository.pipelines import add_pipeline, add_study, find_study, pipeline_by_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class EventRow:
    job_id: int
    kind: str  # decision | migration | knobs | window
    seq: int
    at: dt.datetime
    document: dict[str, Any]


@dataclass
class StateRow:
    job_id: int
    state: dict[str, Any]
    status: str | None = None
    last_seen_at: dt.datetime | None = None
    detached_at: dt.datetime | None = None
    pid: int | None = None  # the program's pid once known (placer run/profile jobs)
    pid_start_time: int | None = None


Item = EventRow | StateRow


class Writer:
    def __init__(self, store: Any, buffer_max: int, batch_max: int) -> None:
        self.store = store
        self.buffer_max = buffer_max
        self.batch_max = batch_max
        self.queue: deque[Item] = deque()
        self.lock = threading.Lock()
        self.dropped = 0  # events dropped because the buffer was full
        self.written = 0  # events written
        self.failures = 0  # flushes that failed
        self.last_error: str | None = None
        self.unreachable_since: float | None = None

    def put(self, item: Item) -> None:
        with self.lock:
            self.queue.append(item)
            while len(self.queue) > self.buffer_max:
                old = self.queue.popleft()
                if isinstance(old, EventRow):
                    self.dropped += 1

    def pending(self) -> int:
        with self.lock:
            return len(self.queue)

    def flush(self, deadline: float | None = None) -> bool:
        """Write queued items batch by batch; False (items kept) if the store failed."""
        while True:
            with self.lock:
                batch = [self.queue[i] for i in range(min(self.batch_max, len(self.queue)))]
            if not batch:
                return True
            try:
                written = self._write(batch)
            except StoreError as exc:
                self.failures += 1
                self.last_error = str(exc)
                if self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
                return False
            with self.lock:
                # the batch is the queue's head unless put() dropped some of it meanwhile
                for item in batch:
                    if self.queue and self.queue[0] is item:
                        self.queue.popleft()
            self.written += written
            self.unreachable_since = None
            self.last_error = None
            if deadline is not None and time.monotonic() > deadline:
                return True

    def _write(self, batch: list[Item]) -> int:
        events = [b for b in batch if isinstance(b, EventRow)]
        states: dict[int, StateRow] = {}
        for b in batch:
            if isinstance(b, StateRow):
                prev = states.get(b.job_id)
                if prev is not None:  # the later snapshot wins; keep an earlier close
                    b.status = b.status or prev.status
                    b.detached_at = b.detached_at or prev.detached_at
                    b.last_seen_at = b.last_seen_at or prev.last_seen_at
                states[b.job_id] = b
        with self.store.session() as s:
            add_events(
                s,
                [
                    {
                        "job_id": e.job_id,
                        "kind": e.kind,
                        "seq": e.seq,
                        "at": e.at,
                        "document": e.document,
                    }
                    for e in events
                ],
            )
            for st in states.values():
                values: dict[str, Any] = {"state": st.state}
                if st.status is not None:
                    values["status"] = st.status
                if st.last_seen_at is not None:
                    values["last_seen_at"] = st.last_seen_at
                if st.detached_at is not None:
                    values["detached_at"] = st.detached_at
                if st.pid is not None:
                    values["pid"] = st.pid
                    values["pid_start_time"] = st.pid_start_time or 0
                update_job(s, st.job_id, values)
                if isinstance(st.state.get("study_facts"), dict):
                    sync_study_row(s, st.job_id, st.state, st.status)
        return len(events)


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def sync_study_row(
    session: Session, job_id: int, state: dict[str, Any], status: str | None
) -> None:
    """Keep a pipeline job's ``placer_tuning_studies`` row (and its pipeline row) in step
    with the job's state, so `placer pipelines` and the reports list daemon studies beside
    `placer tune`'s. Idempotent: the row is found by the Optuna study name."""
    name = state.get("study")
    facts = state.get("study_facts") or {}
    if not isinstance(name, str) or not name:
        return
    row = find_study(session, name)
    if row is None:
        pipeline = add_pipeline(
            session,
            str(state.get("name") or f"daemon-job{job_id}"),
            str(facts.get("engine") or "unknown"),
            f"daemon:job{job_id}",
            [
                StageInfo(
                    name=str(st.get("name")),
                    kind=str(st.get("kind") or "map"),
                    sequential=bool(st.get("sequential")),
                    random=bool(st.get("random")),
                )
                for st in facts.get("stages") or []
            ],
        )
        row = add_study(
            session,
            pipeline.id,
            name,
            budget_cores=float(facts.get("budget_cores") or 0.0),
            budget_memory_bytes=int(facts.get("budget_memory_bytes") or 0),
            naive_throughput=state.get("first_samples_per_second"),
            upper_bound=_finite_or_none(facts.get("upper_bound")),
        )
    best = state.get("best") or {}
    row.n_trials = int(state.get("trials") or 0)
    if best.get("samples_per_second") is not None:
        row.best_throughput = float(best["samples_per_second"])
        row.best_config = dict(best.get("knobs") or {})
    if row.naive_throughput is None:
        row.naive_throughput = state.get("first_samples_per_second")
    if state.get("settled"):
        row.status = "done"
    elif status in ("exited", "crashed", "killed", "gone", "detached", "failed"):
        row.status = "interrupted"
    else:
        row.status = "running"
    pipeline_row = pipeline_by_id(session, row.pipeline_id)
    if pipeline_row is not None and row.best_throughput is not None:
        pipeline_row.best_config = dict(row.best_config or {})
        pipeline_row.best_throughput = row.best_throughput
