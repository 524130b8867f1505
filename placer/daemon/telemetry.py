"""What the daemon counts, counted once: the status document and Prometheus both read it.

Every event that counts (samples ingested, decisions, migrations, knob changes, closed
jobs, loop ticks) goes through one :class:`Telemetry` method; the ``totals`` and ``loop``
parts of ``placer daemon status`` and the counters of :mod:`placer.daemon.metrics` are
read from the same numbers, so they cannot disagree. :func:`json_log` is the daemon's
structured log: stdlib :mod:`logging` with :class:`JsonFormatter` (one JSON object per
line on stderr).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from placer.daemon.job import iso


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``event`` (the message) and the
    record's ``fields`` (systemd's journal keeps the line as it is)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        doc = {"ts": iso(ts), "level": record.levelname.lower(), "event": record.getMessage()}
        doc.update(getattr(record, "fields", {}))
        return json.dumps(doc, default=str, separators=(",", ":"))


class _QuietHandler(logging.StreamHandler):
    """A stream handler that drops a line it cannot write (stderr closed after a detach)
    instead of printing a traceback there."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


class EventLog(logging.LoggerAdapter):
    """The daemon's log as its parts call it: ``log("info", "job_closed", job=3, pid=9)``."""

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        self.logger.log(_level(level), event, extra={"fields": fields})

    def set_level(self, level: str) -> None:
        # On the handlers: a logger outside logging's manager keeps a stale level cache.
        for handler in self.logger.handlers:
            handler.setLevel(_level(level))


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO


def json_log(level: str = "info", stream: TextIO | None = None) -> EventLog:
    """A logger of its own (not under the root logger) writing JSON lines to ``stream``
    (default stderr) at ``level`` and above."""
    logger = logging.Logger("placer.daemon", logging.DEBUG)
    handler = _QuietHandler(stream or sys.stderr)
    handler.setLevel(_level(level))
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    return EventLog(logger, {})


@dataclass
class Telemetry:
    """The daemon's counters since it started (thread-safe; socket threads count too)."""

    samples: dict[str, int] = field(default_factory=dict)  # by source: shim, perf_mem, pipeline
    decisions: dict[str, int] = field(default_factory=dict)  # by kind: tier, knobs, first_trial
    migrations: int = 0
    bytes_moved: int = 0
    pages_on_target: int = 0
    knob_changes: int = 0
    jobs_closed: int = 0
    ticks: int = 0
    overruns: int = 0
    last_tick_seconds: float = 0.0
    max_tick_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_samples(self, source: str, n: int) -> None:
        with self.lock:
            self.samples[source] = self.samples.get(source, 0) + n

    def add_decision(self, kind: str) -> None:
        with self.lock:
            self.decisions[kind] = self.decisions.get(kind, 0) + 1

    def add_knob_changes(self, n: int) -> None:
        with self.lock:
            self.knob_changes += n

    def add_migration(self, bytes_moved: int, pages_on_target: int) -> None:
        with self.lock:
            self.migrations += 1
            self.bytes_moved += bytes_moved
            self.pages_on_target += pages_on_target

    def add_job_closed(self) -> None:
        with self.lock:
            self.jobs_closed += 1

    def add_tick(self, seconds: float, interval: float) -> bool:
        """Count one loop tick; True when it overran the interval."""
        with self.lock:
            self.ticks += 1
            self.last_tick_seconds = seconds
            self.max_tick_seconds = max(self.max_tick_seconds, seconds)
            overran = seconds > interval
            if overran:
                self.overruns += 1
            return overran

    def totals(self) -> dict[str, int]:
        """The ``totals`` of the status document."""
        with self.lock:
            return {
                "samples": sum(self.samples.values()),
                "migrations": self.migrations,
                "bytes_moved": self.bytes_moved,
                "decisions": sum(self.decisions.values()),
                "knob_changes": self.knob_changes,
                "jobs_closed": self.jobs_closed,
            }

    def loop(self, interval: float) -> dict[str, Any]:
        """The ``loop`` part of the status document."""
        with self.lock:
            return {
                "ticks": self.ticks,
                "interval": interval,
                "last_seconds": round(self.last_tick_seconds, 6),
                "max_seconds": round(self.max_tick_seconds, 6),
                "overruns": self.overruns,
            }
