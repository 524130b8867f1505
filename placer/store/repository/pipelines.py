"""Pipelines, their stages, measured runs, stage metrics and tuning studies.

``placer tune``, the daemon's pipeline jobs, ``placer pipelines`` and the reports read and
write these tables only through the functions here. A study's trials live in Optuna's own
tables in the same database (:mod:`placer.tuners.study`); the rows here are placer's summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from placer.contracts.pipeline import Measurement, PipelineDef, StageInfo
from placer.store.models import Pipeline, PipelineRun, Stage, StageMetric, TuningStudy

# ---------------------------------------------------------------------------- pipelines


def add_pipeline(
    session: Session, name: str, engine: str, builder: str, stages: Sequence[StageInfo]
) -> Pipeline:
    """A new pipeline row with its stages in order (flushed: its id is set)."""
    row = Pipeline(name=name, engine=engine, builder=builder)
    for pos, info in enumerate(stages):
        row.stages.append(
            Stage(
                position=pos,
                name=info.name,
                kind=info.kind,
                sequential=info.sequential,
                random=info.random,
            )
        )
    session.add(row)
    session.flush()
    return row


def upsert_pipeline(session: Session, defn: PipelineDef, builder: str) -> Pipeline:
    """The pipeline row for ``defn`` (found by name and builder), stages kept in step."""
    row = session.scalars(
        select(Pipeline).where(Pipeline.name == defn.name, Pipeline.builder == builder)
    ).first()
    if row is None:
        return add_pipeline(session, defn.name, defn.engine, builder, defn.stages)
    row.engine = defn.engine
    existing = {s.position: s for s in row.stages}
    for pos, info in enumerate(defn.stages):
        st = existing.pop(pos, None)
        if st is None:
            st = Stage(position=pos, name=info.name)
            row.stages.append(st)
        st.name, st.kind = info.name, info.kind
        st.sequential, st.random = info.sequential, info.random
    for st in existing.values():
        row.stages.remove(st)
    session.flush()
    return row


def pipeline_by_id(session: Session, pipeline_id: int) -> Pipeline | None:
    return session.get(Pipeline, pipeline_id)


def find_pipeline(session: Session, key: str) -> Pipeline | None:
    """The pipeline ``key`` names: its id when it is all digits, else the newest by name."""
    row = pipeline_by_id(session, int(key)) if key.isdigit() else None
    if row is None:
        row = session.scalars(
            select(Pipeline).where(Pipeline.name == key).order_by(Pipeline.id.desc())
        ).first()
    return row


def pipelines_with_study_counts(session: Session) -> list[tuple[Pipeline, int]]:
    """Every pipeline in id order, each with how many tuning studies it has."""
    stmt = (
        select(Pipeline, func.count(TuningStudy.id))
        .outerjoin(TuningStudy, TuningStudy.pipeline_id == Pipeline.id)
        .group_by(Pipeline.id)
        .order_by(Pipeline.id)
    )
    return [(p, int(n)) for p, n in session.execute(stmt)]


# ------------------------------------------------------------------ runs and stage metrics


def record_measurement(
    session: Session,
    pipeline: Pipeline,
    m: Measurement,
    *,
    purpose: str,
    study_name: str | None = None,
    trial_number: int | None = None,
    status: str | None = None,
) -> PipelineRun:
    """One pipeline run and its per-stage metrics (stages the pipeline lacks are skipped)."""
    run = PipelineRun(
        pipeline_id=pipeline.id,
        config=dict(m.config),
        purpose=purpose,
        throughput=None if m.error else m.samples_per_second,
        status=status or ("failed" if m.error else "done"),
        host_facts=dataclasses.asdict(m.host),
        wall_seconds=m.wall_seconds,
        study_name=study_name,
        trial_number=trial_number,
        peak_rss_bytes=int(m.peak_rss_bytes or 0),
        error=m.error,
    )
    session.add(run)
    session.flush()
    by_name = {s.name: s for s in pipeline.stages}
    for st in m.stages:
        stage = by_name.get(st.name)
        if stage is None:
            continue  # a stage the definition does not declare (adapter internals)
        session.add(
            StageMetric(
                pipeline_run_id=run.id,
                stage_id=stage.id,
                elements_in=st.elements_in,
                elements_out=st.elements_out,
                wall_seconds=st.wall_seconds,
                cpu_seconds=st.cpu_seconds,
                bytes_out=st.bytes_out,
                wait_seconds=st.wait_seconds,
                queue_occupancy=st.queue_occupancy,
                parallelism=st.parallelism,
            )
        )
    return run


def runs_of_pipeline(session: Session, pipeline_id: int) -> list[PipelineRun]:
    """The pipeline's measured runs (profiles and trials), oldest first."""
    stmt = select(PipelineRun).where(PipelineRun.pipeline_id == pipeline_id)
    return list(session.scalars(stmt.order_by(PipelineRun.id)))


def stage_metrics_of_run(session: Session, run_id: int) -> list[StageMetric]:
    return list(session.scalars(select(StageMetric).where(StageMetric.pipeline_run_id == run_id)))


# ------------------------------------------------------------------------------ studies


def add_study(
    session: Session,
    pipeline_id: int,
    name: str,
    *,
    budget_cores: float,
    budget_memory_bytes: int,
    naive_throughput: float | None,
    upper_bound: float | None,
    status: str = "running",
) -> TuningStudy:
    """placer's row for the Optuna study ``name`` (its trials stay in Optuna's tables)."""
    row = TuningStudy(
        pipeline_id=pipeline_id,
        optuna_study_name=name,
        budget_cores=budget_cores,
        budget_memory_bytes=budget_memory_bytes,
        status=status,
        naive_throughput=naive_throughput,
        upper_bound=upper_bound,
    )
    session.add(row)
    session.flush()
    return row


def find_study(session: Session, name: str) -> TuningStudy | None:
    """The row of the Optuna study ``name``, if placer stored one."""
    stmt = select(TuningStudy).where(TuningStudy.optuna_study_name == name)
    return session.scalars(stmt).first()


def studies_of_pipeline(session: Session, pipeline_id: int) -> list[TuningStudy]:
    """The pipeline's tuning studies, oldest first."""
    stmt = select(TuningStudy).where(TuningStudy.pipeline_id == pipeline_id)
    return list(session.scalars(stmt.order_by(TuningStudy.id)))


def recent_studies(session: Session, limit: int) -> list[tuple[TuningStudy, str]]:
    """The newest ``limit`` studies of any pipeline, each with its pipeline's name."""
    stmt = (
        select(TuningStudy, Pipeline.name)
        .join(Pipeline, Pipeline.id == TuningStudy.pipeline_id)
        .order_by(TuningStudy.id.desc())
        .limit(limit)
    )
    return [(t, name) for t, name in session.execute(stmt)]


def count_studies(session: Session) -> int:
    return session.scalar(select(func.count(TuningStudy.id))) or 0


def optuna_schema_present(engine: Engine) -> bool:
    """Whether Optuna's tables exist (a store ``placer tune`` never used lacks them)."""
    return "studies" in inspect(engine).get_table_names()
