"""The store's schema: SQLAlchemy 2 typed ORM models for the whole design (docs/architecture.md).

Migrations in ``migrations/`` are the authority on the schema; these models describe the
same tables and ``alembic check`` (run by the tests) keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonDict = dict[str, Any]


class Base(DeclarativeBase):
    """Declarative base; every table name is prefixed ``placer_`` to share a database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {JsonDict: JSON, list[Any]: JSON}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


# --------------------------------------------------------------------------- hosts, tiers


class Host(Base):
    """A machine placer ran on: its identity and its size."""

    __tablename__ = "placer_hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), unique=True)
    cpus: Mapped[int] = mapped_column(Integer)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    kernel: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = _now()

    tiers: Mapped[list[MemoryTier]] = relationship(back_populates="host")


class HostModelRow(Base):
    """A host model measured by ``placer calibrate`` (:mod:`placer.contracts.host`).

    Kept, never overwritten: every label and plan priced on a model names it, so a later
    calibration changes nothing already computed. The newest row is the host's current model.
    """

    __tablename__ = "placer_host_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(
        ForeignKey("placer_hosts.id", ondelete="CASCADE"), index=True
    )
    host_fingerprint: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(32), unique=True)
    effective_cache_bytes: Mapped[int] = mapped_column(BigInteger)
    dram_latency_ns: Mapped[float] = mapped_column(Float)
    read_gbps: Mapped[float] = mapped_column(Float)
    write_gbps: Mapped[float] = mapped_column(Float)
    spread: Mapped[float] = mapped_column(Float)
    model: Mapped[JsonDict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = _now()


class MemoryTier(Base):
    """One NUMA node of a host, classed as DRAM or a slow tier, with the evidence used."""

    __tablename__ = "placer_memory_tiers"
    __table_args__ = (UniqueConstraint("host_id", "numa_node"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("placer_hosts.id", ondelete="CASCADE"))
    numa_node: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # dram | pmem | cxl | slow | unknown
    has_cpus: Mapped[bool] = mapped_column(Boolean)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)
    evidence: Mapped[JsonDict] = mapped_column(default=dict)
    seen_at: Mapped[dt.datetime] = _now()

    host: Mapped[Host] = relationship(back_populates="tiers")


# --------------------------------------------------------------------------- apps, runs


class Application(Base):
    """A program users profile and place; labels are grouped by it for evaluation."""

    __tablename__ = "placer_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = _now()


class Run(Base):
    """One execution of a program under placer (profile, experiment or plan)."""

    __tablename__ = "placer_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("placer_applications.id", ondelete="CASCADE"), index=True
    )
    host_id: Mapped[int | None] = mapped_column(ForeignKey("placer_hosts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # profile | experiment | plan
    command: Mapped[list[Any]] = mapped_column(default=list)
    cwd: Mapped[str] = mapped_column(Text, default="")
    binary_path: Mapped[str] = mapped_column(Text, default="")
    build_id: Mapped[str] = mapped_column(String(128), default="")
    inputs: Mapped[JsonDict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signals: Mapped[JsonDict] = mapped_column(default=dict)  # which access signals it has
    started_at: Mapped[dt.datetime] = _now()
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    wall_seconds: Mapped[float | None] = mapped_column(Float)

    @property
    def program_seconds(self) -> float | None:
        """The program's own run time: from the shim's start to its END record.

        ``wall_seconds`` also holds what wraps the program (``perf record`` starts and
        writes out for about a second), which would dwarf a short program's time; runs
        without a shim END record fall back to it.
        """
        shim = (self.signals or {}).get("shim") or {}
        value = shim.get("program_seconds") if isinstance(shim, dict) else None
        if isinstance(value, int | float) and value > 0:
            return float(value)
        return self.wall_seconds


class Site(Base):
    """An allocation site: hash of the top return addresses as (module, offset) pairs."""

    __tablename__ = "placer_sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_hash: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str] = mapped_column(String(16), default="c")  # c | python
    frames: Mapped[list[Any]] = mapped_column(default=list)  # [[module, offset], ...]
    symbolized: Mapped[list[Any]] = mapped_column(default=list)  # ["file:line", ...]
    #: Function of each ``symbolized`` frame ("" unknown; [] for sites stored before 0003).
    #: A parallel list rather than text inside the frames: every reader of ``symbolized``
    #: (DHAT matching, reports, plans) keeps reading plain ``file:line`` strings.
    functions: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    created_at: Mapped[dt.datetime] = _now()


class AllocObject(Base):
    """One allocation (or one chunk of a large allocation) in one run."""

    __tablename__ = "placer_objects"
    __table_args__ = (UniqueConstraint("run_id", "alloc_seq", "chunk_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("placer_runs.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("placer_sites.id"), index=True)
    alloc_seq: Mapped[int] = mapped_column(BigInteger)
    chunk_index: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=1)
    address: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int] = mapped_column(BigInteger, default=0)
    alloc_ns: Mapped[int] = mapped_column(BigInteger)
    free_ns: Mapped[int | None] = mapped_column(BigInteger)
    allocator: Mapped[str] = mapped_column(String(16), default="malloc")
    first_touch_faults: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[JsonDict] = mapped_column(default=dict)


class ObjectMetric(Base):
    """Access signal of one object during one time interval (sampled, never exact)."""

    __tablename__ = "placer_object_metrics"
    __table_args__ = (UniqueConstraint("object_id", "interval_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("placer_objects.id", ondelete="CASCADE"))
    interval_index: Mapped[int] = mapped_column(Integer)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    sampled_pages: Mapped[int] = mapped_column(Integer, default=0)
    touched_pages: Mapped[int] = mapped_column(Integer, default=0)
    written_pages: Mapped[int] = mapped_column(Integer, default=0)
    page_faults: Mapped[int] = mapped_column(Integer, default=0)
    perf_mem_samples: Mapped[int] = mapped_column(Integer, default=0)
    perf_mem_llc_misses: Mapped[int] = mapped_column(Integer, default=0)
    perf_mem_latency_sum: Mapped[float] = mapped_column(Float, default=0.0)
    perf_mem_tlb_misses: Mapped[int] = mapped_column(Integer, default=0)


class DeepSiteStat(Base):
    """Exact per-site counts from deep mode (valgrind DHAT): emulator input, never a feature."""

    __tablename__ = "placer_deep_site_stats"
    __table_args__ = (UniqueConstraint("run_id", "site_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("placer_runs.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("placer_sites.id"))
    blocks: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    total_lifetime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    details: Mapped[JsonDict] = mapped_column(default=dict)


# --------------------------------------------------------------------------- labels


class Experiment(Base):
    """A labeling experiment on a profiled run: measured on a slow tier, or emulated."""

    __tablename__ = "placer_experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("placer_runs.id", ondelete="CASCADE"))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("placer_hosts.id"))
    emulated: Mapped[bool] = mapped_column(Boolean)
    tier_spec_name: Mapped[str] = mapped_column(String(64))
    tier_spec: Mapped[JsonDict] = mapped_column(default=dict)
    repeats: Mapped[int] = mapped_column(Integer, default=1)
    baseline_seconds: Mapped[float | None] = mapped_column(Float)
    params: Mapped[JsonDict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = _now()


class Label(Base):
    """What placing an object (or a plan under a budget) in the slow tier costs."""

    __tablename__ = "placer_labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("placer_experiments.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # object | plan
    emulated: Mapped[bool] = mapped_column(Boolean)
    object_id: Mapped[int | None] = mapped_column(
        ForeignKey("placer_objects.id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[int | None] = mapped_column(ForeignKey("placer_sites.id"))
    budget_fraction: Mapped[float | None] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(64), default="")
    runtime_seconds: Mapped[float] = mapped_column(Float)
    runtime_spread: Mapped[float] = mapped_column(Float, default=0.0)
    penalty_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    details: Mapped[JsonDict] = mapped_column(default=dict)


# --------------------------------------------------------------------------- models, plans


class TrainedModel(Base):
    """A placement model: LightGBM text model plus JSON metadata (never pickle)."""

    __tablename__ = "placer_models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))  # ranker | penalty
    model_text: Mapped[str] = mapped_column(Text)
    meta: Mapped[JsonDict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = _now()


class Plan(Base):
    """A placement plan for one binary under one DRAM budget."""

    __tablename__ = "placer_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("placer_runs.id", ondelete="SET NULL"), index=True
    )
    model_id: Mapped[int | None] = mapped_column(ForeignKey("placer_models.id"))
    strategy: Mapped[str] = mapped_column(String(64))
    build_id: Mapped[str] = mapped_column(String(128), default="")
    budget_bytes: Mapped[int] = mapped_column(BigInteger)
    predicted_slowdown: Mapped[float | None] = mapped_column(Float)
    document: Mapped[JsonDict] = mapped_column(default=dict)
    achieved: Mapped[JsonDict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = _now()

    decisions: Mapped[list[PlanDecision]] = relationship(
        back_populates="plan", cascade="all, delete-orphan"
    )


class PlanDecision(Base):
    """Where a plan puts one site (and chunk), and why."""

    __tablename__ = "placer_plan_decisions"
    __table_args__ = (UniqueConstraint("plan_id", "site_id", "chunk_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("placer_plans.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("placer_sites.id"))
    chunk_index: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[str] = mapped_column(String(16))  # dram | slow
    numa_node: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")

    plan: Mapped[Plan] = relationship(back_populates="decisions")


# --------------------------------------------------------------------------- pipelines


class Pipeline(Base):
    """An ML input pipeline placer profiles and tunes."""

    __tablename__ = "placer_pipelines"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    engine: Mapped[str] = mapped_column(String(32))  # torchdata | dataloader | tfdata | python
    builder: Mapped[str] = mapped_column(Text)  # module:function
    host_id: Mapped[int | None] = mapped_column(ForeignKey("placer_hosts.id"))
    analysis: Mapped[JsonDict] = mapped_column(default=dict)
    best_config: Mapped[JsonDict] = mapped_column(default=dict)
    best_throughput: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = _now()

    stages: Mapped[list[Stage]] = relationship(
        back_populates="pipeline", cascade="all, delete-orphan", order_by="Stage.position"
    )


class Stage(Base):
    """One stage of a pipeline, in order from source to output."""

    __tablename__ = "placer_stages"
    __table_args__ = (UniqueConstraint("pipeline_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("placer_pipelines.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32), default="map")
    sequential: Mapped[bool] = mapped_column(Boolean, default=False)
    random: Mapped[bool] = mapped_column(Boolean, default=False)

    pipeline: Mapped[Pipeline] = relationship(back_populates="stages")


class PipelineRun(Base):
    """One measured execution of a pipeline under one configuration."""

    __tablename__ = "placer_pipeline_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("placer_pipelines.id", ondelete="CASCADE"), index=True
    )
    config: Mapped[JsonDict] = mapped_column(default=dict)
    purpose: Mapped[str] = mapped_column(String(32), default="profile")  # profile | trial
    throughput: Mapped[float | None] = mapped_column(Float)  # elements/s at the output
    status: Mapped[str] = mapped_column(String(16), default="running")
    host_facts: Mapped[JsonDict] = mapped_column(default=dict)
    started_at: Mapped[dt.datetime] = _now()
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    study_name: Mapped[str | None] = mapped_column(String(255), index=True)  # trials only
    trial_number: Mapped[int | None] = mapped_column(Integer)
    peak_rss_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class StageMetric(Base):
    """What one stage did during one pipeline run (probe counters)."""

    __tablename__ = "placer_stage_metrics"
    __table_args__ = (UniqueConstraint("pipeline_run_id", "stage_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_run_id: Mapped[int] = mapped_column(
        ForeignKey("placer_pipeline_runs.id", ondelete="CASCADE")
    )
    stage_id: Mapped[int] = mapped_column(ForeignKey("placer_stages.id", ondelete="CASCADE"))
    elements_in: Mapped[int] = mapped_column(BigInteger, default=0)
    elements_out: Mapped[int] = mapped_column(BigInteger, default=0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    wait_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    queue_occupancy: Mapped[float] = mapped_column(Float, default=0.0)
    parallelism: Mapped[int] = mapped_column(Integer, default=1)


class TuningStudy(Base):
    """A pipeline tuning study; its trials live in Optuna's own tables in the same DB."""

    __tablename__ = "placer_tuning_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("placer_pipelines.id", ondelete="CASCADE"), index=True
    )
    optuna_study_name: Mapped[str] = mapped_column(String(255), unique=True)
    budget_cores: Mapped[float] = mapped_column(Float)
    budget_memory_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="running")
    best_config: Mapped[JsonDict] = mapped_column(default=dict)
    best_throughput: Mapped[float | None] = mapped_column(Float)
    naive_throughput: Mapped[float | None] = mapped_column(Float)
    upper_bound: Mapped[float | None] = mapped_column(Float)  # analysis bound, samples/s
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = _now()


# --------------------------------------------------------------------------- daemon


class DaemonJob(Base):
    """A process the daemon watches, and what it decided for it."""

    __tablename__ = "placer_daemon_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("placer_hosts.id"))
    pid: Mapped[int] = mapped_column(Integer)
    pid_start_time: Mapped[int] = mapped_column(BigInteger, default=0)  # guards PID reuse
    kind: Mapped[str] = mapped_column(String(16))  # objects | pipeline
    command: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="attached")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("placer_runs.id", ondelete="SET NULL"))
    pipeline_id: Mapped[int | None] = mapped_column(
        ForeignKey("placer_pipelines.id", ondelete="SET NULL")
    )
    state: Mapped[JsonDict] = mapped_column(default=dict)
    attached_at: Mapped[dt.datetime] = _now()
    detached_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DaemonEvent(Base):
    """One thing the daemon did or saw for a job (decision, migration, knob change, window).

    ``(job_id, kind, seq)`` is the natural key: re-ingesting after a crash inserts nothing
    twice.
    """

    __tablename__ = "placer_daemon_events"
    __table_args__ = (UniqueConstraint("job_id", "kind", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("placer_daemon_jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # decision | migration | knobs | window
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    document: Mapped[JsonDict] = mapped_column(default=dict)


Index("ix_placer_daemon_jobs_status", DaemonJob.status)
Index("ix_placer_objects_run", AllocObject.run_id, AllocObject.site_id)
