"""Optuna tuning of a pipeline, seeded by the operational analysis.

The study lives in the store's database (:mod:`placer.tuners.study`). Its first trials are
seeds (:mod:`placer.tuners.seeds`, ``enqueue_trial``): the analysis's configuration, the same
without prefetch and inline, the naive one with its cache, a few neighbours; they take at
most half the budget, and TPE searches the whole space with the rest, starting with
random trials. The best is the best *measured* config: the top trials and the analysis's
are re-measured (:func:`confirm_best`).

Each trial is a short :func:`measure` run in two steps: a quick one whose throughput is
reported to the pruner, then the full one. CPU and memory budgets are constraints
(``trial.set_constraint``, which Optuna 5's samplers read in place of the deprecated
``constraints_func``): configs the analysis says cannot fit are skipped before they run,
and measured usage over budget makes a finished trial infeasible.

Several processes (``workers``) or hosts share one study: each runs its own share of
trials against the same storage; trials are numbered by the storage, so none is lost or
counted twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.contracts.pipeline import Config, Measurement, PipelineDef
from placer.errors import InvalidInputError, PlacerError
from placer.store import Store
from placer.store.repository import pipelines as repo
from placer.tuners.analysis import (
    DEFAULT_EPOCHS,
    Analysis,
    analyze,
    default_memory_budget,
    effective_rate,
)
from placer.tuners.configs import cache_bytes, config_from_analysis, core_demand
from placer.tuners.resolve import load_pipeline, resolve_measure
from placer.tuners.seeds import seed_configs, startup_trials
from placer.tuners.space import suggest
from placer.tuners.study import (
    CONFIRM_ATTR,
    CONFIRM_TOP,
    analysis_from_dict,
    best_trial,
    finished_feasible,
    make_pruner,
    make_sampler,
    name_objective,
    optuna_storage,
    quiet_optuna,
    record_best,
    retry,
    trial_rows,
    trial_score,
)


class TrialFailed(Exception):
    """A trial's pipeline failed or hung; Optuna records the trial as FAIL and goes on."""


@dataclass(frozen=True)
class Budget:
    """What the pipeline may use: cores and bytes of memory."""

    cores: float
    memory_bytes: int


# --------------------------------------------------------------------------- search


def confirm_best(
    study: Any,
    defn: PipelineDef,
    measure: Callable[..., Measurement],
    *,
    seconds: float,
    epochs: int,
    analysis: Analysis | None = None,
    top: int = CONFIRM_TOP,
) -> None:
    """Re-measure the study's ``top`` best feasible trials (not yet confirmed) once and
    keep the values in the study's user attribute ``confirmed_samples_per_second``;
    :func:`best_trial` then ranks confirmed trials by their mean. Trial values stay as
    measured (Optuna's history is not rewritten); a failed re-measure counts as 0."""
    confirmed = dict(study.user_attrs.get(CONFIRM_ATTR, {}))
    done = finished_feasible(study)
    ranked = sorted(done, key=lambda t: -float(t.value))[:top]
    # The analysis's trial is always a candidate: one lucky run of another config must
    # not push placer's own first trial out of the final pick (issue 13).
    ranked += [t for t in done if t.user_attrs.get("origin") == "analysis" and t not in ranked]
    for t in ranked:
        if str(t.number) in confirmed:
            continue
        config = dict(t.user_attrs.get("config", t.params))
        _m, value = measure_config(
            measure, defn, config, seconds=seconds, epochs=epochs, analysis=analysis
        )
        confirmed[str(t.number)] = [value]
    study.set_user_attr(CONFIRM_ATTR, confirmed)


def measured_cores(m: Measurement) -> float:
    """Cores the run actually used: CPU seconds of all stages per wall second."""
    if m.wall_seconds <= 0:
        return 0.0
    return sum(s.cpu_seconds for s in m.stages) / m.wall_seconds


# --------------------------------------------------------------------------- objective


def measure_config(
    measure: Callable[..., Measurement],
    defn: PipelineDef,
    config: Config,
    *,
    seconds: float,
    epochs: int,
    analysis: Analysis | None = None,
    timeout: float | None = None,
    max_batches: int = 100_000,
    quick: bool = False,
    whole_epochs: bool = False,
    **kwargs: Any,
) -> tuple[Measurement, float]:
    """Measure ``config`` and return it with its objective value (samples/s over a run of
    ``epochs`` epochs, :func:`placer.tuners.analysis.effective_rate`).

    A cached config is measured until two epochs are complete (its first, filling the
    cache, and one served from it), past ``seconds`` if need be; the deadline then also
    covers one naive epoch three times over (from ``analysis``). ``quick`` skips that (the
    pruning step; its value still credits the cache if its window got past an epoch,
    else it is the first epoch's rate). ``whole_epochs`` measures every config, cached
    or not, over two epochs (the benchmark's final runs: all methods pay start-up the
    same way). Used by the
    tuner and by the benchmark, so both rank configs by the same number.
    """
    cached = config.get("cache") is not None and epochs > 1
    extra: dict[str, Any] = dict(kwargs)
    if (cached or whole_epochs) and not quick:
        extra["min_epochs"] = 2
        if timeout is None and analysis is not None:
            naive = analysis.measured_samples_per_second
            epoch = defn.dataset_samples / naive if naive > 0 else 0.0
            timeout = 3 * seconds + 10 + 3 * epoch
    if timeout is not None:
        extra["timeout"] = timeout
    m = measure(defn, config, max_batches=max_batches, max_seconds=seconds, **extra)
    if m.error or m.batches <= 0:
        return m, 0.0
    return m, effective_rate(m, epochs, cached=cached)


@dataclass
class Objective:
    """One Optuna trial: sample a config, skip it if it cannot fit, measure, prune.

    ``record(measurement, trial_number, status)`` stores each measured trial;
    ``quick_fraction`` of ``trial_seconds`` is the first (pruning) step.
    """

    defn: PipelineDef
    analysis: Analysis
    budget: Budget
    measure: Callable[..., Measurement]
    trial_seconds: float = 3.0
    quick_fraction: float = 0.35
    max_batches: int = 100_000
    baseline_memory_bytes: int = 0
    record: Callable[[Measurement, int, str], None] | None = None
    epochs: int = DEFAULT_EPOCHS
    trial_timeout: float | None = None

    def estimate(self, config: Config) -> tuple[float, int]:
        """Cores and bytes the config asks for, before running it."""
        cores = core_demand(self.defn, self.analysis, config)
        memory = self.baseline_memory_bytes + cache_bytes(self.analysis, config)
        return cores, memory

    def _run(self, config: Config, seconds: float, *, quick: bool) -> tuple[Measurement, float]:
        try:
            return measure_config(
                self.measure,
                self.defn,
                config,
                seconds=seconds,
                epochs=self.epochs,
                analysis=self.analysis,
                timeout=self.trial_timeout,
                max_batches=self.max_batches,
                quick=quick,
            )
        except PlacerError as exc:
            raise TrialFailed(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the user's pipeline failed
            raise TrialFailed(f"{type(exc).__name__}: {exc}") from None

    def _fail(self, trial: Any, m: Measurement) -> None:
        error = m.error or "no batches produced"
        trial.set_user_attr("error", error)
        if self.record is not None:
            self.record(dataclasses.replace(m, error=error), trial.number, "failed")
        raise TrialFailed(error)

    def __call__(self, trial: Any) -> float:
        import optuna  # lazy: heavy

        config = {**self.defn.naive_config, **suggest(trial, self.defn.knobs)}
        trial.set_user_attr("config", config)
        cores, memory = self.estimate(config)
        over_cores = cores - self.budget.cores
        over_memory = float(memory - self.budget.memory_bytes)
        if over_cores > 1e-6 or over_memory > 0:
            trial.set_constraint("cores", over_cores)
            trial.set_constraint("memory_bytes", over_memory)
            trial.set_user_attr(
                "skipped",
                f"needs {cores:.2f} cores and {memory} bytes; budget "
                f"{self.budget.cores:g} cores and {self.budget.memory_bytes} bytes",
            )
            raise optuna.TrialPruned("does not fit the budget")
        quick, quick_rate = self._run(config, self.trial_seconds * self.quick_fraction, quick=True)
        if quick.error or quick.batches <= 0:
            self._fail(trial, quick)
        trial.report(quick_rate, 0)
        if trial.should_prune():
            trial.set_constraint("cores", over_cores)
            trial.set_constraint("memory_bytes", over_memory)
            trial.set_user_attr("samples_per_second", quick_rate)
            if self.record is not None:
                quick = dataclasses.replace(quick, samples_per_second=quick_rate)
                self.record(quick, trial.number, "pruned")
            raise optuna.TrialPruned(f"{quick_rate:.1f} samples/s at step 0")
        m, value = self._run(config, self.trial_seconds, quick=False)
        if m.error or m.batches <= 0:
            self._fail(trial, m)
        trial.report(value, 1)
        # Measured use: CPU seconds per wall second (noisy: 5% slack), peak RSS.
        used = measured_cores(m) if m.stages else cores
        trial.set_constraint("cores", max(cores, used / 1.05) - self.budget.cores)
        rss = max(memory, int(m.peak_rss_bytes or 0))
        trial.set_constraint("memory_bytes", float(rss - self.budget.memory_bytes))
        trial.set_user_attr("samples_per_second", value)
        trial.set_user_attr("window_samples_per_second", m.samples_per_second)
        trial.set_user_attr("first_epoch_samples_per_second", m.first_epoch_samples_per_second)
        trial.set_user_attr("steady_samples_per_second", m.steady_samples_per_second)
        trial.set_user_attr("measured_cores", used)
        trial.set_user_attr("peak_rss_bytes", int(m.peak_rss_bytes or 0))
        if self.record is not None:  # the run's row holds the trial's value (the objective)
            self.record(dataclasses.replace(m, samples_per_second=value), trial.number, "done")
        return value


# --------------------------------------------------------------------------- workers


@dataclass
class WorkerSpec:
    """Everything a worker process needs to join a study (picklable for spawn)."""

    pipeline: str
    store_url: str
    study_name: str
    n_trials: int
    trial_seconds: float
    seed: int | None = None
    n_startup_trials: int = 3
    extra_sys_path: list[str] = field(default_factory=list)
    trial_timeout: float | None = None


def run_trials(
    spec: WorkerSpec,
    *,
    defn: PipelineDef | None = None,
    measure: Callable[..., Measurement] | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
) -> None:
    """Run ``spec.n_trials`` trials of the study in this process."""
    import optuna  # lazy: heavy

    quiet_optuna()
    defn = defn if defn is not None else load_pipeline(spec.pipeline)
    measure = measure if measure is not None else resolve_measure()
    storage = optuna_storage(spec.store_url)
    study = retry(
        lambda: optuna.load_study(
            study_name=spec.study_name,
            storage=storage,
            sampler=make_sampler(spec.seed, spec.n_startup_trials),
            pruner=make_pruner(),
        )
    )
    attrs = study.user_attrs
    analysis = analysis_from_dict(attrs["analysis"])
    budget = Budget(float(attrs["budget_cores"]), int(attrs["budget_memory_bytes"]))
    store = Store(spec.store_url)

    def record(m: Measurement, number: int, status: str) -> None:
        with store.session() as s:
            pipeline = repo.upsert_pipeline(s, defn, spec.pipeline)
            repo.record_measurement(
                s,
                pipeline,
                m,
                purpose="trial",
                study_name=spec.study_name,
                trial_number=number,
                status=status,
            )

    objective = Objective(
        defn=defn,
        analysis=analysis,
        budget=budget,
        measure=measure,
        trial_seconds=spec.trial_seconds,
        baseline_memory_bytes=int(attrs.get("baseline_memory_bytes", 0)),
        record=record,
        epochs=int(attrs.get("epochs", DEFAULT_EPOCHS)),
        trial_timeout=spec.trial_timeout,
    )
    try:
        study.optimize(
            objective, n_trials=spec.n_trials, catch=(TrialFailed,), callbacks=list(callbacks)
        )
    finally:
        store.dispose()


def _worker_main(spec: WorkerSpec) -> None:
    for path in spec.extra_sys_path:
        if path not in sys.path:
            sys.path.insert(0, path)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    run_trials(spec)


def shares(n_trials: int, workers: int) -> list[int]:
    """Split ``n_trials`` over ``workers`` exactly (the first get one more)."""
    base, extra = divmod(n_trials, workers)
    return [base + (1 if i < extra else 0) for i in range(workers) if base or i < extra]


def run_workers(
    spec: WorkerSpec,
    workers: int,
    *,
    on_progress: Callable[[int], None] | None = None,
    poll_seconds: float = 0.5,
) -> list[int]:
    """Run the study's trials in ``workers`` spawned processes; returns their exit codes."""
    import optuna  # lazy: heavy
    from optuna.trial import TrialState  # lazy: heavy

    ctx = multiprocessing.get_context("spawn")
    procs = []
    for index, n in enumerate(shares(spec.n_trials, workers)):
        seed = None if spec.seed is None else spec.seed + index
        child = dataclasses.replace(spec, n_trials=n, seed=seed)
        proc = ctx.Process(target=_worker_main, args=(child,), name=f"placer-tune-{index}")
        proc.start()
        procs.append(proc)
    storage = optuna_storage(spec.store_url, heartbeat=False)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    try:
        while any(p.is_alive() for p in procs):
            if on_progress is not None:
                study = optuna.load_study(study_name=spec.study_name, storage=storage)
                on_progress(len(study.get_trials(deepcopy=False, states=finished)))
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    return [int(p.exitcode or 0) for p in procs]


def default_study_name(pipeline: str) -> str:
    return f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def speedup(value: float | None, base: float | None) -> float | None:
    if value is None or not base or not math.isfinite(base):
        return None
    return value / base


# --------------------------------------------------------------------------- one command


@dataclass
class TuneResult:
    """What ``placer tune`` reports (and what the benchmark compares)."""

    study_name: str
    pipeline_id: int
    analysis: Analysis
    analysis_config: Config
    naive_samples_per_second: float
    best_config: Config | None
    best_samples_per_second: float | None
    trials: list[dict[str, Any]]
    status: str
    best_trial: int | None = None  # placer's pick (confirmed), not Optuna's best_trial

    def write_config(self, path: str | os.PathLike[str]) -> None:
        """Write the best config as the JSON file a job applies (``placer tune -o``)."""
        if self.best_config is None:
            raise InvalidInputError(f"study {self.study_name}: no config to write")
        Path(path).write_text(json.dumps(self.best_config, indent=2, sort_keys=True) + "\n")

    def document(self) -> dict[str, Any]:
        """The ``placer tune --format json`` document (docs/cli.md)."""
        a = self.analysis
        return {
            "study": self.study_name,
            "pipeline_id": self.pipeline_id,
            "pipeline": a.pipeline,
            "status": self.status,
            "budget": {"cores": a.budget_cores, "memory_bytes": a.budget_memory_bytes},
            "explanation": a.explanation,
            "bottleneck": a.bottleneck,
            "upper_bound_samples_per_second": a.upper_bound_samples_per_second
            if math.isfinite(a.upper_bound_samples_per_second)
            else None,
            "analysis_config": self.analysis_config,
            "naive_samples_per_second": self.naive_samples_per_second,
            "best_config": self.best_config,
            "best_samples_per_second": self.best_samples_per_second,
            "best_trial": self.best_trial,
            "speedup_vs_naive": speedup(
                self.best_samples_per_second, self.naive_samples_per_second
            ),
            "trials": self.trials,
        }


def tune(
    pipeline: str,
    store_url: str,
    *,
    budget_cores: float | None = None,
    budget_memory_bytes: int | None = None,
    n_trials: int = 12,
    workers: int = 1,
    study_name: str | None = None,
    join: bool = False,
    trial_seconds: float = 3.0,
    profile_seconds: float | None = None,
    seed: int | None = None,
    neighbours_limit: int = 2,
    epochs: int = DEFAULT_EPOCHS,
    trial_timeout: float | None = None,
    on_analysis: Callable[[Analysis], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    defn: PipelineDef | None = None,
    measure: Callable[..., Measurement] | None = None,
) -> TuneResult:
    """Profile ``pipeline``, analyze it, and run an Optuna study on the store.

    With ``join`` the study must exist (started by another ``placer tune`` or host) and
    this call only adds ``n_trials`` trials to it (with the study's ``epochs``: the
    objective is fixed when the study starts). ``epochs`` is the training run a cache's
    first epoch is amortized over (the objective: mean samples/s over that run);
    ``trial_timeout`` bounds one measurement (default: the measuring function's, three
    times the trial plus 10 s). ``defn``/``measure`` override the
    resolved pipeline and measuring function (tests, benchmark); with them only
    ``workers=1`` is possible, since worker processes resolve ``pipeline`` themselves.
    """
    import optuna  # lazy: heavy

    quiet_optuna()
    if n_trials < 1:
        raise InvalidInputError(f"--trials must be at least 1, got {n_trials}")
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if trial_seconds <= 0:
        raise InvalidInputError(f"--trial-seconds must be positive, got {trial_seconds}")
    if epochs < 1:
        raise InvalidInputError(f"--epochs must be at least 1, got {epochs}")
    if trial_timeout is not None and trial_timeout <= 0:
        raise InvalidInputError(f"--trial-timeout must be positive, got {trial_timeout}")
    if budget_cores is not None and budget_cores < 1:
        raise InvalidInputError(
            f"--budget-cores {budget_cores:g} is below what one worker needs (1 core)"
        )
    custom = defn is not None or measure is not None
    if custom and workers > 1:
        raise InvalidInputError("a custom pipeline object or measure runs with one worker only")
    defn = defn if defn is not None else load_pipeline(pipeline)
    measure = measure if measure is not None else resolve_measure()

    store = Store(store_url)
    try:
        store.ensure_schema()
        name = study_name or default_study_name(defn.name)
        with store.session() as s:
            existing = repo.find_study(s, name)
            if existing is not None and not join:
                raise InvalidInputError(
                    f"study {name!r} already exists ({existing.status}, {existing.n_trials} "
                    f"trials); pass --join to add trials to it or choose another --study"
                )
            if existing is None and join:
                raise InvalidInputError(f"study {name!r} does not exist; nothing to --join")
            if existing is not None:
                owner = repo.pipeline_by_id(s, existing.pipeline_id)
                if owner is not None and owner.name != defn.name:
                    raise InvalidInputError(
                        f"study {name!r} tunes pipeline {owner.name!r}, not {defn.name!r}"
                    )
        storage = optuna_storage(store_url, heartbeat=False)
        if not join:
            try:
                optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                pass
            else:
                raise InvalidInputError(
                    f"an Optuna study named {name!r} already exists in this store; "
                    f"choose another --study"
                )
            naive_sps, analysis, config0, pipeline_id, n_seeds = _start_study(
                store,
                storage,
                defn,
                pipeline,
                name,
                measure,
                budget_cores=budget_cores,
                budget_memory_bytes=budget_memory_bytes,
                n_trials=n_trials,
                trial_seconds=trial_seconds,
                profile_seconds=profile_seconds,
                neighbours_limit=neighbours_limit,
                epochs=epochs,
                trial_timeout=trial_timeout,
            )
        else:
            study = optuna.load_study(study_name=name, storage=storage)
            analysis = analysis_from_dict(study.user_attrs["analysis"])
            config0 = dict(study.user_attrs["analysis_config"])
            naive_sps = float(study.user_attrs["naive_samples_per_second"])
            n_seeds = 0  # a joined study's seeds are its first trials, run or queued
            with store.session() as s:
                pipeline_id = int(repo.find_study(s, name).pipeline_id)  # type: ignore[union-attr]
        if on_analysis is not None:
            on_analysis(analysis)

        spec = WorkerSpec(
            pipeline=pipeline,
            store_url=store_url,
            study_name=name,
            n_trials=n_trials,
            trial_seconds=trial_seconds,
            seed=seed,
            n_startup_trials=startup_trials(n_trials, n_seeds),
            extra_sys_path=[p for p in sys.path if p],
            trial_timeout=trial_timeout,
        )
        status = "done"
        try:
            if workers == 1:
                from optuna.trial import TrialState  # lazy: heavy

                done_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

                def progress(study: Any, _trial: Any) -> None:
                    if on_progress is not None:
                        n = len(study.get_trials(deepcopy=False, states=done_states))
                        on_progress(n, n_trials)

                run_trials(spec, defn=defn, measure=measure, callbacks=[progress])
            else:
                codes = run_workers(
                    spec,
                    workers,
                    on_progress=(lambda n: on_progress(n, n_trials)) if on_progress else None,
                )
                if any(codes):
                    status = "partial"
            # One short run is noisy: re-measure the best few before naming the best.
            study = optuna.load_study(study_name=name, storage=storage)
            try:
                confirm_best(
                    study,
                    defn,
                    measure,
                    seconds=trial_seconds,
                    epochs=int(study.user_attrs.get("epochs", DEFAULT_EPOCHS)),
                    analysis=analysis,
                )
            except (PlacerError, TrialFailed) as exc:  # the trials stand unconfirmed
                logging.getLogger(__name__).warning("confirming the best trials: %s", exc)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            result = _finish(store, storage, defn, pipeline, name, status)
        return TuneResult(
            study_name=name,
            pipeline_id=pipeline_id,
            analysis=analysis,
            analysis_config=config0,
            naive_samples_per_second=naive_sps,
            best_config=result[0],
            best_samples_per_second=result[1],
            best_trial=result[2],
            trials=result[3],
            status=result[4],
        )
    finally:
        store.dispose()


def _start_study(
    store: Any,
    storage: Any,
    defn: PipelineDef,
    spec: str,
    name: str,
    measure: Callable[..., Measurement],
    *,
    budget_cores: float | None,
    budget_memory_bytes: int | None,
    n_trials: int,
    trial_seconds: float,
    profile_seconds: float | None,
    neighbours_limit: int,
    epochs: int = DEFAULT_EPOCHS,
    trial_timeout: float | None = None,
) -> tuple[float, Analysis, Config, int, int]:
    """Profile the naive config, analyze, then create the study rows and enqueue trials
    (:func:`seed_configs`; their count is returned last).

    Nothing is stored unless profiling and analysis succeed; the placer rows and the
    Optuna study are created together (the study is deleted if the rows fail).
    """
    import optuna  # lazy: heavy

    try:
        extra = {"timeout": trial_timeout} if trial_timeout is not None else {}
        profile = measure(
            defn,
            dict(defn.naive_config),
            max_batches=100_000,
            max_seconds=profile_seconds or max(trial_seconds, 2.0),
            **extra,
        )
    except PlacerError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(
            f"profiling pipeline {defn.name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    if profile.error:
        raise InvalidInputError(f"profiling pipeline {defn.name!r} failed: {profile.error}")
    if profile.batches <= 0:
        raise InvalidInputError(
            f"pipeline {defn.name!r} yields nothing: its naive config delivered no batch "
            "while profiling"
        )
    cores = float(budget_cores) if budget_cores is not None else float(profile.host.cores)
    baseline = int(profile.peak_rss_bytes or 0)
    memory = (
        int(budget_memory_bytes)
        if budget_memory_bytes is not None
        else default_memory_budget(int(profile.host.free_memory_bytes), baseline)
    )
    if memory < baseline:
        raise InvalidInputError(
            f"--budget-mem {memory} bytes is below what one worker needs "
            f"({baseline} bytes peak RSS measured with the naive config)"
        )
    analysis = analyze(
        defn,
        profile,
        budget_cores=cores,
        budget_memory_bytes=memory,
        baseline_memory_bytes=baseline,
        epochs=epochs,
    )
    config0 = config_from_analysis(defn, analysis)
    naive_rate = effective_rate(profile, epochs, cached=False)  # the trials' objective

    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    try:
        name_objective(study)
        study.set_user_attr("analysis", analysis.to_dict())
        study.set_user_attr("analysis_config", config0)
        study.set_user_attr("budget_cores", cores)
        study.set_user_attr("budget_memory_bytes", memory)
        study.set_user_attr("baseline_memory_bytes", baseline)
        study.set_user_attr("epochs", epochs)
        study.set_user_attr("naive_samples_per_second", naive_rate)
        study.set_user_attr("pipeline", spec)
        seeds = seed_configs(defn, analysis, config0, n_trials, neighbours_limit)
        for seed_config, origin in seeds:
            study.enqueue_trial(_params(defn, seed_config), user_attrs={"origin": origin})
        study.set_user_attr("n_seeds", len(seeds))
        with store.session() as s:
            pipeline = repo.upsert_pipeline(s, defn, spec)
            pipeline.analysis = analysis.to_dict()
            repo.record_measurement(s, pipeline, profile, purpose="profile")
            repo.add_study(
                s,
                pipeline.id,
                name,
                budget_cores=cores,
                budget_memory_bytes=memory,
                naive_throughput=naive_rate,
                upper_bound=analysis.upper_bound_samples_per_second
                if math.isfinite(analysis.upper_bound_samples_per_second)
                else None,
            )
            pipeline_id = int(pipeline.id)
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)
        raise
    return naive_rate, analysis, config0, pipeline_id, len(seeds)


def _params(defn: PipelineDef, config: Config) -> dict[str, Any]:
    return {k: config[k] for k in defn.knobs if k in config}


def _finish(
    store: Any, storage: Any, defn: PipelineDef, spec: str, name: str, status: str
) -> tuple[Config | None, float | None, int | None, list[dict[str, Any]], str]:
    """Store the study's outcome on the Optuna study, on its row and, if better, on the
    pipeline."""
    import optuna  # lazy: heavy

    study = optuna.load_study(study_name=name, storage=storage)
    best = best_trial(study)
    rows = trial_rows(study)
    config = dict(best.user_attrs.get("config", best.params)) if best else None
    value = trial_score(study, best) if best else None
    if best is not None and config is not None and value is not None:
        record_best(study, best.number, config, value)
    if best is None and status == "done":
        status = "no-feasible-trial"
    with store.session() as s:
        row = repo.find_study(s, name)
        if row is not None:
            row.status = status
            row.n_trials = len(rows)
            row.best_config = config or {}
            row.best_throughput = value
            pipeline = repo.pipeline_by_id(s, row.pipeline_id)
            if (
                pipeline is not None
                and value is not None
                and (
                    pipeline.best_throughput is None
                    or value >= pipeline.best_throughput
                    or pipeline.best_config == {}
                )
            ):
                pipeline.best_config = config or {}
                pipeline.best_throughput = value
    return config, value, best.number if best else None, rows, status
