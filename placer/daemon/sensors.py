"""What the daemon senses of a job, one :class:`Sensor` per source.

Each tick the loop calls, for every sensor that applies to the job's kind,
``start(job)`` (idempotent: starts what is not running yet, once the job's own program
is known), then ``collect(job, window)`` (adds what it read to the tick's
:class:`Window`); ``stop(job)`` when the job ends or perf is turned off. The sources:

* :class:`PerfStatSensor`: ``perf stat -I`` counters of the process, else ``/proc/PID/stat``;
* :class:`PerfMemSensor`: rolling ``perf mem record`` windows folded into the objects;
* :class:`ShimLogSensor`: new records of the job's shim log (allocations, frees, samples);
* :class:`MappingsSensor`: without a shim log, the process's large anonymous mappings.

The list :data:`SENSORS` is also the order they are started and read in: perf stat first
(it gets the tick's perf start budget first), perf mem before the shim log (a perf mem
window is matched to the objects known before this tick's records), the shim log before
the mappings (which are only read when there is no log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from placer.daemon import procs
from placer.daemon.config import DaemonConfig
from placer.daemon.decide import anonymous_regions
from placer.daemon.job import Job, PerfContext, log_job_error
from placer.daemon.perfmem import MAX_CHILDREN, PerfMemRecorder
from placer.daemon.perfmem import window_counts as mem_window_counts
from placer.daemon.perfmem import workdir as perfmem_workdir
from placer.daemon.perfstat import PerfCounter
from placer.daemon.tail import LogRefused, OffLoop, ShimTail, TailError, log_path
from placer.daemon.telemetry import Telemetry

#: perf children started per tick at most (spreads their start-up cost over ticks).
PERF_STARTS_PER_TICK = 4


def record_counts() -> dict[str, int]:
    """What one window counts of a shim log: records by kind and sampled pages."""
    return dict.fromkeys(
        ("allocs", "frees", "samples", "sampled_pages", "touched_pages", "written_pages"), 0
    )


@dataclass
class Window:
    """What the sensors read of one job in one tick (becomes its ``window`` event)."""

    info: procs.ProcInfo  # the process now (from /proc)
    records: dict[str, int] = field(default_factory=record_counts)  # shim-log records read
    from_log: bool = False  # the job had a shim log at the start of this collection
    counters: dict[str, Any] = field(default_factory=dict)  # CPU and faults (perf or /proc)
    busy: bool = False  # the counters moved


@dataclass
class SensorEnv:
    """What the sensors share with the daemon (its config follows reloads)."""

    cfg: DaemonConfig
    perf: PerfContext
    log: Callable[..., None]
    telemetry: Telemetry
    mem_running: Callable[[], int]  # jobs with a perf mem recorder now
    starts_left: int = PERF_STARTS_PER_TICK  # perf children this tick may still start
    mem_dir: Path | None = None  # perf mem files of this daemon
    io: OffLoop = field(default_factory=OffLoop)  # shim-log reads, off the loop's thread

    def job_error(self, job: Job, what: str, exc: BaseException) -> None:
        log_job_error(self.log, job, what, exc)


@runtime_checkable
class Sensor(Protocol):
    """One source of what the daemon knows of a job."""

    kinds: tuple[str, ...]  # the job kinds it applies to

    def start(self, job: Job) -> None: ...

    def collect(self, job: Job, window: Window) -> None: ...

    def stop(self, job: Job) -> None: ...


class PerfStatSensor:
    """``perf stat -I`` counters of the job's process; ``/proc/PID/stat`` where perf cannot."""

    kinds: tuple[str, ...] = ("objects", "pipeline")

    def __init__(self, env: SensorEnv) -> None:
        self.env = env

    def start(self, job: Job) -> None:
        env, st = self.env, job.state
        sup = env.perf.support
        if not st.sensed:
            st.sensed = True  # from now on the state says where its counters come from
            job.dirty = True
        if job.perf is not None or st.perf_failed or not env.cfg.perf:
            return
        if sup is None or not sup.counters or sup.path is None or env.starts_left <= 0:
            return
        env.starts_left -= 1
        try:
            job.perf = PerfCounter(job.pid, int(env.cfg.interval * 1000), sup.path)
        except OSError as exc:
            self._fallback(job, f"perf stat did not start: {exc.strerror or exc}")
            return
        st.perf_pid = job.perf.perf_pid
        job.dirty = True
        env.log("debug", "perf_started", job=job.id, pid=job.pid, perf_pid=job.perf.perf_pid)

    def _fallback(self, job: Job, why: str) -> None:
        job.state.perf_failed = why
        job.dirty = True
        self.env.log(
            "warning",
            "perf_job_fallback",
            job=job.id,
            pid=job.pid,
            reason=why,
            fallback="/proc/PID/stat",
        )

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
            job.state.perf_pid = None
            if perf.total.intervals == 0 and procs.alive(job.pid, job.start_time):
                why = "perf stat exited: " + (perf.errors[0] if perf.errors else "no output")
                self._fallback(job, why)
                return None
        if counts.unsupported:
            self.env.job_error(
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

    def collect(self, job: Job, window: Window) -> None:
        info, prev = window.info, job.prev
        job.prev = info
        counters = self._perf_counts(job)
        if counters is None:
            counters = {
                "counters": "proc",
                "cpu_ticks": info.cpu_ticks - prev.cpu_ticks if prev else 0,
                "minflt": info.minflt - prev.minflt if prev else 0,
                "majflt": info.majflt - prev.majflt if prev else 0,
            }
            window.busy = any(counters[k] for k in ("cpu_ticks", "minflt", "majflt"))
        else:
            window.busy = any(counters[k] for k in ("cpu_ms", "page_faults", "minflt", "majflt"))
        window.counters = counters

    def stop(self, job: Job) -> None:
        if job.perf is None:
            return
        perf, job.perf = job.perf, None
        try:
            perf.stop()
        except OSError as exc:  # best effort, logged
            self.env.job_error(job, "perf_stop", exc)
        job.state.perf_pid = None


class PerfMemSensor:
    """Rolling ``perf mem record`` windows of the job, matched to its live objects."""

    kinds: tuple[str, ...] = ("objects",)

    def __init__(self, env: SensorEnv) -> None:
        self.env = env

    def start(self, job: Job) -> None:
        """Start the job's perf mem windows where perf mem works (at most MAX_CHILDREN)."""
        env = self.env
        sup = env.perf.support
        if job.mem is not None or job.state.mem_failed or not env.cfg.perf:
            return
        if sup is None or not sup.mem or sup.path is None or env.starts_left <= 0:
            return
        if env.mem_running() >= MAX_CHILDREN:
            return
        if env.mem_dir is None:
            env.mem_dir = perfmem_workdir()
        env.starts_left -= 1
        job.mem = PerfMemRecorder(
            job.pid, sup.path, env.mem_dir, f"job{job.id}", max(2.0, env.cfg.interval)
        )
        job.state.mem_window_s = job.mem.window_s
        job.dirty = True

    def collect(self, job: Job, window: Window) -> None:
        """Advance the job's perf mem window; fold a finished one into its objects."""
        rec = job.mem
        if rec is None:
            return
        try:
            text = rec.poll(True)
        except OSError as exc:
            rec.failed = f"perf mem did not start: {exc.strerror or exc}"
            text = None
        st = job.state
        if rec.failed:
            st.mem_failed = rec.failed
            self.stop(job)
            job.dirty = True
            self.env.log(
                "warning", "perf_mem_job_failed", job=job.id, pid=job.pid, reason=rec.failed
            )
            return
        if text is None:
            return
        objects = [
            (o.key, o.address, o.size, o.alloc_ns if o.key.startswith("s") else 0)
            for o in job.table.objects.values()
        ]
        w = mem_window_counts(text, objects, job.pid)
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
        st.perf_mem_windows = (st.perf_mem_windows or 0) + 1
        st.perf_mem_samples = (st.perf_mem_samples or 0) + w.samples
        if w.samples:
            self.env.telemetry.add_samples("perf_mem", w.samples)
        job.dirty = True

    def stop(self, job: Job) -> None:
        if job.mem is None:
            return
        rec, job.mem = job.mem, None
        try:
            rec.stop()
        except OSError as exc:  # best effort, logged
            self.env.job_error(job, "perf_mem_stop", exc)


class ShimLogSensor:
    """New records of the job's shim log (``PLACER_SHIM_LOG`` in its environment)."""

    kinds: tuple[str, ...] = ("objects",)

    def __init__(self, env: SensorEnv) -> None:
        self.env = env

    def start(self, job: Job) -> None:
        st = job.state
        if job.tail is not None or (st.tail or {}).get("none"):
            return
        pattern = procs.environ_value(job.pid, "PLACER_SHIM_LOG")
        if not pattern:
            st.tail = {"none": True}
            return
        path = log_path(procs.resolve_log_pattern(pattern, job.pid), job.pid)
        job.tail = ShimTail(path, owners=log_owners(job), io=self.env.io)
        st.tail = {"path": str(path), "offset": 0}

    def collect(self, job: Job, window: Window) -> None:
        window.from_log = job.tail is not None
        if job.tail is not None:
            self.drain(job, window.records)

    def stop(self, job: Job) -> None:
        """Nothing runs for a shim log (the last records are read when the job closes)."""

    def drain(
        self, job: Job, new: dict[str, int], *, count: bool = True, until: int | None = None
    ) -> None:
        """Read the log's new records into the job's table (and count them in ``new``)."""
        assert job.tail is not None
        t, st = job.table, job.state
        for _ in range(64):
            if until is not None and job.tail.offset >= until:
                break
            try:
                batch = job.tail.poll(until=until)
            except LogRefused as exc:
                # a path the target chose that is not its own regular file: the job fails
                st.tail = {"none": True, "error": str(exc)}
                job.tail = None
                job.refused = str(exc)
                self.env.log("warning", "job_log_refused", job=job.id, pid=job.pid, reason=str(exc))
                return
            except TailError as exc:
                self.env.job_error(job, "tail", exc)
                st.tail = {"none": True, "error": str(exc)}
                job.tail = None
                return
            if t.program_start_ns is None and job.tail.header_start_time is not None:
                t.program_start_ns = job.tail.shim_start_ns or None
            for a in batch.allocs:
                t.add_alloc(a.seq, a.address, a.size, a.site_hash, a.time_ns)
            # samples before frees: an object freed in this batch keeps its last samples
            # in the run's history, as the stored profile does
            for s in batch.samples:
                t.sample(s.seq, s.interval, s.sampled_pages, s.touched_pages, s.written_pages)
            for f in batch.frees:
                t.free(f.seq)
            if batch.end is not None:
                st.end = {
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
            assert st.tail is not None
            st.tail["offset"] = job.tail.offset
            if batch.bytes_read == 0:
                break


def log_owners(job: Job) -> frozenset[int]:
    """Who may own the job's shim log: the uids of its process (the shim creates the file)."""
    info = procs.proc_info(job.pid)
    return frozenset(info.uids) if info is not None else frozenset({job.owner_uid})


class MappingsSensor:
    """Without a shim log: the process's large anonymous mappings are its objects."""

    kinds: tuple[str, ...] = ("objects",)

    def __init__(self, env: SensorEnv) -> None:
        self.env = env

    def start(self, job: Job) -> None:
        """Nothing to start: ``/proc/PID/maps`` is read when due."""

    def collect(self, job: Job, window: Window) -> None:
        if window.from_log or job.tail is not None or job.wrapper_pid is not None:
            return
        if time.monotonic() - job.last_maps >= self.env.cfg.rank_every or not job.last_maps:
            job.last_maps = time.monotonic()
            job.table.sync_mappings(anonymous_regions(job.pid), time.monotonic_ns())

    def stop(self, job: Job) -> None:
        """Nothing runs."""


def default_sensors(env: SensorEnv) -> list[Sensor]:
    """The four sensors, in the order they are started and read (module docstring)."""
    return [PerfStatSensor(env), PerfMemSensor(env), ShimLogSensor(env), MappingsSensor(env)]
