"""The store's queries for pipelines, studies and daemon jobs, and the rule that keeps them there.

Pipelines, studies and daemon rows are written and read only through
``placer.store.repository.pipelines`` and ``.daemon``; their callers (tuning, the daemon,
the CLI and the reports) import neither SQLAlchemy nor the ORM models at run time.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import event

from placer.contracts.pipeline import StageInfo
from placer.store import Store
from placer.store.engine import limit_lock_waits
from placer.store.models import Application
from placer.store.repository import daemon as jobs
from placer.store.repository import pipelines
from placer.store.repository.common import insert_ignore
from placer.store.repository.hosts import host_row, hostname_of, hostnames
from placer.store.repository.labels import count_plans, recent_plans

ROOT = Path(__file__).resolve().parents[1]
CALLERS = [
    "tuners/records.py",
    "tuners/study.py",
    "tuners/tuning.py",
    "placer/cli/tune.py",
    "placer/cli/daemon.py",
    "placer/reports/pipeline.py",
    "placer/reports/fleet.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "placer" / "daemon").glob("*.py")),
]


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_callers_leave_sql_to_the_store() -> None:
    for rel in CALLERS:
        mods = _runtime_imports(ROOT / rel)
        bad = {m for m in mods if m.split(".")[0] == "sqlalchemy" or m == "placer.store.models"}
        assert not bad, f"{rel} imports {sorted(bad)} at run time"


def _store(url: str) -> Store:
    store = Store(url)
    store.upgrade()
    return store


def test_pipelines_studies_and_counts(store_url: str) -> None:
    store = _store(store_url)
    stages = [StageInfo("read", "source", sequential=True), StageInfo("decode")]
    with store.session() as s:
        a = pipelines.add_pipeline(s, "images", "python", "m:a", stages)
        b = pipelines.add_pipeline(s, "images", "python", "m:b", stages[:1])
        pipelines.add_pipeline(s, "text", "python", "m:c", [])
        pipelines.add_study(
            s,
            a.id,
            "st-1",
            budget_cores=2.0,
            budget_memory_bytes=1,
            naive_throughput=None,
            upper_bound=None,
        )
        pipelines.add_study(
            s,
            a.id,
            "st-2",
            budget_cores=2.0,
            budget_memory_bytes=1,
            naive_throughput=5.0,
            upper_bound=9.0,
        )
        assert [st.name for st in a.stages] == ["read", "decode"]
        assert a.stages[0].sequential and a.stages[0].kind == "source"
    with store.session() as s:
        counts = [(p.builder, n) for p, n in pipelines.pipelines_with_study_counts(s)]
        assert counts == [("m:a", 2), ("m:b", 0), ("m:c", 0)]
        found = pipelines.find_pipeline(s, "images")
        assert found is not None and found.id == b.id  # the newest of that name
        assert pipelines.find_pipeline(s, str(a.id)).builder == "m:a"  # type: ignore[union-attr]
        assert pipelines.find_pipeline(s, "nothing") is None
        study = pipelines.find_study(s, "st-2")
        assert study is not None and study.status == "running"
        assert [x.optuna_study_name for x in pipelines.studies_of_pipeline(s, a.id)] == [
            "st-1",
            "st-2",
        ]
        assert [(t.optuna_study_name, n) for t, n in pipelines.recent_studies(s, 1)] == [
            ("st-2", "images")
        ]
        assert pipelines.count_studies(s) == 2
    store.dispose()


def _job(s: Any, host_id: int | None, now: dt.datetime) -> int:
    """A daemon job row (an objects job of pid 1); its id."""
    return jobs.add_daemon_job(
        s,
        host_id=host_id,
        pid=1,
        pid_start_time=2,
        kind="objects",
        command=["x"],
        run_id=None,
        state={},
        last_seen_at=now,
    ).id


def test_daemon_events_are_inserted_once(store_url: str) -> None:
    store = _store(store_url)
    now = dt.datetime.now(dt.UTC)
    with store.session() as s:
        host = host_row(s, "fleet-host")
        jid = _job(s, host.id, now)
    rows = [
        {"job_id": jid, "kind": "migration", "seq": n, "at": now, "document": {"n": n}}
        for n in (1, 2, 3)
    ]
    for batch in (rows[:2], rows, rows[1:]):  # re-sent after a "crash": nothing twice
        with store.session() as s:
            jobs.add_events(s, batch)
    with store.session() as s:
        got = jobs.job_events(s, jid, "migration", 2)
        assert [doc["n"] for _at, doc in got] == [3, 2]  # newest first
        assert [j.id for j in jobs.attached_jobs(s, host.id)] == [jid]
        assert jobs.host_job(s, jid, host.id + 1) is None
        assert not jobs.link_job_run(s, jobs.daemon_jobs(s, job_id=jid)[0], 12345)
        jobs.update_job(s, jid, {"status": "exited"})
        assert hostnames(s)[host.id] == "fleet-host"
        assert hostname_of(s, host.id) == "fleet-host" and hostname_of(s, None) is None
    with store.session() as s:
        assert jobs.daemon_jobs(s, limit=1)[0].status == "exited"
        assert jobs.attached_jobs(s, host.id) == []
        assert recent_plans(s, 5) == [] and count_plans(s) == 0
    store.dispose()


def test_insert_ignore_is_one_statement_for_a_batch(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _seen(_c: object, _cur: object, stmt: str, *_a: object) -> None:
        if stmt.lstrip().upper().startswith("INSERT"):
            statements.append(stmt)

    with store.session() as s:
        insert_ignore(s, Application, [{"name": "a"}, {"name": "b"}, {"name": "a"}], ["name"])
    assert len(statements) == 1 and "ON CONFLICT" in statements[0].upper()
    store.dispose()


def test_limit_lock_waits_sets_the_busy_timeout(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    limit_lock_waits(store.engine, 0.25)
    store.engine.dispose()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
    store.dispose()


def test_daemon_keeps_the_newest_events_of_each_kind(sqlite_url: str) -> None:
    """Issue 17: a job watched for hours must not grow the store without bound."""
    store = _store(sqlite_url)
    now = dt.datetime.now(dt.UTC)
    with store.session() as s:
        jid = _job(s, None, now)

    def ev(kind: str, n: int) -> dict:
        return {"job_id": jid, "kind": kind, "seq": n, "at": now, "document": {"n": n}}

    for start in range(1, 40, 7):  # batches, as the daemon's writer sends them
        with store.session() as s:
            jobs.add_events(s, [ev("window", n) for n in range(start, start + 7)], keep=5)
    with store.session() as s:
        jobs.add_events(s, [ev("decision", n) for n in (1, 2, 3)], keep=5)
    with store.session() as s:
        windows = jobs.job_events(s, jid, "window", 100)
        assert [doc["n"] for _at, doc in windows] == [42, 41, 40, 39, 38]
        # another kind (and a kind under the bound) keeps its own
        assert len(jobs.job_events(s, jid, "decision", 100)) == 3
    assert jobs.EVENTS_KEPT >= 1000  # `placer job --history` still shows a long history
    store.dispose()
