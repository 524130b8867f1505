"""The pipeline report: stage graph, bottleneck, the analysis's bound, the tuning history.

Every number here was *measured* on the host that ran the pipeline (probes and Optuna
trials), except the upper bound, which is the operational analysis's LP optimum computed
from those measurements. No tier spec applies: pipelines run in DRAM.
"""

from __future__ import annotations

import math
from typing import Any

from placer.errors import NotFoundError
from placer.reports.base import ReportBuilder, absent, iso, provenance, verdict
from placer.store.repository.hosts import hostname_of
from placer.store.repository.pipelines import (
    optuna_schema_present,
    pipeline_by_id,
    runs_of_pipeline,
    stage_metrics_of_run,
    studies_of_pipeline,
)


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class PipelineReport(ReportBuilder):
    """``placer report --pipeline ID``."""

    kind = "pipeline"

    def __init__(self, store: Any, pipeline_id: int) -> None:
        super().__init__(store)
        self.pipeline_id = pipeline_id

    def title(self, doc: dict[str, Any]) -> str:
        return f"Pipeline report: {doc['pipeline']['name']} (pipeline {doc['pipeline']['id']})"

    def collect(self) -> dict[str, Any]:
        with self.store.session() as s:
            p = pipeline_by_id(s, self.pipeline_id)
            if p is None:
                raise NotFoundError(
                    f"pipeline {self.pipeline_id} not found (see `placer pipelines`)"
                )
            stages = list(p.stages)
            hostname = hostname_of(s, p.host_id)
            runs = runs_of_pipeline(s, p.id)
            studies = studies_of_pipeline(s, p.id)
            profile = next((r for r in reversed(runs) if r.purpose == "profile"), None)
            metrics = (
                {m.stage_id: m for m in stage_metrics_of_run(s, profile.id)}
                if profile is not None
                else {}
            )
            host_facts = dict(profile.host_facts or {}) if profile is not None else {}
            pipe_doc = {
                "id": p.id,
                "name": p.name,
                "engine": p.engine,
                "builder": p.builder,
                "created_at": iso(p.created_at),
                "host": hostname,
                "host_cores": host_facts.get("cores"),
                "runs": {
                    "profile": sum(1 for r in runs if r.purpose == "profile"),
                    "trial": sum(1 for r in runs if r.purpose != "profile"),
                },
            }
            analysis = dict(p.analysis or {})
            stage_sec = self._stages(stages, analysis, profile, metrics, host_facts, hostname)
            study = studies[-1] if studies else None
            study_doc = None
            if study is not None:
                study_doc = {
                    "name": study.optuna_study_name,
                    "status": study.status,
                    "budget_cores": study.budget_cores,
                    "budget_memory_bytes": study.budget_memory_bytes,
                    "n_trials": study.n_trials,
                    "best_config": study.best_config or None,
                    "best": study.best_throughput,
                    "naive": study.naive_throughput,
                    "upper_bound": study.upper_bound,
                    "created_at": iso(study.created_at),
                }
            trial_runs = [
                {
                    "number": r.trial_number,
                    "state": r.status,
                    "samples_per_second": r.throughput,
                    "config": r.config,
                }
                for r in runs
                if study is not None
                and r.study_name == study.optuna_study_name
                and r.trial_number is not None
            ]
            best_config = dict(p.best_config or {}) or None
            naive_config = dict(profile.config or {}) if profile is not None else None
            best_pipe = p.best_throughput
        tuning = self._tuning(study_doc, trial_runs, hostname, host_facts)
        throughput = self._throughput(
            study_doc,
            profile,
            best_pipe,
            best_config,
            naive_config,
            analysis,
            hostname,
            host_facts,
        )
        return {
            "pipeline": pipe_doc,
            "stages": stage_sec,
            "tuning": tuning,
            "throughput": throughput,
            "other_studies": [
                {
                    "name": x.optuna_study_name,
                    "status": x.status,
                    "trials": x.n_trials,
                    "best": x.best_throughput,
                }
                for x in studies[:-1]
            ],
        }

    def verdict(self, doc: dict[str, Any]) -> dict[str, Any]:
        pipe, t = doc["pipeline"], doc["throughput"]
        best, naive = t.get("best_samples_per_second"), t.get("naive_samples_per_second")
        if best is None or not t.get("best_config"):
            return verdict(
                f"No tuned configuration yet: run `placer tune` on {pipe['name']}", None, None, None
            )
        knobs = ", ".join(f"{k}={v}" for k, v in sorted(t["best_config"].items()))
        action = f"Apply the tuned configuration ({knobs}; `placer pipeline {pipe['id']}` shows it)"
        effect = f"expected {best:,.0f} samples/s"
        if t.get("speedup"):
            effect += f", {t['speedup']:.2f}x the naive {naive:,.0f}"
        host = t["provenance"].get("host")
        risks = [
            "measured by short benchmark trials"
            + (f" on {host}" if host else "")
            + ": another host, core count or dataset changes it"
        ]
        share = t.get("share_of_upper_bound")
        if share is not None and share < 0.5:
            risks.append(f"it reaches {100 * share:.0f}% of the analysis's upper bound")
        return verdict(
            action,
            effect,
            "measured",
            "; ".join(risks),
            samples_per_second=best,
            speedup=t.get("speedup"),
        )

    @staticmethod
    def _host_label(hostname: str | None, facts: dict[str, Any]) -> str | None:
        cores = facts.get("cores")
        if hostname and cores:
            return f"{hostname} ({cores} cores)"
        return hostname or (f"{cores} cores" if cores else None)

    def _stages(
        self,
        stages: list[Any],
        analysis: dict[str, Any],
        profile: Any,
        metrics: dict[int, Any],
        facts: dict[str, Any],
        hostname: str | None,
    ) -> dict[str, Any]:
        if not stages:
            return absent("the pipeline has no stages in the store")
        by_name = {a.get("name"): a for a in analysis.get("stages", [])}
        bs = _num(analysis.get("batch_size")) or 1.0
        total_cpu = sum(m.cpu_seconds for m in metrics.values()) or 0.0
        bottleneck = analysis.get("bottleneck")
        rows = []
        for stage in stages:
            a = by_name.get(stage.name, {})
            m = metrics.get(stage.id)
            core = _num(a.get("core_rate"))
            measured = _num(a.get("measured_rate"))
            rows.append(
                {
                    "position": stage.position,
                    "name": stage.name,
                    "kind": stage.kind,
                    "sequential": stage.sequential,
                    "random": stage.random,
                    "samples_per_core_second": core * bs if core is not None else None,
                    "measured_samples_per_second": measured * bs if measured is not None else None,
                    "measured_parallelism": m.parallelism
                    if m is not None
                    else a.get("measured_parallelism"),
                    "planned_parallelism": a.get("parallelism"),
                    "planned_cores": a.get("cores"),
                    "cpu_seconds": m.cpu_seconds if m is not None else None,
                    "cpu_share": (m.cpu_seconds / total_cpu)
                    if m is not None and total_cpu
                    else None,
                    "wait_seconds": m.wait_seconds if m is not None else None,
                    "elements_out": m.elements_out if m is not None else None,
                    "bottleneck": stage.name == bottleneck,
                }
            )
        notes = []
        if not analysis:
            notes.append("no analysis stored (the pipeline was never profiled by `placer tune`)")
        if profile is None:
            notes.append("no profiling run stored: no CPU shares")
        return {
            "available": True,
            "note": "; ".join(notes) or None,
            "provenance": provenance(
                "measured",
                source="stage probes on the naive configuration"
                + (f" (pipeline run {profile.id})" if profile is not None else ""),
                host=self._host_label(hostname, facts),
            ),
            "rows": rows,
            "bottleneck": bottleneck,
            "lp_bottleneck": analysis.get("lp_bottleneck"),
            "upper_bound_samples_per_second": _num(analysis.get("upper_bound_samples_per_second")),
            "budget_cores": analysis.get("budget_cores"),
            "cache": analysis.get("cache"),
            "prefetch": analysis.get("prefetch"),
            "explanation": list(analysis.get("explanation", [])),
        }

    def _optuna_trials(self, name: str) -> list[dict[str, Any]] | None:
        """Trials from Optuna's own tables (None when Optuna's schema or study is absent)."""
        if not optuna_schema_present(self.store.engine):
            return None
        try:
            import optuna  # lazy: heavy
            from optuna.storages import RDBStorage  # lazy: heavy

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = RDBStorage(self.store.url, skip_table_creation=True)
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - a study the store's rows name but Optuna lost
            return None
        out = []
        for t in sorted(trials, key=lambda t: t.number):
            cons = getattr(t, "constraints", None) or {}
            values = cons.values() if isinstance(cons, dict) else cons
            feasible = all(v <= 0 for v in values)
            out.append(
                {
                    "number": t.number,
                    "state": t.state.name.lower(),
                    "samples_per_second": t.value
                    if t.value is not None
                    else t.user_attrs.get("samples_per_second"),
                    "feasible": feasible,
                    "origin": t.user_attrs.get("origin", "sampler"),
                    "config": t.user_attrs.get("config", t.params),
                    "note": t.user_attrs.get("error") or t.user_attrs.get("skipped"),
                }
            )
        return out

    def _tuning(
        self,
        study: dict[str, Any] | None,
        trial_runs: list[dict[str, Any]],
        hostname: str | None,
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        if study is None:
            return absent("the pipeline has not been tuned (run `placer tune`)")
        trials = self._optuna_trials(study["name"])
        source = "optuna"
        if trials is None:
            source = "store"
            trials = [
                {**t, "feasible": True, "origin": "", "note": None}
                for t in sorted(trial_runs, key=lambda t: t["number"])
            ]
            for t in trials:
                t["state"] = {"done": "complete"}.get(t["state"], t["state"])
        best = None
        for t in trials:
            v = t["samples_per_second"]
            if t["state"] == "complete" and t["feasible"] and v is not None:
                best = v if best is None else max(best, v)
            t["best_so_far"] = best
        return {
            "available": bool(trials),
            "note": None if trials else f"study {study['name']!r} has no trials yet",
            "provenance": provenance(
                "measured",
                source="Optuna trials (short benchmark runs)"
                if source == "optuna"
                else "trial runs stored by `placer tune`",
                host=self._host_label(hostname, facts),
            ),
            "source": source,
            "study": study,
            "trials": trials,
        }

    def _throughput(
        self,
        study: dict[str, Any] | None,
        profile: Any,
        best_pipe: float | None,
        best_config: dict[str, Any] | None,
        naive_config: dict[str, Any] | None,
        analysis: dict[str, Any],
        hostname: str | None,
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        naive = (study or {}).get("naive") or (profile.throughput if profile else None)
        best = (study or {}).get("best") or best_pipe
        upper = (study or {}).get("upper_bound") or _num(
            analysis.get("upper_bound_samples_per_second")
        )
        if naive is None and best is None:
            return absent("no throughput measured for this pipeline yet")
        return {
            "available": True,
            "note": None if best is not None else "no tuned configuration yet",
            "provenance": provenance(
                "measured",
                source="naive profile run and the best feasible trial",
                host=self._host_label(hostname, facts),
            ),
            "naive_samples_per_second": naive,
            "best_samples_per_second": best,
            "speedup": best / naive if best and naive else None,
            "upper_bound_samples_per_second": upper,
            "share_of_upper_bound": best / upper if best and upper else None,
            "naive_config": naive_config,
            "best_config": (study or {}).get("best_config") or best_config,
        }
