"""The Optuna study in the store: its storage, and reading trials back out of it.

The study lives in the store's database through Optuna's RDB storage (so
``optuna-dashboard <store-url>`` opens it). Several processes (``placer tune --workers``,
other hosts, the daemon) share one study: SQLite serializes the writers (``BEGIN
IMMEDIATE`` and a busy timeout) and heartbeats mark the trials of a killed worker failed.
A trial counts when it finished within the budget (:func:`feasible`); the best one is
ranked by its confirmed re-measurements when it has any (:func:`best_trial`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from placer.contracts.pipeline import Config
from placer.errors import StoreError, first_line
from placer.store.engine import SQLITE_BUSY_TIMEOUT_MS, parse_url, queue_sqlite_writers
from placer.tuners.analysis import Analysis, StageAnalysis

HEARTBEAT_SECONDS = 5
SQLITE_TIMEOUT_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000
CONFIRM_ATTR = "confirmed_samples_per_second"  # study attr: {trial number: [re-measures]}
CONFIRM_TOP = 3  # trials re-measured before naming the best
OBJECTIVE = "samples/s"  # the objective's name, as optuna-dashboard shows it
BEST_ATTR = "placer_best"  # study attr: the trial placer chose, its config and value


def quiet_optuna() -> None:
    """Optuna logs every trial and warns about heartbeats being experimental; we report."""
    import optuna  # lazy: heavy

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def name_objective(study: Any) -> None:
    """Name the objective ``samples/s`` (optuna-dashboard says "Objective 0" otherwise)."""
    import optuna  # lazy: heavy

    with warnings.catch_warnings():  # set_metric_names is experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE])


def record_best(study: Any, number: int, config: Config, samples_per_second: float) -> None:
    """Keep placer's choice on the study (user attr ``placer_best``).

    Optuna's own best trial is the single highest value; placer's is ranked by confirmed
    re-measurements (:func:`best_trial`), so the two can differ. The dashboard shows this
    attribute beside its own pick, and it is the config ``placer pipeline`` reports.
    """
    study.set_user_attr(
        BEST_ATTR,
        {"trial": number, "config": dict(config), "samples_per_second": samples_per_second},
    )


def optuna_storage(url: str, *, heartbeat: bool = True, attempts: int = 5) -> Any:
    """Optuna's RDB storage on the store URL (retried: workers may race to create it)."""
    import optuna  # lazy: heavy

    parsed = parse_url(url)
    kwargs: dict[str, Any] = {}
    sqlite = parsed.drivername.startswith("sqlite")
    if sqlite:
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_SECONDS}
    else:
        kwargs["pool_pre_ping"] = True
    rendered = parsed.render_as_string(hide_password=False)
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(
                rendered,
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS if heartbeat else None,
                grace_period=6 * HEARTBEAT_SECONDS if heartbeat else None,
            )
            if sqlite:
                queue_sqlite_writers(storage.engine)
                storage.engine.dispose()  # connections made before the listeners existed
            return storage
        except Exception as exc:  # noqa: BLE001 - locked store, races on create_all: retried
            last = exc
            time.sleep(0.2 * (2**attempt))
    first = first_line(last) if last is not None and first_line(last) else repr(last)
    raise StoreError(f"cannot open the Optuna storage on the store: {first}")


def retry(fn: Callable[[], Any], attempts: int = 5) -> Any:
    import optuna  # lazy: heavy

    for attempt in range(attempts):
        try:
            return fn()
        except optuna.exceptions.StorageInternalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (2**attempt))
    return None


def make_sampler(seed: int | None, n_startup_trials: int) -> Any:
    import optuna  # lazy: heavy

    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        multivariate=True,
        constant_liar=True,
    )


def make_pruner() -> Any:
    import optuna  # lazy: heavy

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def feasible(trial: Any) -> bool:
    """Within budget: every constraint (``trial.set_constraint``) is zero or less."""
    return all(v <= 0 for v in trial.constraints.values())


def finished_feasible(study: Any) -> list[Any]:
    """The study's complete trials that have a value and fit the budget."""
    from optuna.trial import TrialState  # lazy: heavy

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and feasible(t)
    ]


def trial_score(study: Any, trial: Any) -> float:
    """A trial's value, averaged with its confirming re-measurements if it has any."""
    extra = study.user_attrs.get(CONFIRM_ATTR, {}).get(str(trial.number), [])
    values = [float(trial.value), *(float(v) for v in extra)]
    return sum(values) / len(values)


def best_trial(study: Any) -> Any | None:
    """The best finished trial that fits the budget (None if none does).

    Among confirmed trials (:func:`confirm_best`) the best mean of its measurements wins;
    a study without confirmations falls back to the best single value.
    """
    done = finished_feasible(study)
    if not done:
        return None
    confirmed = study.user_attrs.get(CONFIRM_ATTR, {})
    pool = [t for t in done if str(t.number) in confirmed] or done
    return max(pool, key=lambda t: trial_score(study, t))


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study, in number order, as plain JSON."""
    rows = []
    confirmed = study.user_attrs.get(CONFIRM_ATTR, {})
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "samples_per_second": t.value,
                "feasible": feasible(t),
                "config": t.user_attrs.get("config", t.params),
                "note": t.user_attrs.get("error") or t.user_attrs.get("skipped"),
                "confirmed_samples_per_second": confirmed.get(str(t.number)),
            }
        )
    return rows


def analysis_from_dict(doc: Mapping[str, Any]) -> Analysis:
    """The analysis a study keeps (``Analysis.to_dict``, unbounded rates as null) back."""
    data = dict(doc)
    for key in ("upper_bound_samples_per_second", "upper_bound_no_cache"):
        if data.get(key) is None:
            data[key] = math.inf
    data["stages"] = [StageAnalysis(**s) for s in doc["stages"]]
    names = {f.name for f in dataclasses.fields(Analysis)}
    return Analysis(**{k: v for k, v in data.items() if k in names})


def pick_confirmed(
    candidates: Sequence[tuple[Config, float]],
    remeasure: Callable[[Config], float],
    top: int = CONFIRM_TOP,
) -> tuple[Config | None, float | None, list[float]]:
    """Re-measure the ``top`` best ``(config, value)`` candidates once each and return the
    one with the best mean of its two values (and the re-measured values, in order).

    One short measurement on a shared host is noisy: the single best value is often a
    lucky run. Used for the study's best trial and, in the benchmark, for every method.
    """
    ranked = sorted(candidates, key=lambda cv: -cv[1])[:top]
    again = [remeasure(config) for config, _ in ranked]
    if not ranked:
        return None, None, []
    means = [(value + re) / 2 for (_, value), re in zip(ranked, again, strict=True)]
    i = max(range(len(ranked)), key=lambda j: means[j])
    return ranked[i][0], means[i], again
