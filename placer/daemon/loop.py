"""The daemon's main loop: signals, ticks, and what one tick does for each job.

Each tick, for every job: check it is still the same process (pid + start time), start
its sensors once its program is known and read them (:mod:`placer.daemon.sensors`),
queue a ``window`` event, re-rank its objects with the placement model when something
changed (at most every ``rank_every`` seconds), migrate the pages of objects whose tier
changed with ``move_pages`` under the shared MB/s limit (:mod:`placer.act.migrate`), and
queue the job's state; then flush the queue to the store. SIGTERM/SIGINT stop the loop,
SIGHUP reloads the config file and the newest placement model.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections import deque
from types import FrameType
from typing import TYPE_CHECKING, Any

from placer.act.migrate import migrate, numa_counts, page_range
from placer.daemon import procs
from placer.daemon.config import load_config
from placer.daemon.job import TERMINAL, Job, iso, migration_summary
from placer.daemon.sensors import PERF_STARTS_PER_TICK, Window, record_counts
from placer.errors import PlacerError

if TYPE_CHECKING:
    from placer.daemon.service import Daemon


class Loop:
    """Runs the daemon's ticks until a signal stops it."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.down_flushes = 0  # failed flushes of the current outage (0: the store is up)

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; installs the signal handlers (main thread only)."""
        d = self.d

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            d.log("info", "signal", signal=signal.Signals(signum).name)
            d.stop_event.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            d.reload_requested = True
            d.stop_event.set()  # wake the sleeping loop; cleared after reloading

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        d.start()
        try:
            next_at = time.monotonic()
            while True:
                if d.reload_requested:
                    d.reload_requested = False
                    d.stop_event.clear()
                    self.reload()
                if d.stop_event.is_set():
                    break
                self.tick()
                next_at += d.cfg.interval
                now = time.monotonic()
                if next_at < now:  # overran: skip the missed ticks, keep the cadence
                    next_at = now
                d.stop_event.wait(max(0.0, next_at - now))
        finally:
            d.stop()
        return 0

    def reload(self) -> None:
        """SIGHUP: the config file and environment again, under the command line's flags
        (socket and metrics need a restart), and the newest model; a bad value keeps the
        old config."""
        d = self.d
        try:
            cfg = load_config(d.config_path, overrides=d.overrides)
        except PlacerError as exc:
            d.log("error", "reload_failed", error=str(exc))
            return
        kept = []
        for name in ("socket", "metrics"):
            if getattr(cfg, name) != getattr(d.cfg, name):
                kept.append(name)
                setattr(cfg, name, getattr(d.cfg, name))
        d.set_config(cfg)
        d.limiter.set_rate(cfg.migrate_mb_per_s)
        assert d.writer is not None
        d.writer.buffer_max, d.writer.batch_max = cfg.buffer_max, cfg.batch_max
        d.log.set_level(cfg.log_level)
        d.load_model()
        if not cfg.perf:
            for job in d.job_list():
                with job.lock:
                    d.stop_sensors(job)
                    job.state.sensed = True
                    job.dirty = True
        d.detect_perf()
        d.log("info", "reloaded", config=cfg.to_dict(), model=d.model_version, needs_restart=kept)

    # ------------------------------------------------------------------ tick
    def tick(self) -> None:
        d = self.d
        t0 = time.perf_counter()
        d.sensor_env.starts_left = PERF_STARTS_PER_TICK
        for job in d.job_list():
            try:
                with job.lock:
                    self.tick_job(job)
            except Exception as exc:  # noqa: BLE001 - one job must not stop the loop
                d.job_error(job, "tick", exc)
        w = d.writer
        assert w is not None
        ok = w.flush(deadline=time.monotonic() + d.cfg.interval)
        if not ok:
            # each outage says so at its first failed flush, then every 60th
            self.down_flushes += 1
            if self.down_flushes % 60 == 1:
                d.log(
                    "warning",
                    "store_unavailable",
                    error=w.last_error,
                    pending=w.pending(),
                    dropped=w.dropped,
                    failed_flushes=self.down_flushes,
                )
        elif self.down_flushes:
            d.log("info", "store_back", written=w.written, dropped=w.dropped)
            self.down_flushes = 0
        elapsed = time.perf_counter() - t0
        d.telemetry.add_tick(elapsed, d.cfg.interval)
        self._update_metrics(elapsed, ok)

    def _update_metrics(self, elapsed: float, store_ok: bool) -> None:
        d = self.d
        m = d.metrics
        if m is None:
            return
        assert d.writer is not None
        m.loop_seconds.observe(elapsed)
        counts = {"objects": 0, "pipeline": 0}
        for j in d.job_list():
            counts[j.kind] = counts.get(j.kind, 0) + 1
        for kind, n in counts.items():
            m.jobs.labels(kind=kind).set(n)
        m.buffered.set(d.writer.pending())
        m.dropped.set(d.writer.dropped)
        m.store_up.set(1 if store_ok else 0)

    # ------------------------------------------------------------------ one job
    def tick_job(self, job: Job) -> None:
        d = self.d
        if job.status in TERMINAL:
            return
        info = procs.proc_info(job.pid)
        if info is None or (job.start_time and info.start_time != job.start_time):
            d.close(job, None, None)
            return
        if job.kind == "objects" and job.wrapper_pid is not None:
            self.find_program(job)
        sensors = d.sensors_for(job)
        if job.wrapper_pid is None:
            for s in sensors:
                s.start(job)
        window = Window(info, records=record_counts() if job.kind == "objects" else {})
        for s in sensors:
            s.collect(job, window)
        self.emit_window(job, window)
        if job.refused is not None:
            d.close(job, None, "failed")
            return
        if job.kind == "objects":
            self.rank_and_act(job)
        if job.dirty:
            d.queue_state(job)

    def find_program(self, job: Job) -> None:
        """``placer run``/``profile`` registered itself: the program is a descendant."""
        assert job.wrapper_pid is not None
        st = job.state
        for pid in procs.descendants(job.wrapper_pid):
            pattern = procs.environ_value(pid, "PLACER_SHIM_LOG")
            exe = procs.cmdline(pid)
            if pattern and exe and os.path.basename(exe[0]) not in ("perf", "env"):
                info = procs.proc_info(pid)
                if info is None:
                    continue
                st.wrapper_pid = job.wrapper_pid
                st.awaiting_program = False
                job.wrapper_pid = None
                job.pid, job.start_time = pid, info.start_time
                st.pid, st.pid_start_time, st.command = pid, info.start_time, exe
                job.prev = None
                self.d.log("info", "program_found", job=job.id, pid=pid)
                return

    def emit_window(self, job: Job, w: Window) -> None:
        """The tick's ``window`` event of the job (none when it was idle)."""
        new = w.records
        records = new.get("allocs", 0) + new.get("frees", 0) + new.get("samples", 0)
        mem, job.mem_pending = job.mem_pending, None
        if not records and not w.busy and mem is None:
            return  # idle: nothing to store
        doc = {
            **new,
            **w.counters,
            "live_objects": len(job.table.objects),
            "live_bytes": job.table.live_bytes(),
        }
        if mem is not None:
            doc["perf_mem"] = mem.to_doc()
        if job.tail is not None:
            doc["log_offset"] = job.tail.offset
        self.d.event(job, "window", doc)
        n = new.get("samples", 0)
        if n or records:
            self.d.telemetry.add_samples("shim", records)
        st = job.state
        st.windows = (st.windows or 0) + 1
        st.samples_ingested = (st.samples_ingested or 0) + n
        st.records_ingested = (st.records_ingested or 0) + records
        job.dirty = True

    # ------------------------------------------------------------------ decide and act
    def rank_and_act(self, job: Job) -> None:
        d = self.d
        now = time.monotonic()
        t, st = job.table, job.state
        ready = d.model is not None and t.changed and t.objects
        if ready and d.model is not None and now - job.last_rank >= d.cfg.rank_every:
            job.last_rank = now
            t0 = time.perf_counter()
            decisions = t.rank(d.model, d.cfg.dram_budget, d.model_version, time.monotonic_ns())
            # what one re-ranking costs, for `placer job` and the growth benchmark (issue 17)
            st.rank_seconds = round(time.perf_counter() - t0, 6)
            st.rankings = (st.rankings or 0) + 1
            st.model = d.model_version
            st.ranked_at = iso()
            for dec in decisions:
                node = d.nodes.dram if dec.tier == "dram" else d.nodes.slow
                o = dec.obj
                entry = {
                    "at": iso(),
                    "action": f"{o.key} ({o.size} B, site {o.site[:16]}) -> {dec.tier} "
                    f"(node {node})",
                    "reason": dec.reason,
                    "object": o.key,
                    "tier": dec.tier,
                    "previous": dec.previous,
                    "node": node,
                    "rank": dec.rank,
                }
                d.event(
                    job,
                    "decision",
                    {
                        **entry,
                        "size_bytes": o.size,
                        "site": o.site,
                        "score": o.score,
                        "predicted_penalty": o.penalty,
                    },
                )
                st.add_decision(entry)
                d.telemetry.add_decision("tier")
                if d.cfg.migrate:
                    job.pending = deque(p for p in job.pending if p[0] != o.key)
                    job.pending.append((o.key, node, 0))
            st.tiers = {o.key: o.tier for o in t.objects.values() if o.tier}
        self.migrate_pending(job)

    def migrate_pending(self, job: Job) -> None:
        """Move the pages of re-tiered objects, as far as the shared MB/s limit allows."""
        d = self.d
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
            grant = d.limiter.take(len(pages) * 4096)
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
                d.job_error(job, "migrate", exc)
                job.pending.popleft()
                return
            after = numa_counts(job.pid, obj.address, obj.size)
            doc: dict[str, Any] = {
                "object": key,
                "address": hex(obj.address),
                "size_bytes": obj.size,
                "tier": obj.tier,
                "first_page": start,
                **result.to_dict(),
                "numa_maps_before": {str(k): v for k, v in before.items()},
                "numa_maps_after": {str(k): v for k, v in after.items()},
            }
            d.event(job, "migration", doc)
            job.recent_migrations.append(migration_summary(iso(), doc))
            obj.migrated_bytes += result.bytes_moved
            st = job.state
            st.migrations += 1
            st.bytes_migrated += result.bytes_moved
            st.pages_on_target = (st.pages_on_target or 0) + result.after_on_node
            d.telemetry.add_migration(result.bytes_moved, result.after_on_node)
            if start + n >= start + len(pages):
                job.pending.popleft()
            else:
                job.pending[0] = (key, node, start + n)
