"""The daemon service: socket server, the sense-decide-act loop, and job bookkeeping.

One process, in the foreground (systemd ``Type=simple``): JSON-lines logs on stderr,
SIGTERM/SIGINT stop it cleanly (last flush to the store, socket removed), SIGHUP reloads
the config file and the newest placement model. Threads: the main loop, the socket
server (one short-lived thread per connection) and the Prometheus HTTP server.

Each tick, for every job: check it is still the same process (pid + start time), collect
(new shim-log records, ``/proc`` counters, or for a process without the shim its large
anonymous mappings), queue a ``window`` event, re-rank its objects with the placement
model when something changed (at most every ``rank_every`` seconds), migrate the pages of
objects whose tier changed with ``move_pages`` under the shared MB/s limit, and queue the
job's state; then flush the queue to the store (:mod:`placer.daemon.ingest`).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.daemon import procs
from placer.daemon.config import DaemonConfig, load_config
from placer.daemon.decide import (
    ObjectTable,
    PipelineTuner,
    analyze_reported,
    anonymous_regions,
    parse_knob_space,
)
from placer.daemon.ingest import EventRow, StateRow, Writer
from placer.daemon.migrate import RateLimiter, migrate, numa_counts, page_range
from placer.daemon.perfmem import MAX_CHILDREN, MemWindow, PerfMemRecorder, window_counts
from placer.daemon.perfmem import workdir as perfmem_workdir
from placer.daemon.perfstat import EVENTS, PerfCounter, PerfSupport, detect
from placer.daemon.protocol import MAX_MESSAGE, ProtocolError, decode, encode
from placer.daemon.protocol import field as pfield
from placer.daemon.tail import ShimTail, TailError, log_path
from placer.errors import (
    InvalidInputError,
    NotFoundError,
    PlacerError,
    StoreError,
)

#: Decisions kept in a job's state document (the total is ``decisions_total``).
DECISIONS_KEPT = 500
KNOB_CHANGES_KEPT = 500
#: Migration summaries a job keeps in memory for ``placer job ID`` (all are events).
MIGRATIONS_SHOWN = 20
#: perf children started per tick at most (spreads their start-up cost over ticks).
PERF_STARTS_PER_TICK = 4
TERMINAL = ("exited", "crashed", "killed", "gone", "detached")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime | None = None) -> str:
    return (t or _now()).isoformat(timespec="milliseconds")


def _window_counts() -> dict[str, int]:
    """What one window counts of a shim log: records by kind and sampled pages."""
    return dict.fromkeys(
        ("allocs", "frees", "samples", "sampled_pages", "touched_pages", "written_pages"), 0
    )


class JsonLog:
    """One JSON object per line on stderr (systemd's journal keeps them as they are)."""

    LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

    def __init__(self, level: str = "info", stream: Any = None) -> None:
        self.level = self.LEVELS.get(level, 20)
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        if self.LEVELS.get(level, 20) < self.level:
            return
        line = json.dumps(
            {"ts": _iso(), "level": level, "event": event, **fields},
            default=str,
            separators=(",", ":"),
        )
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


@dataclass
class Job:
    id: int
    pid: int
    start_time: int
    kind: str  # objects | pipeline
    command: list[str]
    owner_uid: int
    state: dict[str, Any]
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
    perf_failed: str | None = None  # why perf does not count this job (then /proc does)
    mem: PerfMemRecorder | None = None  # rolling perf mem windows (objects jobs)
    mem_failed: str | None = None  # why perf mem does not sample this job
    mem_pending: MemWindow | None = None  # windows read since the last window event
    recent_migrations: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MIGRATIONS_SHOWN)
    )

    def seq(self, kind: str) -> int:
        counters = self.state.setdefault("seq", {})
        counters[kind] = int(counters.get(kind, 0)) + 1
        return int(counters[kind])


class Daemon:
    def __init__(
        self,
        cfg: DaemonConfig,
        store_url: str,
        config_path: str | None = None,
        log: JsonLog | None = None,
    ) -> None:
        self.cfg = cfg
        self.store_url = store_url
        self.config_path = config_path
        self.log = log or JsonLog(cfg.log_level)
        self.jobs: dict[int, Job] = {}
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.reload_requested = False
        self.started = time.time()
        self.ticks = 0
        self.overruns = 0
        self.last_tick_seconds = 0.0
        self.max_tick_seconds = 0.0
        self.limiter = RateLimiter(cfg.migrate_mb_per_s)
        self.server: socketserver.BaseServer | None = None
        self.metrics: Any = None
        self.metrics_address: tuple[str, int] | None = None
        self.model: Any = None
        self.model_version = ""
        self.host_id: int | None = None
        self.nodes: Any = None
        self.store: Any = None
        self.writer: Writer | None = None
        self.perf_support: PerfSupport | None = None
        self.optuna_store: Any = None
        self.perf_starts_left = PERF_STARTS_PER_TICK
        self.mem_dir: Path | None = None  # perf mem files of this daemon
        self.totals = {
            "samples": 0,
            "migrations": 0,
            "bytes_moved": 0,
            "decisions": 0,
            "knob_changes": 0,
            "jobs_closed": 0,
        }

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        from placer.daemon.metrics import Metrics
        from placer.placement.recommend import host_nodes
        from placer.store import Store

        self.store = Store(self.store_url)
        self._store_timeouts(self.store)
        self.store.ensure_schema()
        with self.store.session() as s:
            from collectors.profile.ingest import host_row as _host

            self.host_id = _host(s).id
        self.writer = Writer(self.store, self.cfg.buffer_max, self.cfg.batch_max)
        self.nodes = host_nodes()
        self._detect_perf()
        self._load_model()
        self._bind_socket()
        self.metrics = Metrics()
        address = self.cfg.metrics_address()
        if address is not None:
            try:
                self.metrics_address = self.metrics.serve(*address)
            except OSError as exc:
                self._close_socket()
                raise InvalidInputError(
                    f"cannot serve metrics on {self.cfg.metrics}: {exc.strerror}"
                ) from None
        self._adopt()
        thread = threading.Thread(target=self._serve, name="placer-daemon-socket", daemon=True)
        thread.start()
        self.log(
            "info",
            "started",
            pid=os.getpid(),
            socket=str(self.cfg.socket_path()),
            store=self.store.display_url,
            metrics=self.metrics_address,
            interval=self.cfg.interval,
            model=self.model_version,
            nodes={"dram": self.nodes.dram, "slow": self.nodes.slow},
            jobs=len(self.jobs),
            counters=self._signals()["counters"],
        )

    def _detect_perf(self) -> None:
        """Once (and on a reload that turns ``perf`` on): can perf count jobs here?"""
        if not self.cfg.perf or self.perf_support is not None:
            return
        sup = self.perf_support = detect()
        if sup.counters:
            self.log(
                "info",
                "perf_counters",
                perf=sup.path,
                events=list(EVENTS),
                perf_mem=sup.mem,
                **({"perf_mem_reason": sup.mem_reason} if not sup.mem else {}),
            )
        else:
            self.log(
                "warning",
                "perf_unavailable",
                reason=sup.reason,
                fallback="/proc/PID/stat (CPU ticks, minor and major faults)",
            )

    def _signals(self, job: Job | None = None) -> dict[str, str]:
        sup = self.perf_support or PerfSupport(False, None, "perf not checked")
        sig = sup.signals(self.cfg.perf)
        if job is not None and job.perf_failed:
            sig["counters"] = f"/proc/PID/stat ({job.perf_failed})"
        if job is not None and job.mem_failed:
            sig["perf_mem"] = f"not sampled ({job.mem_failed})"
        elif job is not None and job.mem is not None:
            sig["perf_mem"] = f"sampled: perf mem record, {job.mem.window_s:g} s windows"
        elif job is not None and sup.mem and self.cfg.perf and job.kind == "objects":
            sig["perf_mem"] = f"available; waiting (at most {MAX_CHILDREN} jobs at once)"
        return sig

    def _store_timeouts(self, store: Any) -> None:
        """Store calls wait at most ``store_timeout`` for a lock (SQLite) or a connection."""
        from sqlalchemy import event

        ms = int(self.cfg.store_timeout * 1000)
        if store.dialect == "sqlite":

            @event.listens_for(store.engine, "connect")
            def _timeout(dbapi_connection: Any, _record: Any) -> None:
                cur = dbapi_connection.cursor()
                cur.execute(f"PRAGMA busy_timeout = {ms}")
                cur.close()
        elif store.dialect == "postgresql":

            @event.listens_for(store.engine, "connect")
            def _pg_timeout(dbapi_connection: Any, _record: Any) -> None:
                with dbapi_connection.cursor() as cur:
                    cur.execute(f"SET statement_timeout = {ms}")
                    cur.execute(f"SET lock_timeout = {ms}")
                dbapi_connection.commit()

    def _load_model(self) -> None:
        from placer.placement.model import PlacementModel
        from placer.placement.registry import default_files, load_model

        try:
            with self.store.session() as s:
                loaded = load_model(s)
            self.model, self.model_version = loaded.model, loaded.version
        except StoreError as exc:
            files = default_files()
            if files is None:
                raise
            self.model = PlacementModel.from_texts(files["ranker"], files["penalty"], files["meta"])
            self.model_version = f"default@{files['meta'].get('tag', '?')}"
            self.log("warning", "model_from_default", reason=str(exc))

    def _bind_socket(self) -> None:
        path = self.cfg.socket_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_symlink():
            from placer.daemon.client import running

            if running(path):
                raise InvalidInputError(f"a daemon already listens on {path}")
            path.unlink()  # a stale socket of a daemon that died
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                daemon._handle(self.request, self.rfile, self.wfile)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True
            block_on_close = False

        old = os.umask(0o177)
        try:
            self.server = Server(str(path), Handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    def _serve(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.2)

    def _close_socket(self) -> None:
        if self.server is not None:
            self.server.shutdown() if self.server_running() else None
            self.server.server_close()
            self.server = None
        try:
            self.cfg.socket_path().unlink()
        except OSError:
            pass

    def server_running(self) -> bool:
        return any(t.name == "placer-daemon-socket" and t.is_alive() for t in threading.enumerate())

    def stop(self) -> None:
        self._close_socket()
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            with job.lock:
                self._stop_perf(job)
                self._queue_state(job)
        if self.mem_dir is not None:
            shutil.rmtree(self.mem_dir, ignore_errors=True)
            self.mem_dir = None
        assert self.writer is not None
        ok = self.writer.flush(deadline=time.monotonic() + max(5.0, self.cfg.store_timeout))
        if self.metrics is not None:
            self.metrics.stop()
        self.log(
            "info",
            "stopped",
            jobs=len(jobs),
            flushed=ok,
            pending=self.writer.pending(),
            dropped=self.writer.dropped,
        )
        self.store.dispose()

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; installs the signal handlers (main thread only)."""

        def on_stop(signum: int, _frame: Any) -> None:
            self.log("info", "signal", signal=signal.Signals(signum).name)
            self.stop_event.set()

        def on_hup(_signum: int, _frame: Any) -> None:
            self.reload_requested = True
            self.stop_event.set()  # wake the sleeping loop; cleared after reloading

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        self.start()
        try:
            next_at = time.monotonic()
            while True:
                if self.reload_requested:
                    self.reload_requested = False
                    self.stop_event.clear()
                    self.reload()
                if self.stop_event.is_set():
                    break
                self.tick()
                next_at += self.cfg.interval
                now = time.monotonic()
                if next_at < now:  # overran: skip the missed ticks, keep the cadence
                    next_at = now
                self.stop_event.wait(max(0.0, next_at - now))
        finally:
            self.stop()
        return 0

    def reload(self) -> None:
        try:
            cfg = load_config(self.config_path)
        except PlacerError as exc:
            self.log("error", "reload_failed", error=str(exc))
            return
        kept = []
        for name in ("socket", "metrics"):
            if getattr(cfg, name) != getattr(self.cfg, name):
                kept.append(name)
                setattr(cfg, name, getattr(self.cfg, name))
        self.cfg = cfg
        self.limiter.set_rate(cfg.migrate_mb_per_s)
        assert self.writer is not None
        self.writer.buffer_max, self.writer.batch_max = cfg.buffer_max, cfg.batch_max
        self.log_level(cfg.log_level)
        self._load_model()
        if not cfg.perf:
            with self.lock:
                jobs = list(self.jobs.values())
            for job in jobs:
                with job.lock:
                    self._stop_perf(job)
                    job.state["signals"] = self._signals(job)
        self._detect_perf()
        self.log(
            "info", "reloaded", config=cfg.to_dict(), model=self.model_version, needs_restart=kept
        )

    def log_level(self, level: str) -> None:
        self.log.level = JsonLog.LEVELS.get(level, 20)

    def tick(self) -> None:
        t0 = time.perf_counter()
        self.perf_starts_left = PERF_STARTS_PER_TICK
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            try:
                with job.lock:
                    self._tick_job(job)
            except Exception as exc:  # noqa: BLE001 - one job must not stop the loop
                self._job_error(job, "tick", exc)
        assert self.writer is not None
        ok = self.writer.flush(deadline=time.monotonic() + self.cfg.interval)
        if not ok and self.writer.failures in (1,) or (not ok and self.writer.failures % 60 == 0):
            self.log(
                "warning",
                "store_unavailable",
                error=self.writer.last_error,
                pending=self.writer.pending(),
                dropped=self.writer.dropped,
            )
        if ok and self.writer.failures and getattr(self, "_was_down", False):
            self.log("info", "store_back", written=self.writer.written, dropped=self.writer.dropped)
        self._was_down = not ok
        elapsed = time.perf_counter() - t0
        self.ticks += 1
        self.last_tick_seconds = elapsed
        self.max_tick_seconds = max(self.max_tick_seconds, elapsed)
        if elapsed > self.cfg.interval:
            self.overruns += 1
        self._update_metrics(elapsed, ok)

    def _update_metrics(self, elapsed: float, store_ok: bool) -> None:
        m = self.metrics
        if m is None:
            return
        assert self.writer is not None
        m.loop_seconds.observe(elapsed)
        if elapsed > self.cfg.interval:
            m.loop_overruns.inc()
        counts = {"objects": 0, "pipeline": 0}
        with self.lock:
            for j in self.jobs.values():
                counts[j.kind] = counts.get(j.kind, 0) + 1
        for kind, n in counts.items():
            m.jobs.labels(kind=kind).set(n)
        m.buffered.set(self.writer.pending())
        m.dropped.set(self.writer.dropped)
        m.store_up.set(1 if store_ok else 0)

    def _job_error(self, job: Job, what: str, exc: BaseException) -> None:
        """Log the first error of a kind for a job, then every 100th (no error storms)."""
        key = f"{what}:{type(exc).__name__}"
        n = job.errors.get(key, 0) + 1
        job.errors[key] = n
        if n == 1 or n % 100 == 0:
            self.log(
                "warning",
                "job_error",
                job=job.id,
                pid=job.pid,
                what=what,
                error=f"{type(exc).__name__}: {exc}",
                count=n,
            )

    # ------------------------------------------------------------------ one job
    def _tick_job(self, job: Job) -> None:
        if job.status in TERMINAL:
            return
        info = procs.proc_info(job.pid)
        if info is None or (job.start_time and info.start_time != job.start_time):
            self._close(job, None, None)
            return
        if job.kind == "objects" and job.wrapper_pid is not None:
            self._find_program(job)
        if job.wrapper_pid is None:
            self._ensure_perf(job)
        if job.kind == "objects":
            if job.wrapper_pid is None:
                self._ensure_mem(job)
            self._collect_mem(job)
            self._collect_objects(job, info)
            self._rank_and_act(job)
        else:
            self._collect_proc(job, info, {})
        if job.dirty:
            self._queue_state(job)

    def _find_program(self, job: Job) -> None:
        """``placer run``/``profile`` registered itself: the program is a descendant."""
        assert job.wrapper_pid is not None
        for pid in _descendants(job.wrapper_pid):
            pattern = procs.environ_value(pid, "PLACER_SHIM_LOG")
            exe = procs.cmdline(pid)
            if pattern and exe and os.path.basename(exe[0]) not in ("perf", "env"):
                info = procs.proc_info(pid)
                if info is None:
                    continue
                job.state["wrapper_pid"] = job.wrapper_pid
                job.state.pop("awaiting_program", None)
                job.wrapper_pid = None
                job.pid, job.start_time = pid, info.start_time
                job.state["pid"] = pid
                job.state["pid_start_time"] = info.start_time
                job.state["command"] = exe
                job.prev = None
                self.log("info", "program_found", job=job.id, pid=pid)
                return

    def _ensure_tail(self, job: Job) -> None:
        if job.tail is not None or job.state.get("tail", {}).get("none"):
            return
        pattern = procs.environ_value(job.pid, "PLACER_SHIM_LOG")
        if not pattern:
            job.state["tail"] = {"none": True}
            return
        path = log_path(procs.resolve_log_pattern(pattern, job.pid), job.pid)
        job.tail = ShimTail(path)
        job.state["tail"] = {"path": str(path), "offset": 0}

    def _collect_objects(self, job: Job, info: procs.ProcInfo) -> None:
        new = _window_counts()
        if job.wrapper_pid is None:
            self._ensure_tail(job)
        if job.tail is not None:
            self._drain_tail(job, new)
        elif job.wrapper_pid is None and (
            time.monotonic() - job.last_maps >= self.cfg.rank_every or not job.last_maps
        ):
            job.last_maps = time.monotonic()
            job.table.sync_mappings(anonymous_regions(job.pid), time.monotonic_ns())
        self._collect_proc(job, info, new)

    def _drain_tail(
        self, job: Job, new: dict[str, int], *, count: bool = True, until: int | None = None
    ) -> None:
        assert job.tail is not None
        t = job.table
        for _ in range(64):
            if until is not None and job.tail.offset >= until:
                break
            try:
                batch = job.tail.poll(until=until)
            except TailError as exc:
                self._job_error(job, "tail", exc)
                job.state["tail"] = {"none": True, "error": str(exc)}
                job.tail = None
                return
            for a in batch.allocs:
                t.add_alloc(a.seq, a.address, a.size, a.site_hash, a.time_ns)
            for f in batch.frees:
                t.free(f.seq)
            for s in batch.samples:
                t.sample(s.seq, s.interval, s.sampled_pages, s.touched_pages, s.written_pages)
            if batch.end is not None:
                job.state["end"] = {
                    "reason": batch.end.reason,
                    "dropped_records": batch.end.dropped_records,
                }
            if count:
                new["allocs"] += len(batch.allocs)
                new["frees"] += len(batch.frees)
                new["samples"] += len(batch.samples)
                for s in batch.samples:
                    new["sampled_pages"] += s.sampled_pages
                    new["touched_pages"] += s.touched_pages
                    new["written_pages"] += s.written_pages
            job.state["tail"]["offset"] = job.tail.offset
            if batch.bytes_read == 0:
                break

    # ------------------------------------------------------------------ perf counters
    def _ensure_perf(self, job: Job) -> None:
        """Start the job's ``perf stat -I`` child when perf counts here (else /proc)."""
        sup = self.perf_support
        if "signals" not in job.state:
            job.state["signals"] = self._signals(job)
            job.dirty = True
        if job.perf is not None or job.perf_failed or not self.cfg.perf:
            return
        if sup is None or not sup.counters or sup.path is None or self.perf_starts_left <= 0:
            return
        self.perf_starts_left -= 1
        try:
            job.perf = PerfCounter(job.pid, int(self.cfg.interval * 1000), sup.path)
        except OSError as exc:
            self._perf_fallback(job, f"perf stat did not start: {exc.strerror or exc}")
            return
        job.state["signals"] = self._signals(job)
        job.state["perf_pid"] = job.perf.perf_pid
        job.dirty = True
        self.log("debug", "perf_started", job=job.id, pid=job.pid, perf_pid=job.perf.perf_pid)

    def _perf_fallback(self, job: Job, why: str) -> None:
        job.perf_failed = why
        job.state["signals"] = self._signals(job)
        job.dirty = True
        self.log(
            "warning",
            "perf_job_fallback",
            job=job.id,
            pid=job.pid,
            reason=why,
            fallback="/proc/PID/stat",
        )

    # ------------------------------------------------------------------ perf mem
    def _ensure_mem(self, job: Job) -> None:
        """Start the job's rolling perf mem windows where perf mem works (bounded)."""
        sup = self.perf_support
        if job.mem is not None or job.mem_failed or not self.cfg.perf:
            return
        if sup is None or not sup.mem or sup.path is None or self.perf_starts_left <= 0:
            return
        with self.lock:
            running = sum(1 for j in self.jobs.values() if j.mem is not None)
        if running >= MAX_CHILDREN:
            return
        if self.mem_dir is None:
            self.mem_dir = perfmem_workdir()
        self.perf_starts_left -= 1
        job.mem = PerfMemRecorder(
            job.pid, sup.path, self.mem_dir, f"job{job.id}", max(2.0, self.cfg.interval)
        )
        job.state["signals"] = self._signals(job)
        job.dirty = True

    def _collect_mem(self, job: Job, alive: bool = True) -> None:
        """Advance the job's perf mem window; fold a finished one into its objects."""
        rec = job.mem
        if rec is None:
            return
        try:
            text = rec.poll(alive)
        except OSError as exc:
            rec.failed = f"perf mem did not start: {exc.strerror or exc}"
            text = None
        if rec.failed:
            job.mem_failed = rec.failed
            self._stop_mem(job)
            job.state["signals"] = self._signals(job)
            job.dirty = True
            self.log("warning", "perf_mem_job_failed", job=job.id, pid=job.pid, reason=rec.failed)
            return
        if text is None:
            return
        objects = [
            (o.key, o.address, o.size, o.alloc_ns if o.key.startswith("s") else 0)
            for o in job.table.objects.values()
        ]
        w = window_counts(text, objects, job.pid)
        job.table.mem_window(w.objects)
        if job.mem_pending is None:
            job.mem_pending = w
        else:  # two windows before one event (a window event is skipped when idle)
            p = job.mem_pending
            p.samples += w.samples
            p.matched += w.matched
            p.total.add(w.total)
            for level, n in w.levels.items():
                p.levels[level] = p.levels.get(level, 0) + n
            for key, c in w.objects.items():
                p.objects.setdefault(key, type(c)()).add(c)
        st = job.state
        st["perf_mem_windows"] = int(st.get("perf_mem_windows", 0)) + 1
        st["perf_mem_samples"] = int(st.get("perf_mem_samples", 0)) + w.samples
        if w.samples:
            self.totals["samples"] += w.samples
            if self.metrics is not None:
                self.metrics.samples.labels(source="perf_mem").inc(w.samples)
        job.dirty = True

    def _stop_mem(self, job: Job) -> None:
        if job.mem is None:
            return
        rec, job.mem = job.mem, None
        try:
            rec.stop()
        except OSError as exc:  # best effort, logged
            self._job_error(job, "perf_mem_stop", exc)

    def _stop_perf(self, job: Job) -> None:
        self._stop_mem(job)
        if job.perf is None:
            return
        perf, job.perf = job.perf, None
        try:
            perf.stop()
        except OSError as exc:  # best effort, logged
            self._job_error(job, "perf_stop", exc)
        job.state.pop("perf_pid", None)

    def _perf_counts(self, job: Job) -> dict[str, Any] | None:
        """The perf counts since the last tick, or None when /proc is the source."""
        perf = job.perf
        if perf is None:
            return None
        counts = perf.read()
        if not perf.running():
            counts_tail = perf.read()
            for name in ("task_clock_ms", "page_faults", "minor_faults", "major_faults"):
                setattr(counts, name, getattr(counts, name) + getattr(counts_tail, name))
            counts.intervals += counts_tail.intervals
            job.perf = None
            perf.stop()
            job.state.pop("perf_pid", None)
            if perf.total.intervals == 0 and procs.alive(job.pid, job.start_time):
                why = "perf stat exited: " + (perf.errors[0] if perf.errors else "no output")
                self._perf_fallback(job, why)
                return None
        if counts.unsupported:
            self._job_error(
                job, "perf", RuntimeError(f"perf: {', '.join(counts.unsupported)} not supported")
            )
        return {
            "counters": "perf",
            "cpu_ms": round(counts.task_clock_ms, 3),
            "page_faults": counts.page_faults,
            "minflt": counts.minor_faults,
            "majflt": counts.major_faults,
            "perf_intervals": counts.intervals,
        }

    def _collect_proc(self, job: Job, info: procs.ProcInfo, new: dict[str, int]) -> None:
        prev = job.prev
        job.prev = info
        records = new.get("allocs", 0) + new.get("frees", 0) + new.get("samples", 0)
        counters = self._perf_counts(job)
        if counters is None:
            counters = {
                "counters": "proc",
                "cpu_ticks": info.cpu_ticks - prev.cpu_ticks if prev else 0,
                "minflt": info.minflt - prev.minflt if prev else 0,
                "majflt": info.majflt - prev.majflt if prev else 0,
            }
            busy = any(counters[k] for k in ("cpu_ticks", "minflt", "majflt"))
        else:
            busy = any(counters[k] for k in ("cpu_ms", "page_faults", "minflt", "majflt"))
        mem, job.mem_pending = job.mem_pending, None
        if not records and not busy and mem is None:
            return  # idle: nothing to store
        doc = {
            **new,
            **counters,
            "live_objects": len(job.table.objects),
            "live_bytes": job.table.live_bytes(),
        }
        if mem is not None:
            doc["perf_mem"] = mem.to_doc()
        if job.tail is not None:
            doc["log_offset"] = job.tail.offset
        self._event(job, "window", doc)
        n = new.get("samples", 0)
        if n or records:
            self.totals["samples"] += records
            if self.metrics is not None:
                self.metrics.samples.labels(source="shim").inc(records)
        st = job.state
        st["windows"] = int(st.get("windows", 0)) + 1
        st["samples_ingested"] = int(st.get("samples_ingested", 0)) + n
        st["records_ingested"] = int(st.get("records_ingested", 0)) + records
        job.dirty = True

    def _event(self, job: Job, kind: str, doc: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.put(EventRow(job.id, kind, job.seq(kind), _now(), doc))
        job.dirty = True

    def _rank_and_act(self, job: Job) -> None:
        now = time.monotonic()
        t = job.table
        if t.changed and t.objects and now - job.last_rank >= self.cfg.rank_every:
            job.last_rank = now
            decisions = t.rank(
                self.model, self.cfg.dram_budget, self.model_version, time.monotonic_ns()
            )
            job.state["model"] = self.model_version
            job.state["ranked_at"] = _iso()
            for d in decisions:
                node = self.nodes.dram if d.tier == "dram" else self.nodes.slow
                action = (
                    f"{d.obj.key} ({d.obj.size} B, site {d.obj.site[:16]}) -> {d.tier} "
                    f"(node {node})"
                )
                entry = {
                    "at": _iso(),
                    "action": action,
                    "reason": d.reason,
                    "object": d.obj.key,
                    "tier": d.tier,
                    "previous": d.previous,
                    "node": node,
                    "rank": d.rank,
                }
                self._event(
                    job,
                    "decision",
                    {
                        **entry,
                        "size_bytes": d.obj.size,
                        "site": d.obj.site,
                        "score": d.obj.score,
                        "predicted_penalty": d.obj.penalty,
                    },
                )
                kept = job.state.setdefault("decisions", [])
                kept.append(entry)
                del kept[:-DECISIONS_KEPT]
                job.state["decisions_total"] = int(job.state.get("decisions_total", 0)) + 1
                self.totals["decisions"] += 1
                if self.metrics is not None:
                    self.metrics.decisions.labels(kind="tier").inc()
                if self.cfg.migrate:
                    job.pending = deque(p for p in job.pending if p[0] != d.obj.key)
                    job.pending.append((d.obj.key, node, 0))
            job.state["tiers"] = {o.key: o.tier for o in t.objects.values() if o.tier}
        self._migrate_pending(job)

    def _migrate_pending(self, job: Job) -> None:
        while job.pending:
            key, node, start = job.pending[0]
            obj = job.table.objects.get(key)
            if obj is None:  # freed meanwhile
                job.pending.popleft()
                continue
            pages = page_range(obj.address, obj.size)[start:]
            if not pages:
                job.pending.popleft()
                continue
            grant = self.limiter.take(len(pages) * 4096)
            n = grant // 4096
            if n == 0:
                return  # rate limit: go on next tick
            chunk = pages[:n]
            before = numa_counts(job.pid, obj.address, obj.size)
            try:
                result = migrate(job.pid, chunk, node)
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    return  # the process is gone: closed on the next tick
                self._job_error(job, "migrate", exc)
                job.pending.popleft()
                return
            after = numa_counts(job.pid, obj.address, obj.size)
            doc = {
                "object": key,
                "address": hex(obj.address),
                "size_bytes": obj.size,
                "tier": obj.tier,
                "first_page": start,
                **result.to_dict(),
                "numa_maps_before": {str(k): v for k, v in before.items()},
                "numa_maps_after": {str(k): v for k, v in after.items()},
            }
            self._event(job, "migration", doc)
            job.recent_migrations.append(migration_summary(_iso(), doc))
            obj.migrated_bytes += result.bytes_moved
            st = job.state
            st["migrations"] = int(st.get("migrations", 0)) + 1
            st["bytes_migrated"] = int(st.get("bytes_migrated", 0)) + result.bytes_moved
            st["pages_on_target"] = int(st.get("pages_on_target", 0)) + result.after_on_node
            self.totals["migrations"] += 1
            self.totals["bytes_moved"] += result.bytes_moved
            if self.metrics is not None:
                self.metrics.migrations.inc()
                self.metrics.bytes_moved.inc(result.bytes_moved)
                self.metrics.pages_on_target.inc(result.after_on_node)
            if start + n >= start + len(pages):
                job.pending.popleft()
            else:
                job.pending[0] = (key, node, start + n)

    def _queue_state(
        self, job: Job, status: str | None = None, detached_at: dt.datetime | None = None
    ) -> None:
        assert self.writer is not None
        job.dirty = False
        self.writer.put(
            StateRow(
                job.id,
                json.loads(json.dumps(job.state, default=str)),
                status=status,
                last_seen_at=_now(),
                detached_at=detached_at,
                pid=job.pid,
                pid_start_time=job.start_time,
            )
        )

    def _close(self, job: Job, exit_code: int | None, status: str | None) -> None:
        """The job's process ended (or the user detached): last collection, then close."""
        if job.status in TERMINAL:
            return
        if job.kind == "objects" and job.tail is not None and status != "detached":
            new = _window_counts()
            self._drain_tail(job, new)
            if any(new.values()):
                self._event(
                    job,
                    "window",
                    {
                        **new,
                        "live_objects": len(job.table.objects),
                        "live_bytes": job.table.live_bytes(),
                        "log_offset": job.tail.offset,
                        "final": True,
                    },
                )
                job.state["samples_ingested"] = (
                    int(job.state.get("samples_ingested", 0)) + new["samples"]
                )
                job.state["records_ingested"] = (
                    int(job.state.get("records_ingested", 0))
                    + new["allocs"]
                    + new["frees"]
                    + new["samples"]
                )
        if status is None:
            end = job.state.get("end")
            if isinstance(end, dict):
                reason = int(end.get("reason", 0))
                status = "exited" if reason in (0, 256) else "crashed"
                if 0 < reason <= 64:
                    try:
                        job.state["signal"] = signal.Signals(reason).name
                    except ValueError:
                        job.state["signal"] = str(reason)
            elif job.tail is not None and exit_code is None:
                status = "killed"  # the log has no END record: SIGKILL or similar
            else:
                status = "exited" if exit_code is None or exit_code < 128 else "crashed"
        self._stop_perf(job)
        job.status = status
        job.pending.clear()
        job.state["exit"] = {"status": status, "exit_code": exit_code, "at": _iso()}
        self._queue_state(job, status=status, detached_at=_now())
        with self.lock:
            self.jobs.pop(job.id, None)
        self.totals["jobs_closed"] += 1
        self.log("info", "job_closed", job=job.id, pid=job.pid, status=status, exit_code=exit_code)

    # ------------------------------------------------------------------ restart
    def _adopt(self) -> None:
        """Jobs the store says are attached: re-attach the live ones, close the others."""
        from sqlalchemy import select

        from placer.store.models import DaemonJob

        with self.store.session() as s:
            rows = s.scalars(
                select(DaemonJob).where(
                    DaemonJob.status == "attached", DaemonJob.host_id == self.host_id
                )
            ).all()
            found = [
                (r.id, r.pid, r.pid_start_time, r.kind, list(r.command or []), dict(r.state or {}))
                for r in rows
            ]
        for jid, pid, start, kind, command, state in found:
            owner = int(state.get("owner_uid", 0))
            job = Job(jid, pid, start, kind, command, owner, state)
            if state.get("wrapper_pid") is None and state.get("awaiting_program"):
                job.wrapper_pid = pid
            if not procs.alive(pid, start):
                job.state["exit"] = {
                    "status": "gone",
                    "at": _iso(),
                    "note": "ended while the daemon was not running",
                }
                job.status = "gone"
                self._queue_state(job, status="gone", detached_at=_now())
                self.log("info", "job_gone", job=jid, pid=pid)
                continue
            tail = state.get("tail") or {}
            if kind == "objects" and tail.get("path"):
                offset = int(tail.get("offset", 0))
                job.tail = ShimTail(tail["path"])
                job.state["tail"] = {"path": tail["path"], "offset": 0}
                # rebuild the object table from the records already stored, count nothing
                self._drain_tail(job, {}, count=False, until=offset)
                for key, tier in (state.get("tiers") or {}).items():
                    if key in job.table.objects:
                        job.table.objects[key].tier = tier
            with self.lock:
                self.jobs[jid] = job
            self.log(
                "info",
                "job_readopted",
                job=jid,
                pid=pid,
                kind=kind,
                offset=(job.state.get("tail") or {}).get("offset"),
            )

    # ------------------------------------------------------------------ socket requests
    def _handle(self, conn: socket.socket, rfile: Any, wfile: Any) -> None:
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer_pid, peer_uid, _gid = struct.unpack("3i", creds)
        except OSError:
            return
        while True:
            line = rfile.readline(MAX_MESSAGE + 1)
            if not line:
                return
            try:
                req = decode(line.rstrip(b"\n"))
                op = pfield(req, "op", str)
                handler = getattr(self, f"_op_{op}", None)
                if handler is None:
                    raise ProtocolError(f"unknown op {op!r}")
                reply = {"ok": True, **handler(req, peer_uid, peer_pid)}
            except NotFoundError as exc:
                reply = {"ok": False, "error": str(exc), "kind": "not_found"}
            except PlacerError as exc:
                reply = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
            except Exception as exc:  # noqa: BLE001 - reply, log, keep serving
                self.log("error", "request_failed", error=f"{type(exc).__name__}: {exc}")
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
            try:
                wfile.write(encode(reply))
                wfile.flush()
            except (OSError, ProtocolError):
                return

    def _op_ping(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        return {"pid": os.getpid()}

    def _op_status(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        return {"status": self.status_document()}

    def _op_jobs(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        with self.lock:
            jobs = list(self.jobs.values())
        return {"jobs": [self.job_summary(j) for j in sorted(jobs, key=lambda j: j.id)]}

    def _op_job(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        jid = pfield(req, "job", int)
        with self.lock:
            job = self.jobs.get(jid)
        if job is None:
            raise NotFoundError(f"job {jid} is not attached to the daemon")
        with job.lock:
            return {"job": self.job_document(job)}

    def _job_for(self, req: dict[str, Any], uid: int) -> Job:
        jid = pfield(req, "job", int)
        with self.lock:
            job = self.jobs.get(jid)
        if job is None:
            raise NotFoundError(f"job {jid} is not attached to the daemon")
        if uid != 0 and uid != job.owner_uid:
            raise procs.PermissionRefused(f"refused: job {jid} belongs to uid {job.owner_uid}")
        return job

    def _op_attach(self, req: dict[str, Any], uid: int, peer_pid: int) -> dict[str, Any]:
        pid = pfield(req, "pid", int)
        kind = pfield(req, "kind", str, required=False, default="objects")
        if kind not in ("objects", "pipeline"):
            raise InvalidInputError(f"job kind must be objects or pipeline, not {kind!r}")
        command = pfield(req, "command", list, required=False, default=None)
        run_id = pfield(req, "run_id", int, required=False)
        info = procs.check_attach(pid, uid, os.geteuid())
        space = knobs = None
        if kind == "pipeline":
            space = parse_knob_space(pfield(req, "space", dict))
            knobs = pfield(req, "knobs", dict, required=False, default={})
        with self.lock:
            for j in self.jobs.values():
                if j.pid == pid and j.start_time == info.start_time:
                    return {"job": self.job_summary(j), "existing": True}
        cmd = [str(c) for c in command] if command else procs.cmdline(pid)
        wrapper = (
            kind == "objects"
            and pid == peer_pid
            and command is not None
            and procs.environ_value(pid, "PLACER_SHIM_LOG") is None
        )
        state: dict[str, Any] = {
            "owner_uid": info.uids[0],
            "seq": {},
            "decisions": [],
            "decisions_total": 0,
            "migrations": 0,
            "bytes_migrated": 0,
            "budget": self.cfg.dram_budget,
        }
        if wrapper:
            state["awaiting_program"] = True
        if kind == "pipeline":
            state.update(
                space=space,
                knobs=knobs,
                knob_changes=[],
                name=pfield(req, "name", str, required=False, default=""),
            )
            shape = pfield(req, "shape", dict, required=False)
            if shape is not None:
                state["shape"] = _json_limited(shape)
        from placer.store.models import DaemonJob

        with self.store.session() as s:
            row = DaemonJob(
                host_id=self.host_id,
                pid=pid,
                pid_start_time=info.start_time,
                kind=kind,
                command=cmd,
                status="attached",
                run_id=run_id,
                state=state,
                last_seen_at=_now(),
            )
            s.add(row)
            s.flush()
            jid = row.id
            if kind == "pipeline":
                from tuners.tuning import default_study_name

                # the job's Optuna study (in the store) keeps this name across restarts
                state["study"] = default_study_name(f"daemon-job{jid}")
                row.state = dict(state)
        job = Job(
            jid,
            pid,
            info.start_time,
            kind,
            cmd,
            info.uids[0],
            state,
            wrapper_pid=pid if wrapper else None,
            prev=info,
        )
        with self.lock:
            self.jobs[jid] = job
        self.log(
            "info",
            "job_attached",
            job=jid,
            pid=pid,
            kind=kind,
            by_uid=uid,
            command=cmd[:8],
            wrapper=wrapper,
        )
        return {"job": self.job_summary(job)}

    def _op_detach(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        job = self._job_for(req, uid)
        with job.lock:
            self._close(job, None, "detached")
        return {"job": self.job_summary(job)}

    def _op_exit(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        jid = pfield(req, "job", int)
        code = pfield(req, "exit_code", int, required=False)
        status = pfield(req, "status", str, required=False)
        run_id = pfield(req, "run_id", int, required=False)
        if status not in (
            None,
            "exited",
            "crashed",
            "killed",
            "signaled",
            "succeeded",
            "failed",
            "interrupted",
        ):
            raise InvalidInputError(f"unknown exit status {status!r}")
        with self.lock:
            live = self.jobs.get(jid)
        if live is None and run_id is not None:
            # the daemon saw the program end first (it stores its run afterwards): link only
            return {"job": self._link_run(jid, run_id, uid)}
        job = self._job_for(req, uid)
        if run_id is not None:
            self._link_run(jid, run_id, uid)
            job.state["run_id"] = run_id
        with job.lock:
            self._close(
                job, code, "crashed" if status in ("crashed", "signaled", "killed") else None
            )
        return {"job": self.job_summary(job)}

    def _link_run(self, jid: int, run_id: int, uid: int) -> dict[str, Any]:
        """Set the job's ``run_id`` (its ``placer profile``/``run`` run, now stored)."""
        from sqlalchemy import select, update

        from placer.store.models import DaemonJob, Run

        with self.store.session() as s:
            row = s.scalars(
                select(DaemonJob).where(DaemonJob.id == jid, DaemonJob.host_id == self.host_id)
            ).first()
            if row is None:
                raise NotFoundError(f"job {jid} is not in the store")
            owner = int((row.state or {}).get("owner_uid", -1))
            if uid != 0 and uid != owner:
                raise procs.PermissionRefused(f"refused: job {jid} belongs to uid {owner}")
            if s.get(Run, run_id) is None:
                raise NotFoundError(f"run {run_id} is not in the store")
            s.execute(update(DaemonJob).where(DaemonJob.id == jid).values(run_id=run_id))
            doc = {"id": jid, "pid": row.pid, "status": row.status, "run_id": run_id}
        self.log("info", "job_run_linked", job=jid, run=run_id)
        return doc

    def _op_pipeline(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        job = self._job_for(req, uid)
        if job.kind != "pipeline":
            raise InvalidInputError(f"job {job.id} is not a pipeline job")
        knobs = pfield(req, "knobs", dict)
        sps = pfield(req, "samples_per_second", (int, float))
        stages = pfield(req, "stages", list, required=False, default=[])
        batches = pfield(req, "batches", int, required=False, default=0)
        if sps < 0 or sps != sps or sps == float("inf"):
            raise InvalidInputError("samples_per_second must be a finite number >= 0")
        # Optuna's storage is the store's database: its calls may wait on the store, so
        # they run under the job's tuning lock, never the lock the loop takes.
        with job.tune_lock:
            created = False
            try:
                if job.tuner is None:
                    job.tuner = self._make_tuner(job, knobs, stages, batches, float(sps))
                    created = not job.tuner.resumed
                nxt, record = job.tuner.step(knobs, float(sps))
            except Exception as exc:  # noqa: BLE001 - the store (Optuna's tables) failed
                job.tuner = None  # reloaded from the store at the next report
                self._job_error(job, "tune", exc)
                with job.lock:
                    self._event(
                        job,
                        "window",
                        {"samples_per_second": sps, "knobs": knobs, "stages": stages[:64]},
                    )
                    job.state["tuner_error"] = f"{type(exc).__name__}: {exc}"[:300]
                    self._queue_state(job)
                return {
                    "knobs": knobs,
                    "settled": False,
                    "trial": None,
                    "note": "the tuner's store is unavailable; keep the current knobs",
                }
            tuner = job.tuner
        with job.lock:
            st = job.state
            st.pop("tuner_error", None)
            if created:
                first = tuner.first
                st["first_trial"] = first.to_dict()
                dec = st.setdefault("decisions", [])
                dec.append(
                    {
                        "at": _iso(),
                        "action": "first trial: "
                        + (
                            "the analysis's config"
                            if first.source == "analysis"
                            else "the job's own config"
                        )
                        + " ("
                        + ", ".join(f"{k}={v}" for k, v in first.knobs.items())
                        + ")",
                        "reason": first.reason,
                    }
                )
                del dec[:-DECISIONS_KEPT]
                st["decisions_total"] = int(st.get("decisions_total", 0)) + 1
                self.totals["decisions"] += 1
            self._event(
                job, "window", {"samples_per_second": sps, "knobs": knobs, "stages": stages[:64]}
            )
            self.totals["samples"] += 1
            if self.metrics is not None:
                self.metrics.samples.labels(source="pipeline").inc()
            if not record.get("waiting"):
                self._event(job, "knobs", {**record, "next": nxt})
                best = st.get("best") or {}
                if sps > float(best.get("samples_per_second", -1)):
                    st["best"] = {"samples_per_second": sps, "knobs": knobs}
                st.setdefault("first_samples_per_second", sps)
            changes = []
            current = st.get("knobs") or {}
            for k, v in nxt.items():
                if current.get(k) != v:
                    changes.append(
                        {
                            "at": _iso(),
                            "knob": k,
                            "old": current.get(k),
                            "new": v,
                            "reason": self._knob_reason(tuner, record),
                        }
                    )
            if changes:
                kept = st.setdefault("knob_changes", [])
                kept.extend(changes)
                del kept[:-KNOB_CHANGES_KEPT]
                dec = st.setdefault("decisions", [])
                dec.append(
                    {
                        "at": _iso(),
                        "action": "knobs " + ", ".join(f"{c['knob']}={c['new']}" for c in changes),
                        "reason": changes[0]["reason"] + f"; last window {sps:.1f} samples/s",
                    }
                )
                del dec[:-DECISIONS_KEPT]
                st["decisions_total"] = int(st.get("decisions_total", 0)) + 1
                self.totals["knob_changes"] += len(changes)
                self.totals["decisions"] += 1
                if self.metrics is not None:
                    self.metrics.decisions.labels(kind="knobs").inc()
            st["knobs"] = dict(nxt)
            st["last_samples_per_second"] = sps
            st["trials"] = tuner.told
            st["settled"] = tuner.settled()
            self._queue_state(job)
        return {"knobs": nxt, "settled": tuner.settled(), "trial": record.get("trial")}

    def _optuna_storage(self) -> Any:
        """Optuna's RDB storage on the store (``placer tune``'s helper), opened once."""
        if self.optuna_store is None:
            from tuners.tuning import optuna_storage

            self.optuna_store = optuna_storage(self.store_url, heartbeat=False, attempts=2)
        return self.optuna_store

    def _make_tuner(
        self, job: Job, knobs: dict[str, Any], stages: list[Any], batches: int, sps: float
    ) -> PipelineTuner:
        """Create the job's study in the store, or resume it (a restarted daemon)."""
        st = job.state
        name = st.get("study")
        if not isinstance(name, str) or not name:
            from tuners.tuning import default_study_name

            name = st["study"] = default_study_name(f"daemon-job{job.id}")
        first = analyze_reported(
            st["space"], knobs, stages, batches, sps, shape=st.get("shape"), pid=job.pid
        )
        tuner = PipelineTuner(
            st["space"],
            knobs,
            self.cfg.tune_trials,
            seed=job.id,
            storage=self._optuna_storage(),
            study_name=name,
            first=first,
        )
        a = tuner.first.analysis or {}
        shape = st.get("shape") or {}
        # what the study's row in placer_tuning_studies says (written with the job state)
        st["study_facts"] = {
            "engine": shape.get("engine") if isinstance(shape, dict) else None,
            # without an analysis: what the job's process may use here
            "budget_cores": a.get("budget_cores") or _job_cores(job.pid),
            "budget_memory_bytes": a.get("budget_memory_bytes") or _available_memory(),
            "upper_bound": a.get("upper_bound_samples_per_second"),
            "stages": [
                {k: stg.get(k) for k in ("name", "kind", "sequential", "random")}
                for stg in a.get("stages") or []
                if isinstance(stg, dict)
            ],
        }
        self.log(
            "info",
            "study_resumed" if tuner.resumed else "study_created",
            job=job.id,
            study=name,
            trials=tuner.told,
            first_trial=tuner.first.source,
        )
        return tuner

    @staticmethod
    def _knob_reason(tuner: PipelineTuner, record: dict[str, Any]) -> str:
        if record.get("settled"):
            return "settled on the best trial"
        nxt = tuner.trial[0] if tuner.trial is not None else None
        if nxt == 0 and tuner.first.source == "analysis":
            return f"Optuna trial 0, enqueued from the analysis: {tuner.first.reason}"
        return f"Optuna trial {nxt} (ask-and-tell, TPE)"

    # ------------------------------------------------------------------ documents
    def job_summary(self, job: Job) -> dict[str, Any]:
        st = job.state
        return {
            "id": job.id,
            "pid": job.pid,
            "kind": job.kind,
            "status": job.status,
            "command": job.command,
            "objects": len(job.table.objects) if job.kind == "objects" else None,
            "live_bytes": job.table.live_bytes() if job.kind == "objects" else None,
            "decisions": int(st.get("decisions_total", 0)),
            "migrations": int(st.get("migrations", 0)),
            "bytes_migrated": int(st.get("bytes_migrated", 0)),
            "samples_ingested": int(st.get("samples_ingested", 0)),
            "knobs": st.get("knobs") if job.kind == "pipeline" else None,
            "source": "daemon",
        }

    def job_document(self, job: Job) -> dict[str, Any]:
        st = job.state
        objs = sorted(
            job.table.objects.values(),
            key=lambda o: -(o.score if o.score is not None else float("-inf")),
        )
        tail = st.get("tail") or {}
        return {
            **self.job_summary(job),
            "pid_start_time": job.start_time,
            "owner_uid": job.owner_uid,
            "waiting_for_program": job.wrapper_pid is not None,
            "shim_log": tail.get("path"),
            "log_offset": tail.get("offset"),
            "model": st.get("model") or self.model_version,
            "budget": self.cfg.dram_budget,
            "nodes": {
                "dram": self.nodes.dram,
                "slow": self.nodes.slow,
                **({"note": self.nodes.note} if self.nodes.note else {}),
            },
            "current": [o.describe() for o in objs[:50]],
            "migrations_total": int(st.get("migrations", 0)),
            "migrations": list(job.recent_migrations),
            "pending_migrations": len(job.pending),
            "recent_decisions": list(st.get("decisions") or [])[-20:],
            "knob_changes": list(st.get("knob_changes") or [])[-20:],
            "trials": st.get("trials"),
            "settled": st.get("settled"),
            "best": st.get("best"),
            "first_samples_per_second": st.get("first_samples_per_second"),
            "last_samples_per_second": st.get("last_samples_per_second"),
            "first_trial": st.get("first_trial"),
            "study": st.get("study"),
            "signals": st.get("signals"),
            "run_id": st.get("run_id"),
        }

    def status_document(self) -> dict[str, Any]:
        assert self.writer is not None
        with self.lock:
            jobs = list(self.jobs.values())
        return {
            "pid": os.getpid(),
            "uid": os.geteuid(),
            "uptime_seconds": round(time.time() - self.started, 3),
            "socket": str(self.cfg.socket_path()),
            "metrics": None
            if self.metrics_address is None
            else f"{self.metrics_address[0]}:{self.metrics_address[1]}",
            "store": self.store.display_url,
            "model": self.model_version,
            "config": self.cfg.to_dict(),
            "jobs": {
                "objects": sum(j.kind == "objects" for j in jobs),
                "pipeline": sum(j.kind == "pipeline" for j in jobs),
            },
            "loop": {
                "ticks": self.ticks,
                "interval": self.cfg.interval,
                "last_seconds": round(self.last_tick_seconds, 6),
                "max_seconds": round(self.max_tick_seconds, 6),
                "overruns": self.overruns,
            },
            "store_buffer": {
                "pending": self.writer.pending(),
                "max": self.writer.buffer_max,
                "dropped": self.writer.dropped,
                "written_events": self.writer.written,
                "failures": self.writer.failures,
                "last_error": self.writer.last_error,
            },
            "totals": dict(self.totals),
        }


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


def _json_limited(doc: dict[str, Any]) -> dict[str, Any]:
    """A declared pipeline shape, kept only when it is small plain JSON."""
    text = json.dumps(doc, default=str)
    if len(text) > 16384:
        raise InvalidInputError("pipeline shape over 16 KiB")
    out: dict[str, Any] = json.loads(text)
    return out


def _descendants(root: int) -> list[int]:
    """Every live descendant of ``root``, nearest first (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(rest[1]), []).append(int(entry.name))
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt = []
        for p in frontier:
            for c in children.get(p, []):
                out.append(c)
                nxt.append(c)
        frontier = nxt
    return out


def _job_cores(pid: int) -> float:
    """The CPUs a job's process may run on (its affinity), else the host's."""
    try:
        return float(len(os.sched_getaffinity(pid)))
    except OSError:
        return float(os.cpu_count() or 1)


def _available_memory() -> int:
    """The host's available memory in bytes (0: unknown)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError):
        return 0
