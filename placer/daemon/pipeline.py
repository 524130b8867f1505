"""A pipeline job's reports: tell Optuna the measured throughput, answer the next knobs.

The study is ``placer tune``'s (same storage helper, same study naming) and lives in the
store, so a restarted daemon resumes it. Its first trial comes from the operational
analysis of the reported stage stats (:func:`placer.daemon.decide.analyze_reported`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from placer.daemon.decide import PipelineTuner, analyze_reported
from placer.daemon.job import KNOB_CHANGES_KEPT, Job, iso
from placer.tuners.tuning import default_study_name, optuna_storage

if TYPE_CHECKING:
    from placer.daemon.service import Daemon


class PipelineReports:
    """Handles the ``pipeline`` requests of the daemon's pipeline jobs."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.optuna_store: Any = None

    def report(
        self,
        job: Job,
        knobs: dict[str, Any],
        sps: float,
        stages: list[Any],
        batches: int,
    ) -> dict[str, Any]:
        """One report of the knobs in force and their throughput (checked by the server).

        The reply says the knobs to apply next.
        """
        d = self.d
        window = {"samples_per_second": sps, "knobs": knobs, "stages": stages[:64]}
        # Optuna's storage is the store's database: its calls may wait on the store, so
        # they run under the job's tuning lock, never the lock the loop takes.
        with job.tune_lock:
            created = False
            try:
                if job.tuner is None:
                    job.tuner = self._make_tuner(job, knobs, stages, batches, float(sps))
                    created = not job.tuner.resumed
                nxt, record = job.tuner.step(knobs, float(sps))
            except Exception as exc:  # noqa: BLE001 - the store (Optuna's tables) failed
                job.tuner = None  # reloaded from the store at the next report
                d.job_error(job, "tune", exc)
                with job.lock:
                    d.event(job, "window", window)
                    job.state.tuner_error = f"{type(exc).__name__}: {exc}"[:300]
                    d.queue_state(job)
                return {
                    "knobs": knobs,
                    "settled": False,
                    "trial": None,
                    "note": "the tuner's store is unavailable; keep the current knobs",
                }
            tuner = job.tuner
        with job.lock:
            st = job.state
            st.tuner_error = None
            if created:
                first = tuner.first
                st.first_trial = first.to_dict()
                source = "the analysis's config" if first.source == "analysis" else None
                st.add_decision(
                    {
                        "at": iso(),
                        "action": "first trial: "
                        + (source or "the job's own config")
                        + " ("
                        + ", ".join(f"{k}={v}" for k, v in first.knobs.items())
                        + ")",
                        "reason": first.reason,
                    }
                )
                d.telemetry.add_decision("first_trial")
            d.event(job, "window", window)
            d.telemetry.add_samples("pipeline", 1)
            if not record.get("waiting"):
                d.event(job, "knobs", {**record, "next": nxt})
                best = st.best or {}
                if sps > float(best.get("samples_per_second", -1)):
                    st.best = {"samples_per_second": sps, "knobs": knobs}
                if st.first_samples_per_second is None:
                    st.first_samples_per_second = sps
            changes = []
            current = st.knobs or {}
            for k, v in nxt.items():
                if current.get(k) != v:
                    changes.append(
                        {
                            "at": iso(),
                            "knob": k,
                            "old": current.get(k),
                            "new": v,
                            "reason": knob_reason(tuner, record),
                        }
                    )
            if changes:
                kept = st.knob_changes = st.knob_changes or []
                kept.extend(changes)
                del kept[:-KNOB_CHANGES_KEPT]
                st.add_decision(
                    {
                        "at": iso(),
                        "action": "knobs " + ", ".join(f"{c['knob']}={c['new']}" for c in changes),
                        "reason": changes[0]["reason"] + f"; last window {sps:.1f} samples/s",
                    }
                )
                d.telemetry.add_knob_changes(len(changes))
                d.telemetry.add_decision("knobs")
            st.knobs = dict(nxt)
            st.last_samples_per_second = sps
            st.trials = tuner.told
            st.settled = tuner.settled()
            d.queue_state(job)
        return {"knobs": nxt, "settled": tuner.settled(), "trial": record.get("trial")}

    def _optuna_storage(self) -> Any:
        """Optuna's RDB storage on the store (``placer tune``'s helper), opened once."""
        if self.optuna_store is None:
            self.optuna_store = optuna_storage(self.d.store_url, heartbeat=False, attempts=2)
        return self.optuna_store

    def _make_tuner(
        self, job: Job, knobs: dict[str, Any], stages: list[Any], batches: int, sps: float
    ) -> PipelineTuner:
        """Create the job's study in the store, or resume it (a restarted daemon)."""
        st = job.state
        name = st.study
        if not isinstance(name, str) or not name:
            name = st.study = default_study_name(f"daemon-job{job.id}")
        assert st.space is not None
        first = analyze_reported(st.space, knobs, stages, batches, sps, shape=st.shape, pid=job.pid)
        tuner = PipelineTuner(
            st.space,
            knobs,
            self.d.cfg.tune_trials,
            seed=job.id,
            storage=self._optuna_storage(),
            study_name=name,
            first=first,
        )
        a = tuner.first.analysis or {}
        shape = st.shape or {}
        # what the study's row in placer_tuning_studies says (written with the job state)
        st.study_facts = {
            "engine": shape.get("engine") if isinstance(shape, dict) else None,
            # without an analysis: what the job's process may use here
            "budget_cores": a.get("budget_cores") or job_cores(job.pid),
            "budget_memory_bytes": a.get("budget_memory_bytes") or available_memory(),
            "upper_bound": a.get("upper_bound_samples_per_second"),
            "stages": [
                {k: stg.get(k) for k in ("name", "kind", "sequential", "random")}
                for stg in a.get("stages") or []
                if isinstance(stg, dict)
            ],
        }
        self.d.log(
            "info",
            "study_resumed" if tuner.resumed else "study_created",
            job=job.id,
            study=name,
            trials=tuner.told,
            first_trial=tuner.first.source,
        )
        return tuner


def knob_reason(tuner: PipelineTuner, record: dict[str, Any]) -> str:
    """Why the knobs change now (shown with each knob change)."""
    if record.get("settled"):
        return "settled on the best trial"
    nxt = tuner.trial[0] if tuner.trial is not None else None
    if nxt == 0 and tuner.first.source == "analysis":
        return f"Optuna trial 0, enqueued from the analysis: {tuner.first.reason}"
    return f"Optuna trial {nxt} (ask-and-tell, TPE)"


def job_cores(pid: int) -> float:
    """The CPUs a job's process may run on (its affinity), else the host's."""
    try:
        return float(len(os.sched_getaffinity(pid)))
    except OSError:
        return float(os.cpu_count() or 1)


def available_memory() -> int:
    """The host's available memory in bytes (0: unknown)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError):
        return 0
