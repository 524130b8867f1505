"""Experiments, their labels, trained models, plans and plan decisions.

What ``placer experiment`` writes (one experiment and all its labels in the caller's
transaction), what training and the reports read back, where models are versioned, and
how plans are stored with their decisions. New rows come in as plain dataclasses
(:class:`NewLabel`, :class:`NewDecision`) so callers never build ORM rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from placer.store.models import (
    AllocObject,
    Application,
    Experiment,
    Label,
    Plan,
    PlanDecision,
    Run,
    TrainedModel,
)


# ------------------------------------------------------------------------- experiments
def add_experiment(
    session: Session,
    *,
    run_id: int,
    host_id: int | None,
    emulated: bool,
    tier_spec_name: str,
    tier_spec: dict[str, Any],
    repeats: int,
    baseline_seconds: float | None,
    params: dict[str, Any],
) -> Experiment:
    """Store a labeling experiment of ``run_id``; its id is set (labels refer to it)."""
    exp = Experiment(
        run_id=run_id,
        host_id=host_id,
        emulated=emulated,
        tier_spec_name=tier_spec_name,
        tier_spec=tier_spec,
        repeats=repeats,
        baseline_seconds=baseline_seconds,
        params=params,
    )
    session.add(exp)
    session.flush()
    return exp


def list_experiments(session: Session, run_ids: Sequence[int] | None = None) -> list[Experiment]:
    """Every experiment (or those of ``run_ids``), oldest first."""
    q = select(Experiment).order_by(Experiment.id)
    if run_ids is not None:
        q = q.where(Experiment.run_id.in_(run_ids))
    return list(session.scalars(q).all())


def experiments_of_run(session: Session, run_id: int) -> list[Experiment]:
    """Experiments made on the run or labeling its objects, oldest first."""
    labeled = (
        select(Label.experiment_id)
        .join(AllocObject, AllocObject.id == Label.object_id)
        .where(AllocObject.run_id == run_id)
    )
    return list(
        session.scalars(
            select(Experiment)
            .where((Experiment.run_id == run_id) | Experiment.id.in_(labeled))
            .order_by(Experiment.id)
        ).all()
    )


def runs_with_emulated_experiments(session: Session) -> list[tuple[int, str]]:
    """(run id, application name) of every run with an emulated experiment, by run id."""
    q = (
        select(Run.id, Application.name)
        .join(Application, Application.id == Run.application_id)
        .where(Run.id.in_(select(Experiment.run_id).where(Experiment.emulated.is_(True))))
        .order_by(Run.id)
    )
    return [(run_id, name) for run_id, name in session.execute(q).all()]


# ------------------------------------------------------------------------------ labels
@dataclass(frozen=True)
class NewLabel:
    """One label to store: an object alone in the slow tier (``object``) or a plan's run."""

    kind: str  # object | plan
    runtime_seconds: float
    penalty_seconds: float
    strategy: str
    details: dict[str, Any] = field(default_factory=dict)
    object_id: int | None = None
    site_id: int | None = None
    budget_fraction: float | None = None
    runtime_spread: float = 0.0


def add_labels(session: Session, experiment: Experiment, labels: Sequence[NewLabel]) -> None:
    """Store ``labels`` of ``experiment`` (measured or emulated as the experiment is)."""
    session.add_all(
        [
            Label(
                experiment_id=experiment.id,
                kind=lab.kind,
                emulated=experiment.emulated,
                object_id=lab.object_id,
                site_id=lab.site_id,
                budget_fraction=lab.budget_fraction,
                strategy=lab.strategy,
                runtime_seconds=lab.runtime_seconds,
                runtime_spread=lab.runtime_spread,
                penalty_seconds=lab.penalty_seconds,
                details=lab.details,
            )
            for lab in labels
        ]
    )
    session.flush()


def has_object_labels(session: Session, experiment_id: int) -> bool:
    found = session.scalar(
        select(Label.id)
        .where(Label.experiment_id == experiment_id, Label.kind == "object")
        .limit(1)
    )
    return found is not None


def object_penalties(
    session: Session, experiment_id: int
) -> list[tuple[int | None, float | None, int]]:
    """(object id, penalty seconds, the object's run id) of each object label."""
    rows = session.execute(
        select(Label.object_id, Label.penalty_seconds, AllocObject.run_id)
        .join(AllocObject, AllocObject.id == Label.object_id)
        .where(Label.experiment_id == experiment_id, Label.kind == "object")
    ).all()
    return [(oid, pen, orun) for oid, pen, orun in rows]


def labels_of_experiment(session: Session, experiment_id: int) -> list[Label]:
    return list(session.scalars(select(Label).where(Label.experiment_id == experiment_id)).all())


# ---------------------------------------------------------------------- trained models
def latest_model_version(session: Session, names: Sequence[str]) -> int:
    """The highest version stored under any of ``names`` (0 when none is)."""
    current = session.scalar(
        select(func.max(TrainedModel.version)).where(TrainedModel.name.in_(names))
    )
    return int(current or 0)


def add_trained_model(
    session: Session, *, name: str, version: int, kind: str, model_text: str, meta: dict[str, Any]
) -> TrainedModel:
    """Store one booster's text; its id is set."""
    row = TrainedModel(name=name, version=version, kind=kind, model_text=model_text, meta=meta)
    session.add(row)
    session.flush()
    return row


def latest_model(session: Session, name: str) -> TrainedModel | None:
    """The newest version stored under ``name``."""
    return session.scalars(
        select(TrainedModel)
        .where(TrainedModel.name == name)
        .order_by(TrainedModel.version.desc())
        .limit(1)
    ).first()


def model_version(session: Session, name: str, version: int) -> TrainedModel | None:
    return session.scalars(
        select(TrainedModel).where(TrainedModel.name == name, TrainedModel.version == version)
    ).first()


def trained_model_by_id(session: Session, model_id: int) -> TrainedModel | None:
    return session.get(TrainedModel, model_id)


def stored_models(session: Session, kind: str = "penalty") -> list[TrainedModel]:
    """Every stored model row of ``kind``, oldest first."""
    return list(
        session.scalars(
            select(TrainedModel).where(TrainedModel.kind == kind).order_by(TrainedModel.id)
        ).all()
    )


def plan_by_id(session: Session, plan_id: int) -> Plan | None:
    return session.get(Plan, plan_id)


# ------------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class NewDecision:
    """One site's (or chunk's) tier in a plan to store (its fields are the row's columns)."""

    site_id: int
    chunk_index: int
    tier: str  # dram | slow
    numa_node: int | None
    size_bytes: int
    score: float
    reason: str


def add_plan(
    session: Session,
    *,
    run_id: int | None,
    model_id: int | None,
    strategy: str,
    build_id: str,
    budget_bytes: int,
    predicted_slowdown: float | None,
    document: dict[str, Any],
    decisions: Sequence[NewDecision],
    achieved: dict[str, Any] | None = None,
) -> Plan:
    """Store a plan with its decisions, in the order given; its id is set."""
    plan = Plan(
        run_id=run_id,
        model_id=model_id,
        strategy=strategy,
        build_id=build_id,
        budget_bytes=budget_bytes,
        predicted_slowdown=predicted_slowdown,
        document=document,
    )
    if achieved is not None:
        plan.achieved = achieved
    session.add(plan)
    session.flush()
    if decisions:
        # one executemany, not one ORM object each: a plan of 10,000 sites (issue 17)
        session.execute(
            insert(PlanDecision),
            [{"plan_id": plan.id, **vars(d)} for d in decisions],  # fields = columns
        )
        session.expire(plan, ["decisions"])
    return plan


def plans_of_run(session: Session, run_id: int) -> list[Plan]:
    """The plans made from the run (``placer recommend``), oldest first."""
    return list(session.scalars(select(Plan).where(Plan.run_id == run_id).order_by(Plan.id)).all())


def applied_plans(session: Session, run_id: int, build_id: str) -> list[tuple[Plan, Run]]:
    """Plans applied by ``placer run --plan`` that were made from ``run_id``, with their runs.

    The applied plan is stored on a run of its own (kind ``plan``) of the same build, whose
    inputs name the profiled run the plan was made from.
    """
    out: list[tuple[Plan, Run]] = []
    for prun in session.scalars(
        select(Run).where(Run.kind == "plan", Run.build_id == build_id).order_by(Run.id)
    ):
        if (prun.inputs or {}).get("plan_run") != run_id:
            continue
        for plan in session.scalars(select(Plan).where(Plan.run_id == prun.id)):
            out.append((plan, prun))
    return out


def recent_plans(session: Session, limit: int) -> list[tuple[Plan, Run | None, str | None]]:
    """The newest ``limit`` plans, each with its run and application when they are known."""
    stmt = (
        select(Plan, Run, Application.name)
        .join(Run, Run.id == Plan.run_id, isouter=True)
        .join(Application, Application.id == Run.application_id, isouter=True)
        .order_by(Plan.id.desc())
        .limit(limit)
    )
    return [(p, r, a) for p, r, a in session.execute(stmt)]


def count_plans(session: Session) -> int:
    return session.scalar(select(func.count(Plan.id))) or 0
