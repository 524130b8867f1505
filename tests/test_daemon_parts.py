"""Unit tests of the daemon's parts: the typed job state, the sensor protocol, telemetry."""

from __future__ import annotations

import io
import mmap
import os

import pytest

from placer.daemon.config import DaemonConfig
from placer.daemon.job import Job, JobState, PerfContext
from placer.daemon.metrics import Metrics
from placer.daemon.perfmem import MAX_CHILDREN
from placer.daemon.perfstat import PerfSupport
from placer.daemon.procs import proc_info
from placer.daemon.sensors import (
    MappingsSensor,
    PerfMemSensor,
    PerfStatSensor,
    Sensor,
    SensorEnv,
    ShimLogSensor,
    Window,
    default_sensors,
    record_counts,
)
from placer.daemon.telemetry import Telemetry, json_log

WORKS = PerfSupport(True, "/usr/bin/perf", "", mem=True)


def _state(**kw: object) -> JobState:
    return JobState(1000, "50%", **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- JobState
def test_a_new_jobs_document_has_the_keys_the_daemon_always_wrote() -> None:
    doc = _state().to_doc()
    assert doc == {
        "owner_uid": 1000,
        "budget": "50%",
        "seq": {},
        "decisions": [],
        "decisions_total": 0,
        "migrations": 0,
        "bytes_migrated": 0,
    }
    assert _state(awaiting_program=True).to_doc()["awaiting_program"] is True
    pipe = _state(kind="pipeline", space={}, knobs={}, knob_changes=[], name="").to_doc()
    assert {"space", "knobs", "knob_changes", "name"} <= set(pipe)
    assert not {"kind", "sensed", "perf_failed", "mem_failed", "perf", "signals"} & set(pipe)


def test_signals_are_derived_not_stored() -> None:
    ctx = PerfContext(None, True)
    st = _state(perf=ctx)
    assert st.signals is None  # nothing sensed yet: no entry in the document
    st.sensed = True
    assert st.signals == {
        "counters": "/proc/PID/stat (perf not checked)",
        "perf_mem": "unavailable (perf not checked)",
    }
    ctx.support = WORKS  # the daemon's check, seen by every job at once
    assert st.signals is not None and st.signals["counters"].startswith("perf stat task-clock")
    assert st.signals["perf_mem"] == f"available; waiting (at most {MAX_CHILDREN} jobs at once)"
    st.mem_window_s = 2.0
    assert st.to_doc()["signals"]["perf_mem"] == "sampled: perf mem record, 2 s windows"
    st.perf_failed = "perf stat exited: no output"
    assert st.signals["counters"] == "/proc/PID/stat (perf stat exited: no output)"
    st.mem_failed = "no PEBS"
    assert st.signals["perf_mem"] == "not sampled (no PEBS)"
    ctx.enabled = False  # a reload with perf = false
    st.mem_failed = None
    assert st.signals["perf_mem"] == "available (perf mem record works)"
    assert _state(kind="pipeline", sensed=True, perf=PerfContext(WORKS, True)).signals == {
        "counters": WORKS.signals(True)["counters"],
        "perf_mem": "available (perf mem record works)",
    }


def test_state_document_round_trips() -> None:
    st = _state(sensed=True, tail={"path": "/tmp/x.log", "offset": 96}, windows=3)
    st.add_decision({"at": "t", "action": "a", "reason": "r"})
    doc = st.to_doc()
    assert doc["decisions_total"] == 1 and doc["tail"]["offset"] == 96
    back = JobState.from_doc(doc, "objects", st.perf)
    assert back.to_doc() == doc and back.sensed
    assert "signals" not in JobState.from_doc(_state().to_doc(), "objects", st.perf).to_doc()


def test_decisions_are_kept_bounded() -> None:
    st = _state()
    for i in range(510):
        st.add_decision({"at": str(i)})
    assert st.decisions_total == 510 and len(st.decisions) == 500
    assert st.decisions[0]["at"] == "10"


# --------------------------------------------------------------------------- sensors
def _env(**cfg: object) -> SensorEnv:
    c = DaemonConfig(**cfg)  # type: ignore[arg-type]
    return SensorEnv(
        c, PerfContext(None, c.perf), json_log("error", io.StringIO()), Telemetry(), lambda: 0
    )


def _job(env: SensorEnv, kind: str = "objects") -> Job:
    info = proc_info(os.getpid())
    assert info is not None
    return Job(1, os.getpid(), info.start_time, kind, ["test"], _state(kind=kind, perf=env.perf))


def test_every_sensor_speaks_the_protocol_in_the_documented_order() -> None:
    sensors = default_sensors(_env())
    assert all(isinstance(s, Sensor) for s in sensors)
    assert [type(s) for s in sensors] == [
        PerfStatSensor,
        PerfMemSensor,
        ShimLogSensor,
        MappingsSensor,
    ]
    assert [s.kinds for s in sensors if "pipeline" in s.kinds] == [("objects", "pipeline")]


def test_sensors_without_perf_read_proc_and_mappings() -> None:
    env = _env(perf=False)
    job = _job(env)
    keep = mmap.mmap(-1, 4 << 20)  # one anonymous mapping the mappings sensor must see
    keep.write(b"x" * (4 << 20))
    try:
        sensors = default_sensors(env)
        for s in sensors:
            s.start(job)
        assert job.state.sensed and job.perf is None and job.mem is None
        assert job.state.tail == {"none": True}  # this process has no shim log
        info = proc_info(os.getpid())
        assert info is not None
        w = Window(info, records=record_counts())
        for s in sensors:
            s.collect(job, w)
        assert w.counters["counters"] == "proc" and not w.from_log
        assert any(o.size >= 4 << 20 for o in job.table.objects.values())
        assert job.state.signals is not None
        assert job.state.signals["counters"] == "/proc/PID/stat (perf = false in the config)"
        for s in sensors:
            s.stop(job)  # nothing was started: stopping is harmless
    finally:
        keep.close()


# --------------------------------------------------------------------------- telemetry
def test_status_totals_and_prometheus_read_the_same_counts() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    t = Telemetry()
    t.add_samples("shim", 7)
    t.add_samples("perf_mem", 5)
    t.add_decision("tier")
    t.add_decision("first_trial")
    t.add_knob_changes(2)
    t.add_migration(8192, 2)
    t.add_job_closed()
    assert t.add_tick(0.5, 0.25) and not t.add_tick(0.1, 0.25)
    assert t.totals() == {
        "samples": 12,
        "migrations": 1,
        "bytes_moved": 8192,
        "decisions": 2,
        "knob_changes": 2,
        "jobs_closed": 1,
    }
    assert t.loop(0.25)["overruns"] == 1 and t.loop(0.25)["ticks"] == 2
    text = prometheus_client.generate_latest(Metrics(t).registry).decode()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['placer_daemon_samples_ingested_total{source="shim"}'] == 7
    assert values['placer_daemon_samples_ingested_total{source="perf_mem"}'] == 5
    assert values["placer_daemon_migrations_total"] == 1
    assert values["placer_daemon_bytes_moved_total"] == 8192
    assert values["placer_daemon_pages_on_target_total"] == 2
    assert values["placer_daemon_loop_overruns_total"] == 1
    assert sum(v for k, v in values.items() if k.startswith("placer_daemon_decisions")) == 2
