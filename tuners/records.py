"""The pipeline tables as documents: what ``placer pipeline ID`` prints.

Plain conversion of stored rows to JSON-ready dicts; reading and writing the rows is
:mod:`placer.store.repository.pipelines`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from placer.store.models import Pipeline, PipelineRun, TuningStudy

__all__ = ["pipeline_document", "study_document"]


def pipeline_document(
    pipeline: Pipeline, studies: Sequence[TuningStudy], runs: Sequence[PipelineRun]
) -> dict[str, Any]:
    """The ``placer pipeline ID`` JSON document (see docs/cli.md) of a stored pipeline,
    its studies and its runs (:mod:`placer.store.repository.pipelines` reads them)."""
    analysis = pipeline.analysis or {}
    stages_a = {s["name"]: s for s in analysis.get("stages", [])}
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
    """One study in the ``placer pipeline ID`` document."""
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
