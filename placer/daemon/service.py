"""The daemon: one facade that wires its parts together and owns the watched jobs.

One process, in the foreground (systemd ``Type=simple``): JSON-lines logs on stderr,
SIGTERM/SIGINT stop it cleanly (last flush to the store, socket removed), SIGHUP reloads
the config file and the newest placement model. Threads: the main loop
(:mod:`placer.daemon.loop`), the socket server (:mod:`placer.daemon.server`, one
short-lived thread per connection) and the Prometheus HTTP server
(:mod:`placer.daemon.metrics`). What a job is and what is stored of it:
:mod:`placer.daemon.job`; what is read of it: :mod:`placer.daemon.sensors`; what is
counted: :mod:`placer.daemon.telemetry`; pipeline reports: :mod:`placer.daemon.pipeline`.

The facade keeps a job's life cycle (attach, adopt after a restart, close) and the store:
events and state snapshots are queued to :class:`placer.daemon.ingest.Writer` and flushed
once per tick.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import threading
import time
from typing import Any

from placer.act.migrate import RateLimiter
from placer.daemon import procs
from placer.daemon.config import DaemonConfig
from placer.daemon.ingest import EventRow, StateRow, Writer
from placer.daemon.job import (
    TERMINAL,
    Job,
    JobState,
    PerfContext,
    iso,
    log_job_error,
    migration_summary,
    now,
)
from placer.daemon.loop import Loop
from placer.daemon.metrics import Metrics
from placer.daemon.perfstat import EVENTS, detect
from placer.daemon.pipeline import PipelineReports
from placer.daemon.sensors import Sensor, SensorEnv, ShimLogSensor, default_sensors, record_counts
from placer.daemon.server import Requests, SocketServer
from placer.daemon.tail import ShimTail
from placer.daemon.telemetry import EventLog, Telemetry, json_log
from placer.errors import InvalidInputError, NotFoundError, StoreError
from placer.placement.model import PlacementModel
from placer.placement.recommend import host_nodes
from placer.placement.registry import default_files, load_model
from placer.store import Store
from placer.store.engine import limit_lock_waits
from placer.store.repository.daemon import add_daemon_job, attached_jobs, host_job, link_job_run
from placer.store.repository.hosts import host_row
from placer.tuners.tuning import default_study_name

__all__ = ["Daemon", "json_log", "migration_summary"]


class Daemon:
    """The running daemon: its config, store, model, jobs and parts."""

    def __init__(
        self,
        cfg: DaemonConfig,
        store_url: str,
        config_path: str | None = None,
        log: EventLog | None = None,
    ) -> None:
        self.cfg = cfg
        self.store_url = store_url
        self.config_path = config_path
        self.log = log or json_log(cfg.log_level)
        self.jobs: dict[int, Job] = {}
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.reload_requested = False
        self.started = time.time()
        self.limiter = RateLimiter(cfg.migrate_mb_per_s)
        self.telemetry = Telemetry()
        self.metrics: Metrics | None = None
        self.metrics_address: tuple[str, int] | None = None
        self.model: PlacementModel | None = None
        self.model_version = ""
        self.host_id: int | None = None
        self.nodes: Any = None
        self.store: Any = None
        self.writer: Writer | None = None
        self.perf = PerfContext(None, cfg.perf)  # shared by every job's derived signals
        self.sensor_env = SensorEnv(cfg, self.perf, self.log, self.telemetry, self._mem_running)
        self.sensors: list[Sensor] = default_sensors(self.sensor_env)
        self.requests = Requests(self)
        self.socket = SocketServer(cfg.socket_path(), self.requests.handle)
        self.pipelines = PipelineReports(self)
        self.loop = Loop(self)

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        self.store = Store(self.store_url)
        # a locked or slow store delays one tick, not the loop (writes stay queued)
        limit_lock_waits(self.store.engine, self.cfg.store_timeout)
        self.store.ensure_schema()
        with self.store.session() as s:
            self.host_id = host_row(s).id
        self.writer = Writer(self.store, self.cfg.buffer_max, self.cfg.batch_max)
        self.nodes = host_nodes()
        self.detect_perf()
        self.load_model()
        self.socket.bind()
        self.metrics = Metrics(self.telemetry)
        address = self.cfg.metrics_address()
        if address is not None:
            try:
                self.metrics_address = self.metrics.serve(*address)
            except OSError as exc:
                self.socket.close()
                raise InvalidInputError(
                    f"cannot serve metrics on {self.cfg.metrics}: {exc.strerror}"
                ) from None
        self._adopt()
        self.socket.serve_in_thread()
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
            counters=self.perf.signals()["counters"],
        )

    def stop(self) -> None:
        self.socket.close()
        jobs = self.job_list()
        for job in jobs:
            with job.lock:
                self.stop_sensors(job)
                self.queue_state(job)
        env = self.sensor_env
        if env.mem_dir is not None:
            shutil.rmtree(env.mem_dir, ignore_errors=True)
            env.mem_dir = None
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

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (:meth:`placer.daemon.loop.Loop.run`)."""
        return self.loop.run()

    def reload(self) -> None:
        self.loop.reload()

    def tick(self) -> None:
        self.loop.tick()

    def set_config(self, cfg: DaemonConfig) -> None:
        """A reloaded config, for the daemon and the parts that read it."""
        self.cfg = cfg
        self.sensor_env.cfg = cfg
        self.perf.enabled = cfg.perf

    def detect_perf(self) -> None:
        """Once (and on a reload that turns ``perf`` on): can perf count jobs here?"""
        if not self.cfg.perf or self.perf.support is not None:
            return
        sup = self.perf.support = detect()
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

    def load_model(self) -> None:
        """The newest trained placement model in the store, else the shipped default."""
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

    # ------------------------------------------------------------------ jobs
    def job_list(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    def get_job(self, jid: int) -> Job | None:
        with self.lock:
            return self.jobs.get(jid)

    def _mem_running(self) -> int:
        return sum(1 for j in self.job_list() if j.mem is not None)

    def sensors_for(self, job: Job) -> list[Sensor]:
        return [s for s in self.sensors if job.kind in s.kinds]

    def stop_sensors(self, job: Job) -> None:
        for s in self.sensors_for(job):
            s.stop(job)

    def job_error(self, job: Job, what: str, exc: BaseException) -> None:
        log_job_error(self.log, job, what, exc)

    def event(self, job: Job, kind: str, doc: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.put(EventRow(job.id, kind, job.seq(kind), now(), doc))
        job.dirty = True

    def queue_state(
        self, job: Job, status: str | None = None, detached_at: dt.datetime | None = None
    ) -> None:
        assert self.writer is not None
        job.dirty = False
        self.writer.put(
            StateRow(
                job.id,
                json.loads(json.dumps(job.state.to_doc(), default=str)),
                status=status,
                last_seen_at=now(),
                detached_at=detached_at,
                pid=job.pid,
                pid_start_time=job.start_time,
            )
        )

    def attach(
        self,
        info: procs.ProcInfo,
        kind: str,
        command: list[str],
        run_id: int | None,
        *,
        wrapper: bool,
        pipeline: dict[str, Any] | None,
    ) -> Job:
        """A new job in the store and in the watched set (its request checked by the server)."""
        state = JobState(
            info.uids[0], self.cfg.dram_budget, awaiting_program=wrapper, kind=kind, perf=self.perf
        )
        if pipeline is not None:
            state.space, state.knobs = pipeline["space"], pipeline["knobs"]
            state.knob_changes, state.name = [], pipeline["name"]
            state.shape = pipeline.get("shape")
        with self.store.session() as s:
            row = add_daemon_job(
                s,
                host_id=self.host_id,
                pid=info.pid,
                pid_start_time=info.start_time,
                kind=kind,
                command=command,
                run_id=run_id,
                state=state.to_doc(),
                last_seen_at=now(),
            )
            jid = row.id
            if kind == "pipeline":
                # the job's Optuna study (in the store) keeps this name across restarts
                state.study = default_study_name(f"daemon-job{jid}")
                row.state = state.to_doc()
        job = Job(
            jid,
            info.pid,
            info.start_time,
            kind,
            command,
            state,
            wrapper_pid=info.pid if wrapper else None,
            prev=info,
        )
        with self.lock:
            self.jobs[jid] = job
        return job

    def close(self, job: Job, exit_code: int | None, status: str | None) -> None:
        """The job's process ended (or the user detached): last collection, then close."""
        if job.status in TERMINAL:
            return
        st = job.state
        if job.kind == "objects" and job.tail is not None and status != "detached":
            new = record_counts()
            self._shim_log().drain(job, new)
            if any(new.values()):
                self.event(
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
                st.samples_ingested = (st.samples_ingested or 0) + new["samples"]
                st.records_ingested = (
                    (st.records_ingested or 0) + new["allocs"] + new["frees"] + new["samples"]
                )
        if status is None:
            if st.end is not None:
                reason = int(st.end.get("reason", 0))
                status = "exited" if reason in (0, 256) else "crashed"
                if 0 < reason <= 64:
                    try:
                        st.signal = signal.Signals(reason).name
                    except ValueError:
                        st.signal = str(reason)
            elif job.tail is not None and exit_code is None:
                status = "killed"  # the log has no END record: SIGKILL or similar
            else:
                status = "exited" if exit_code is None or exit_code < 128 else "crashed"
        self.stop_sensors(job)
        job.status = status
        job.pending.clear()
        st.exit = {"status": status, "exit_code": exit_code, "at": iso()}
        self.queue_state(job, status=status, detached_at=now())
        with self.lock:
            self.jobs.pop(job.id, None)
        self.telemetry.add_job_closed()
        self.log("info", "job_closed", job=job.id, pid=job.pid, status=status, exit_code=exit_code)

    def _shim_log(self) -> ShimLogSensor:
        for s in self.sensors:
            if isinstance(s, ShimLogSensor):
                return s
        raise LookupError("the daemon has no shim-log sensor")

    def _adopt(self) -> None:
        """Jobs the store says are attached: re-attach the live ones, close the others."""
        with self.store.session() as s:
            found = [
                (r.id, r.pid, r.pid_start_time, r.kind, list(r.command or []), dict(r.state or {}))
                for r in attached_jobs(s, self.host_id)
            ]
        for jid, pid, start, kind, command, doc in found:
            state = JobState.from_doc(doc, kind, self.perf)
            job = Job(jid, pid, start, kind, command, state)
            if state.wrapper_pid is None and state.awaiting_program:
                job.wrapper_pid = pid
            if not procs.alive(pid, start):
                state.exit = {
                    "status": "gone",
                    "at": iso(),
                    "note": "ended while the daemon was not running",
                }
                job.status = "gone"
                self.queue_state(job, status="gone", detached_at=now())
                self.log("info", "job_gone", job=jid, pid=pid)
                continue
            tail = state.tail or {}
            path = tail.get("path")
            if kind == "objects" and path:
                offset = int(tail.get("offset", 0))
                job.tail = ShimTail(path)
                state.tail = {"path": path, "offset": 0}
                # rebuild the object table from the records already stored, count nothing
                self._shim_log().drain(job, {}, count=False, until=offset)
                for key, tier in (state.tiers or {}).items():
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
                offset=(state.tail or {}).get("offset"),
            )

    def link_run(self, jid: int, run_id: int, uid: int) -> dict[str, Any]:
        """Set the job's ``run_id`` (its ``placer profile``/``run`` run, now stored)."""
        with self.store.session() as s:
            row = host_job(s, jid, self.host_id)
            if row is None:
                raise NotFoundError(f"job {jid} is not in the store")
            owner = int((row.state or {}).get("owner_uid", -1))
            if uid != 0 and uid != owner:
                raise procs.PermissionRefused(f"refused: job {jid} belongs to uid {owner}")
            if not link_job_run(s, row, run_id):
                raise NotFoundError(f"run {run_id} is not in the store")
            doc = {"id": jid, "pid": row.pid, "status": row.status, "run_id": run_id}
        self.log("info", "job_run_linked", job=jid, run=run_id)
        return doc

    # ------------------------------------------------------------------ documents
    def job_document(self, job: Job) -> dict[str, Any]:
        """``placer job ID`` of a live job."""
        return job.document(self.model_version, self.cfg.dram_budget, self.nodes)

    def status_document(self) -> dict[str, Any]:
        """``placer daemon status``."""
        assert self.writer is not None
        jobs = self.job_list()
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
            "loop": self.telemetry.loop(self.cfg.interval),
            "store_buffer": {
                "pending": self.writer.pending(),
                "max": self.writer.buffer_max,
                "dropped": self.writer.dropped,
                "written_events": self.writer.written,
                "failures": self.writer.failures,
                "last_error": self.writer.last_error,
            },
            "totals": self.telemetry.totals(),
        }
