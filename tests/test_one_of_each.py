"""One of each (issue 14, finding 9): one knapsack for plans and reports; the daemon logs
through stdlib logging with a JSON formatter."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest

from placer.daemon.telemetry import JsonFormatter, json_log
from placer.placement import planner
from placer.reports import build
from tests.report_fixtures import open_store, seed_run

REPO = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("placer", "collectors", "tuners") for p in (REPO / d).rglob("*.py")]


def test_only_the_planner_solves_a_knapsack() -> None:
    solver = re.compile(r"\bmilp\b|\blinprog\b|def\s+\w*knapsack\w*\s*\(")
    users = {
        str(p.relative_to(REPO)) for p in SOURCES if solver.search(p.read_text(encoding="utf-8"))
    }
    # tuners/analysis.py: the pipeline LP that splits cores across stages, not a knapsack
    assert users == {"placer/placement/planner.py", "tuners/analysis.py"}


def test_the_run_report_plans_with_the_planner(sqlite_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = []
    solve = planner.solve

    def counted(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        return solve(*args, **kw)

    store = open_store(sqlite_url)
    try:
        run_id = seed_run(store)
        before = build(store, "run", run_id)
        monkeypatch.setattr(planner, "solve", counted)
        after = build(store, "run", run_id)
    finally:
        store.dispose()
    assert calls, "the report's knapsack strategies did not go through planner.solve"
    assert after["budget_curve"]["series"] == before["budget_curve"]["series"]


def test_daemon_log_is_stdlib_logging_with_the_same_fields() -> None:
    out = io.StringIO()
    log = json_log("info", out)
    assert isinstance(log, logging.LoggerAdapter)
    assert any(isinstance(h.formatter, JsonFormatter) for h in log.logger.handlers)
    log("debug", "hidden", a=1)
    log("info", "job_closed", job=3, pid=9, status="exited")
    log.set_level("error")
    log("warning", "dropped")
    log("error", "request_failed", error="boom")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["job_closed", "request_failed"]
    first = lines[0]
    assert set(first) == {"ts", "level", "event", "job", "pid", "status"}
    assert first["level"] == "info" and first["job"] == 3 and first["ts"].endswith("+00:00")
    assert lines[1]["level"] == "error" and lines[1]["error"] == "boom"


def test_daemon_log_survives_a_closed_stream(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    log = json_log("info", out)
    out.close()
    log("info", "after_close")  # neither raises nor prints a traceback
    assert capsys.readouterr().err == ""
