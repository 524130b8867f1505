"""The fleet report: what the daemon watches and what it did, plus the store's outcomes.

Daemon jobs come from ``placer_daemon_jobs``; what a job decided lives in its ``state``
document, written by the daemon. The report reads these keys of it (each optional):
``decisions`` (a count, or a list of ``{"at", "action", "reason"}``), ``bytes_migrated``
(or ``migrated_bytes``), ``migrations`` (a count), ``knob_changes`` (a list of
``{"at", "knob", "old", "new"}``, or a mapping knob -> new value) and ``knobs`` (the
knobs in force). Below the jobs, the newest plans and tuning studies of the store say what
placement and tuning achieved across hosts.
"""

from __future__ import annotations

from typing import Any

from placer.reports.base import ReportBuilder, absent, iso, provenance, verdict
from placer.reports.render import slow
from placer.store.repository.daemon import daemon_jobs
from placer.store.repository.hosts import hostnames
from placer.store.repository.labels import count_plans, recent_plans
from placer.store.repository.pipelines import count_studies, recent_studies

RECENT = 20


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, list | dict):
        return len(value)
    return 0


def _knob_changes(state: dict[str, Any]) -> list[dict[str, Any]]:
    raw = state.get("knob_changes")
    if isinstance(raw, dict):
        return [{"knob": str(k), "old": None, "new": v, "at": None} for k, v in raw.items()]
    if isinstance(raw, list):
        out = []
        for c in raw:
            if isinstance(c, dict):
                out.append(
                    {
                        "knob": str(c.get("knob", "")),
                        "old": c.get("old"),
                        "new": c.get("new"),
                        "at": c.get("at"),
                    }
                )
        return out
    return []


def _decisions(state: dict[str, Any]) -> list[dict[str, Any]]:
    raw = state.get("decisions")
    if not isinstance(raw, list):
        return []
    return [
        {
            "at": d.get("at"),
            "action": str(d.get("action", d.get("what", ""))),
            "reason": str(d.get("reason", d.get("why", ""))),
        }
        for d in raw
        if isinstance(d, dict)
    ]


class FleetReport(ReportBuilder):
    """``placer report --fleet``."""

    kind = "fleet"

    def title(self, doc: dict[str, Any]) -> str:
        return "Fleet report: daemon jobs, decisions and outcomes"

    def verdict(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The newest plan not applied yet, else the study with the largest measured speedup."""
        plans = doc["plans"].get("rows") or []
        pending = [p for p in plans if not p["applied"]]
        studies = [t for t in doc["studies"].get("rows") or [] if t.get("speedup")]
        if pending:
            p = pending[0]
            value = p["predicted_slowdown"]
            return verdict(
                f"Apply plan {p['id']} ({p['application']}, run {p['run_id']}) with "
                f"`placer run --plan` ({len(pending)} of {len(plans)} listed plans not applied)",
                None if value is None else f"expected {slow(value)} runtime over all-DRAM",
                "predicted",
                "the model's prediction when planned; `placer report RUN` prices it with labels",
                plan_id=p["id"],
                slowdown=value,
            )
        if studies:
            t = max(studies, key=lambda x: x["speedup"])
            return verdict(
                f"Apply the tuned configuration of pipeline {t['pipeline']} (study {t['name']})",
                f"expected {t['speedup']:.2f}x the naive throughput",
                "measured",
                "measured by short benchmark trials on the tuning host",
                speedup=t["speedup"],
            )
        return verdict(
            "Nothing to apply: every listed plan is applied, no study has a speedup",
            None,
            None,
            None,
        )

    def collect(self) -> dict[str, Any]:
        with self.store.session() as s:
            hosts = hostnames(s)
            jobs = daemon_jobs(s)
            job_rows: list[dict[str, Any]] = []
            for j in jobs:
                state = dict(j.state or {})
                decisions = _decisions(state)
                changes = _knob_changes(state)
                job_rows.append(
                    {
                        "id": j.id,
                        "host": hosts.get(j.host_id) if j.host_id is not None else None,
                        "pid": j.pid,
                        "kind": j.kind,
                        "command": [str(c) for c in (j.command or [])],
                        "status": j.status,
                        "run_id": j.run_id,
                        "pipeline_id": j.pipeline_id,
                        "attached_at": iso(j.attached_at),
                        "detached_at": iso(j.detached_at),
                        "last_seen_at": iso(j.last_seen_at),
                        "decisions": _count(state.get("decisions")),
                        "recent_decisions": decisions[-5:],
                        "migrations": _count(state.get("migrations")),
                        "bytes_migrated": int(
                            state.get("bytes_migrated") or state.get("migrated_bytes") or 0
                        ),
                        "knob_changes": changes,
                        "knobs": state.get("knobs")
                        if isinstance(state.get("knobs"), dict)
                        else None,
                    }
                )
            plans = recent_plans(s, RECENT)
            plan_rows = [
                {
                    "id": p.id,
                    "run_id": p.run_id,
                    "application": app,
                    "strategy": p.strategy,
                    "budget_bytes": p.budget_bytes,
                    "predicted_slowdown": p.predicted_slowdown,
                    "applied": bool(p.achieved),
                    "achieved": p.achieved or None,
                    "created_at": iso(p.created_at),
                    "host": hosts.get(run.host_id) if run is not None and run.host_id else None,
                }
                for p, run, app in plans
            ]
            n_plans = count_plans(s)
            studies = recent_studies(s, RECENT)
            study_rows = [
                {
                    "name": t.optuna_study_name,
                    "pipeline_id": t.pipeline_id,
                    "pipeline": name,
                    "status": t.status,
                    "trials": t.n_trials,
                    "naive_samples_per_second": t.naive_throughput,
                    "best_samples_per_second": t.best_throughput,
                    "speedup": t.best_throughput / t.naive_throughput
                    if t.best_throughput and t.naive_throughput
                    else None,
                    "upper_bound_samples_per_second": t.upper_bound,
                    "knobs": t.best_config or None,
                }
                for t, name in studies
            ]
            n_studies = count_studies(s)
        totals = {
            "jobs": len(job_rows),
            "active_jobs": sum(
                1
                for j in job_rows
                if j["detached_at"] is None and j["status"] not in ("detached", "exited", "closed")
            ),
            "decisions": sum(j["decisions"] for j in job_rows),
            "migrations": sum(j["migrations"] for j in job_rows),
            "bytes_migrated": sum(j["bytes_migrated"] for j in job_rows),
            "knob_changes": sum(len(j["knob_changes"]) for j in job_rows),
            "plans": n_plans,
            "studies": n_studies,
        }
        daemon_prov = provenance("measured", source="daemon job records")
        return {
            "totals": totals,
            "jobs": {
                "available": True,
                "note": None,
                "provenance": daemon_prov,
                "rows": job_rows,
            }
            if job_rows
            else absent(
                "no daemon jobs in the store (start `placer daemon` and attach jobs)", rows=[]
            ),
            "plans": {
                "available": True,
                "note": None if n_plans <= RECENT else f"the newest {RECENT} of {n_plans}",
                "provenance": provenance(
                    "predicted", source="slowdown predicted by the placement model when planned"
                ),
                "rows": plan_rows,
            }
            if plan_rows
            else absent("no placement plans in the store (`placer recommend`)", rows=[]),
            "studies": {
                "available": True,
                "note": None if n_studies <= RECENT else f"the newest {RECENT} of {n_studies}",
                "provenance": provenance(
                    "measured", source="throughput measured by `placer tune` trials"
                ),
                "rows": study_rows,
            }
            if study_rows
            else absent("no pipeline tuning studies in the store (`placer tune`)", rows=[]),
        }
