"""Store code for the pipeline tables: pipelines, stages, runs, stage metrics, studies.

Every function takes an open session (one transaction, see :meth:`placer.store.Store.session`)
so a caller groups writes that must land together.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from placer.contracts.pipeline import Measurement, PipelineDef
from placer.store.models import Pipeline, PipelineRun, Stage, StageMetric, TuningStudy

__all__ = ["Pipeline", "TuningStudy", "find_study", "record_measurement", "upsert_pipeline"]


def upsert_pipeline(session: Session, defn: PipelineDef, spec: str) -> Pipeline:
    """The pipeline row for ``defn`` (found by name and builder), stages kept in step."""
    row = session.scalars(
        select(Pipeline).where(Pipeline.name == defn.name, Pipeline.builder == spec)
    ).first()
    if row is None:
        row = Pipeline(name=defn.name, engine=defn.engine, builder=spec)
        session.add(row)
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
    """One pipeline run and its per-stage metrics."""
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


def find_study(session: Session, name: str) -> TuningStudy | None:
    return session.scalars(select(TuningStudy).where(TuningStudy.optuna_study_name == name)).first()


def pipeline_document(session: Session, pipeline: Pipeline) -> dict[str, Any]:
    """The ``placer pipeline ID`` JSON document (see docs/cli.md)."""
    analysis = pipeline.analysis or {}
    stages_a = {s["name"]: s for s in analysis.get("stages", [])}
    studies = session.scalars(
        select(TuningStudy).where(TuningStudy.pipeline_id == pipeline.id).order_by(TuningStudy.id)
    ).all()
    runs = session.scalars(
        select(PipelineRun).where(PipelineRun.pipeline_id == pipeline.id).order_by(PipelineRun.id)
    ).all()
    bs = float(analysis.get("batch_size") or 1.0)

    def per_sample(v: Any) -> float | None:
        return None if v is None else float(v) * bs

    return {
        "id": pipeline.id,
        "name": pipeline.name,
        "engine": pipeline.engine,
        "builder": pipeline.builder,
        "stages": [
            {
                "position": st.position,
                "name": st.name,
                "kind": st.kind,
                "sequential": st.sequential,
                "random": st.random,
                "visit_ratio": stages_a.get(st.name, {}).get("visit_ratio"),
                "samples_per_core_second": per_sample(stages_a.get(st.name, {}).get("core_rate")),
                "samples_per_worker_second": per_sample(
                    stages_a.get(st.name, {}).get("worker_rate")
                ),
                "parallelism": stages_a.get(st.name, {}).get("parallelism"),
                "cores": stages_a.get(st.name, {}).get("cores"),
                # share of its CPU that holds the GIL (thread engines; None: not measured)
                "gil_share": stages_a.get(st.name, {}).get("gil_share"),
            }
            for st in pipeline.stages
        ],
        "bottleneck": analysis.get("bottleneck"),
        "upper_bound_samples_per_second": analysis.get("upper_bound_samples_per_second"),
        "cache": analysis.get("cache"),
        "prefetch": analysis.get("prefetch"),
        "explanation": analysis.get("explanation", []),
        "best_config": pipeline.best_config or None,
        "best_samples_per_second": pipeline.best_throughput,
        "runs": {
            "profile": sum(1 for r in runs if r.purpose == "profile"),
            "trial": sum(1 for r in runs if r.purpose == "trial"),
        },
        "studies": [study_document(s) for s in studies],
    }


def study_document(s: TuningStudy) -> dict[str, Any]:
    return {
        "name": s.optuna_study_name,
        "status": s.status,
        "budget_cores": s.budget_cores,
        "budget_memory_bytes": s.budget_memory_bytes,
        "trials": s.n_trials,
        "best_config": s.best_config or None,
        "best_samples_per_second": s.best_throughput,
        "naive_samples_per_second": s.naive_throughput,
        "upper_bound_samples_per_second": s.upper_bound,
    }
