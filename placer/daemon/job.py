"""One watched job: its typed state (what is stored and shown) and its runtime handles.

:class:`JobState` is the job's ``state`` document as typed fields. It is written to the
store with every state snapshot (``placer_daemon_jobs.state``), read back by a restarted
daemon (:meth:`JobState.from_doc`) and shown by ``placer jobs`` / ``placer job ID``; a
field that is ``None`` is not in the document (so the keys are those the daemon has set).
Derived entries (``signals``: where the job's counters come from) are computed properties,
never stored fields, so they cannot go stale. :class:`Job` adds what lives only in this
process: the shim-log tail, the object table, the tuner, perf children and locks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from placer.daemon import procs
from placer.daemon.decide import ObjectTable, PipelineTuner
from placer.daemon.perfmem import MAX_CHILDREN, MemWindow, PerfMemRecorder
from placer.daemon.perfstat import PerfCounter, PerfSupport
from placer.daemon.tail import ShimTail

#: Decisions kept in a job's state document (the total is ``decisions_total``).
DECISIONS_KEPT = 500
KNOB_CHANGES_KEPT = 500
#: Migration summaries a job keeps in memory for ``placer job ID`` (all are events).
MIGRATIONS_SHOWN = 20
TERMINAL = ("exited", "crashed", "killed", "gone", "detached", "failed")
#: Marks a :class:`JobState` field that lives in this process only (not in the document).
RUNTIME = {"doc": False}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None = None) -> str:
    return (t or now()).isoformat(timespec="milliseconds")


class TailDoc(TypedDict, total=False):
    """Where the job's shim log is read (``none``: the process has no shim log)."""

    path: str
    offset: int
    none: bool
    error: str


class EndDoc(TypedDict):
    """The shim log's END record: how the program ended."""

    reason: int
    dropped_records: int


class ExitDoc(TypedDict, total=False):
    status: str
    exit_code: int | None
    at: str
    note: str


@dataclass
class PerfContext:
    """What perf can do on this host (``support``, once checked) and whether it is on."""

    support: PerfSupport | None = None
    enabled: bool = True

    def signals(self) -> dict[str, str]:
        """Where any job's counters come from here (before what happened to the job)."""
        sup = self.support or PerfSupport(False, None, "perf not checked")
        return sup.signals(self.enabled)


@dataclass
class JobState:
    """The job's ``state`` document, typed (see the module docstring)."""

    owner_uid: int
    budget: str | None  # the DRAM budget when the job was attached
    seq: dict[str, int] = field(default_factory=dict)  # events written, per kind
    decisions: list[dict[str, Any]] = field(default_factory=list)  # newest DECISIONS_KEPT
    decisions_total: int = 0
    migrations: int = 0
    bytes_migrated: int = 0
    pages_on_target: int | None = None
    awaiting_program: bool = False  # a wrapper registered; in the document only when true
    wrapper_pid: int | None = None  # the wrapper, once its program was found
    pid: int | None = None  # the program found under the wrapper
    pid_start_time: int | None = None
    command: list[str] | None = None
    # pipeline jobs
    space: dict[str, dict[str, Any]] | None = None
    knobs: dict[str, Any] | None = None
    knob_changes: list[dict[str, Any]] | None = None
    name: str | None = None
    shape: dict[str, Any] | None = None
    study: str | None = None
    study_facts: dict[str, Any] | None = None
    first_trial: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    first_samples_per_second: float | None = None
    last_samples_per_second: float | None = None
    trials: int | None = None
    settled: bool | None = None
    tuner_error: str | None = None
    # what was collected
    tail: TailDoc | None = None
    end: EndDoc | None = None
    perf_pid: int | None = None
    perf_mem_windows: int | None = None
    perf_mem_samples: int | None = None
    windows: int | None = None
    samples_ingested: int | None = None
    records_ingested: int | None = None
    # objects jobs: the last ranking
    model: str | None = None
    ranked_at: str | None = None
    rank_seconds: float | None = None  # how long the last ranking took (wall)
    rankings: int | None = None
    tiers: dict[str, str] | None = None
    # the end
    exit: ExitDoc | None = None
    signal: str | None = None
    run_id: int | None = None
    # facts the derived ``signals`` come from (not stored as such)
    kind: str = field(default="objects", metadata=RUNTIME)
    sensed: bool = field(default=False, metadata=RUNTIME)  # sensors started once
    perf_failed: str | None = field(default=None, metadata=RUNTIME)  # why /proc counts
    mem_failed: str | None = field(default=None, metadata=RUNTIME)  # why perf mem does not
    mem_window_s: float | None = field(default=None, metadata=RUNTIME)  # perf mem sampled
    perf: PerfContext = field(default_factory=PerfContext, metadata=RUNTIME)

    @property
    def signals(self) -> dict[str, str] | None:
        """Where the job's counters and perf mem samples come from (None: not sensed yet)."""
        if not self.sensed:
            return None
        sig = self.perf.signals()
        mem_works = self.perf.support is not None and self.perf.support.mem
        if self.perf_failed:
            sig["counters"] = f"/proc/PID/stat ({self.perf_failed})"
        if self.mem_failed:
            sig["perf_mem"] = f"not sampled ({self.mem_failed})"
        elif self.mem_window_s is not None and self.perf.enabled:
            sig["perf_mem"] = f"sampled: perf mem record, {self.mem_window_s:g} s windows"
        elif mem_works and self.perf.enabled and self.kind == "objects":
            sig["perf_mem"] = f"available; waiting (at most {MAX_CHILDREN} jobs at once)"
        return sig

    def to_doc(self) -> dict[str, Any]:
        """The stored ``state`` document: set fields, then the derived ones."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("doc", True) and value is not None:
                doc[f.name] = value
        if not self.awaiting_program:
            del doc["awaiting_program"]
        signals = self.signals
        if signals is not None:
            doc["signals"] = signals
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], kind: str, perf: PerfContext) -> JobState:
        """A stored document back as a state (a restarted daemon adopting its jobs)."""
        names = {f.name for f in dataclasses.fields(cls) if f.metadata.get("doc", True)}
        known = {k: v for k, v in doc.items() if k in names}
        known["owner_uid"] = int(doc.get("owner_uid", 0))
        known["budget"] = doc.get("budget")
        known["awaiting_program"] = bool(doc.get("awaiting_program"))
        return cls(**known, kind=kind, sensed="signals" in doc, perf=perf)

    def add_decision(self, entry: dict[str, Any]) -> None:
        """Keep one decision (the newest :data:`DECISIONS_KEPT`) and count it."""
        self.decisions.append(entry)
        del self.decisions[:-DECISIONS_KEPT]
        self.decisions_total += 1


@dataclass
class Job:
    id: int
    pid: int
    start_time: int
    kind: str  # objects | pipeline
    command: list[str]
    state: JobState
    status: str = "attached"
    wrapper_pid: int | None = None  # placer run/profile registered itself; find the program
    tail: ShimTail | None = None
    table: ObjectTable = field(default_factory=ObjectTable)
    tuner: PipelineTuner | None = None
    last_rank: float = 0.0
    last_maps: float = 0.0
    prev: procs.ProcInfo | None = None
    pending: deque[tuple[str, int, int]] = field(default_factory=deque)  # key, node, page idx
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    tune_lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = True
    perf: PerfCounter | None = None
    mem: PerfMemRecorder | None = None  # rolling perf mem windows (objects jobs)
    mem_pending: MemWindow | None = None  # windows read since the last window event
    refused: str | None = None  # why its shim log was refused (the job is closed as failed)
    recent_migrations: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MIGRATIONS_SHOWN)
    )

    @property
    def owner_uid(self) -> int:
        return self.state.owner_uid

    def seq(self, kind: str) -> int:
        """The next sequence number of this job's events of ``kind`` (kept in the state)."""
        n = self.state.seq[kind] = int(self.state.seq.get(kind, 0)) + 1
        return n

    def summary(self) -> dict[str, Any]:
        """The job as ``placer jobs`` lists it."""
        st = self.state
        return {
            "id": self.id,
            "pid": self.pid,
            "kind": self.kind,
            "status": self.status,
            "command": self.command,
            "objects": len(self.table.objects) if self.kind == "objects" else None,
            "live_bytes": self.table.live_bytes() if self.kind == "objects" else None,
            "decisions": st.decisions_total,
            "migrations": st.migrations,
            "bytes_migrated": st.bytes_migrated,
            "samples_ingested": st.samples_ingested or 0,
            "knobs": st.knobs if self.kind == "pipeline" else None,
            "source": "daemon",
        }

    def document(self, model_version: str, budget: str, nodes: Any) -> dict[str, Any]:
        """The job as ``placer job ID`` shows it (``nodes``: the host's DRAM/slow nodes)."""
        st = self.state
        objs = sorted(
            self.table.objects.values(),
            key=lambda o: -(o.score if o.score is not None else float("-inf")),
        )
        tail = st.tail or {}
        return {
            **self.summary(),
            "pid_start_time": self.start_time,
            "owner_uid": self.owner_uid,
            "waiting_for_program": self.wrapper_pid is not None,
            "shim_log": tail.get("path"),
            "log_offset": tail.get("offset"),
            "model": st.model or model_version,
            "budget": budget,
            "nodes": {
                "dram": nodes.dram,
                "slow": nodes.slow,
                **({"note": nodes.note} if nodes.note else {}),
            },
            "current": [o.describe() for o in objs[:50]],
            "migrations_total": st.migrations,
            "migrations": list(self.recent_migrations),
            "pending_migrations": len(self.pending),
            "recent_decisions": list(st.decisions)[-20:],
            "knob_changes": list(st.knob_changes or [])[-20:],
            "trials": st.trials,
            "settled": st.settled,
            "best": st.best,
            "first_samples_per_second": st.first_samples_per_second,
            "last_samples_per_second": st.last_samples_per_second,
            "first_trial": st.first_trial,
            "study": st.study,
            "signals": st.signals,
            "run_id": st.run_id,
        }


def log_job_error(log: Callable[..., None], job: Job, what: str, exc: BaseException) -> None:
    """Log the first error of a kind for a job, then every 100th (no error storms)."""
    key = f"{what}:{type(exc).__name__}"
    n = job.errors[key] = job.errors.get(key, 0) + 1
    if n == 1 or n % 100 == 0:
        log(
            "warning",
            "job_error",
            job=job.id,
            pid=job.pid,
            what=what,
            error=f"{type(exc).__name__}: {exc}",
            count=n,
        )


def migration_summary(at: str, doc: dict[str, Any]) -> dict[str, Any]:
    """One ``migration`` event as ``placer job ID`` lists it."""
    errors = {str(k): int(v) for k, v in (doc.get("errors") or {}).items()}
    return {
        "at": at,
        "object": doc.get("object"),
        "tier": doc.get("tier"),
        "node": doc.get("node"),
        "pages": int(doc.get("pages") or 0),
        "moved": int(doc.get("moved") or 0),
        "failed": sum(errors.values()),
        "errors": errors,
        "not_present": int(doc.get("not_present") or 0),
        "bytes_moved": int(doc.get("bytes_moved") or 0),
        "numa_maps_before": doc.get("numa_maps_before") or {},
        "numa_maps_after": doc.get("numa_maps_after") or {},
    }
