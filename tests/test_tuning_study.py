"""The Optuna study on the store: first trial, records, failures, clashes, budgets, workers."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from placer.errors import InvalidInputError
from placer.store import Store
from placer.store.models import Pipeline, PipelineRun, StageMetric, TuningStudy
from placer.tuners.study import optuna_storage
from placer.tuners.synthetic import measure_synthetic
from placer.tuners.tuning import tune

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import test_tuning_fixtures as fx  # noqa: E402


def _count(url: str, model: type, *where: object) -> int:
    with Store(url) as store, store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_first_trial_is_the_analysis_config_and_everything_is_stored(store_url: str) -> None:
    import optuna

    result = tune(
        "test_tuning_fixtures:tiny",
        store_url,
        budget_cores=2,
        n_trials=4,
        trial_seconds=0.3,
        profile_seconds=0.5,
        study_name="s1",
        seed=1,
        defn=fx.tiny(),
        measure=measure_synthetic,
    )
    study = optuna.load_study(study_name="s1", storage=optuna_storage(store_url, heartbeat=False))
    first = min(study.trials, key=lambda t: t.number)
    assert first.user_attrs["origin"] == "analysis"
    assert first.user_attrs["config"] == result.analysis_config
    assert len(study.trials) == 4
    assert result.best_samples_per_second is not None
    assert result.best_samples_per_second > result.naive_samples_per_second
    # placer's tables and Optuna's coexist in one database
    with Store(store_url) as store:
        assert store.current_revision() == store.head_revision()
        store.check()
    measured = [t for t in result.trials if t["samples_per_second"] is not None]
    assert _count(store_url, PipelineRun, PipelineRun.purpose == "trial") == len(measured)
    assert _count(store_url, PipelineRun, PipelineRun.purpose == "profile") == 1
    assert _count(store_url, StageMetric) >= 4 * (len(measured) + 1) - 4
    with Store(store_url) as store, store.session() as s:
        row = s.scalars(select(TuningStudy)).one()
        assert row.status == "done" and row.n_trials == 4
        assert row.best_config == result.best_config
        pipeline = s.scalars(select(Pipeline)).one()
        assert pipeline.analysis["bottleneck"] == result.analysis.bottleneck
        assert [st.name for st in pipeline.stages] == ["read", "decode", "flip", "batch"]


@pytest.mark.slow
def test_hanging_trial_fails_and_the_study_goes_on(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from placer.collectors.pipeline.measure import measure

    monkeypatch.setenv(fx.COUNTER_ENV, str(tmp_path / "builds"))
    result = tune(
        "test_tuning_fixtures:hangs_on_fourth_build",
        sqlite_url,
        budget_cores=2,
        n_trials=3,
        trial_seconds=0.3,
        profile_seconds=0.5,
        study_name="hang",
        seed=2,
        defn=fx.hangs_on_fourth_build(),
        measure=functools.partial(measure, timeout=3),
    )
    states = [t["state"] for t in result.trials]
    assert states[1] == "fail"
    assert "timeout" in (result.trials[1]["note"] or "")
    assert states[0] == "complete" and states[2] in ("complete", "pruned")
    assert result.best_config is not None
    assert _count(sqlite_url, PipelineRun, PipelineRun.status == "failed") == 1


def test_trial_whose_builder_raises_is_failed_and_kept(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fx.COUNTER_ENV, str(tmp_path / "builds"))
    result = tune(
        "test_tuning_fixtures:raises_on_fourth_build",
        sqlite_url,
        budget_cores=2,
        n_trials=3,
        trial_seconds=0.3,
        profile_seconds=0.5,
        study_name="raise",
        seed=3,
        defn=fx.raises_on_fourth_build(),
        measure=measure_synthetic,
    )
    assert result.trials[1]["state"] == "fail"
    assert "corrupt record 17" in result.trials[1]["note"]
    assert result.trials[0]["state"] == "complete"
    assert result.status == "done"


def test_study_name_clash_is_refused_and_the_study_kept(sqlite_url: str) -> None:
    kw = dict(
        budget_cores=2,
        n_trials=1,
        trial_seconds=0.2,
        profile_seconds=0.3,
        study_name="same",
        defn=fx.tiny(),
        measure=measure_synthetic,
    )
    first = tune("test_tuning_fixtures:tiny", sqlite_url, **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="already exists.*--join"):
        tune("test_tuning_fixtures:tiny", sqlite_url, **kw)  # type: ignore[arg-type]
    assert _count(sqlite_url, TuningStudy) == 1
    assert _count(sqlite_url, PipelineRun, PipelineRun.purpose == "profile") == 1
    joined = tune("test_tuning_fixtures:tiny", sqlite_url, join=True, **kw)  # type: ignore[arg-type]
    assert len(joined.trials) == len(first.trials) + 1


def test_budgets_below_one_worker_are_refused_and_nothing_stored(sqlite_url: str) -> None:
    with pytest.raises(InvalidInputError, match="below what one worker needs"):
        tune(
            "test_tuning_fixtures:tiny",
            sqlite_url,
            budget_cores=0.5,
            defn=fx.tiny(),
            measure=measure_synthetic,
        )
    with pytest.raises(InvalidInputError, match="below what one worker needs"):
        tune(
            "test_tuning_fixtures:tiny",
            sqlite_url,
            budget_cores=2,
            budget_memory_bytes=1024,
            profile_seconds=0.3,
            defn=fx.tiny(),
            measure=measure_synthetic,
        )
    assert _count(sqlite_url, Pipeline) == 0
    assert _count(sqlite_url, TuningStudy) == 0


@pytest.mark.slow
def test_two_worker_processes_share_one_study(store_url: str, run_placer, tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "best.json"
    res = run_placer(
        "--store",
        store_url,
        "tune",
        "test_tuning_fixtures:tiny",
        "--trials",
        "6",
        "--workers",
        "2",
        "--trial-seconds",
        "0.3",
        "--budget-cores",
        "2",
        "--study",
        "shared",
        "-o",
        str(out),
        "--format",
        "json",
        env={"PYTHONPATH": str(TESTS)},
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    numbers = sorted(t["number"] for t in doc["trials"])
    assert numbers == list(range(6))  # none lost, none duplicated
    study = optuna.load_study(
        study_name="shared", storage=optuna_storage(store_url, heartbeat=False)
    )
    assert len(study.trials) == 6
    assert all(t.state.is_finished() for t in study.trials)
    assert json.loads(out.read_text()) == doc["best_config"]
    measured = [t for t in doc["trials"] if t["samples_per_second"] is not None]
    assert _count(store_url, PipelineRun, PipelineRun.purpose == "trial") == len(measured)


def test_a_cached_trial_is_worth_its_run_not_its_replay() -> None:
    """The objective of a cached config is the mean over --epochs, from the first and the
    cached epochs, never the window's rate (which a replayed cache can make absurd)."""
    import dataclasses

    import optuna

    from placer.contracts.pipeline import HostFacts, Measurement
    from placer.tuners.analysis import Analysis, run_rate
    from placer.tuners.tuning import Budget, Objective

    defn = fx.tiny()
    calls: list[dict[str, object]] = []

    def fake_measure(d, config, **kw):  # type: ignore[no-untyped-def]
        calls.append(dict(kw))
        cached = config.get("cache") is not None
        return Measurement(
            config=dict(config),
            samples_per_second=3e9 if cached else 1000.0,  # a replayed cache "delivers" 3e9
            batches=100,
            samples=800,
            wall_seconds=1.0,
            stages=[],
            host=HostFacts(cores=2, free_memory_bytes=1 << 30),
            first_epoch_samples_per_second=900.0 if cached else None,
            steady_samples_per_second=50_000.0 if cached else None,
        )

    analysis = Analysis(
        pipeline="tiny",
        batch_size=8,
        budget_cores=2,
        budget_memory_bytes=1 << 30,
        measured_samples_per_second=1000.0,
        stages=[],
        bottleneck="decode",
        bottleneck_samples_per_core=None,
        lp_bottleneck=None,
        upper_bound_samples_per_second=1e6,
        upper_bound_no_cache=1e6,
        source_bound_samples_per_second=None,
        cache=None,
        cache_bytes=0,
        prefetch=0,
        latency_seconds=0.0,
        workers=1,
        host_cores=2,
    )
    objective = Objective(
        defn=defn,
        analysis=dataclasses.replace(analysis),
        budget=Budget(64, 1 << 40),
        measure=fake_measure,
        trial_seconds=0.2,
        epochs=5,
    )
    study = optuna.create_study(direction="maximize")
    plain = {"parallelism.decode": 1, "prefetch": 1, "cache": None}
    study.enqueue_trial({**plain, "cache": "decode"})
    study.enqueue_trial(plain)
    study.optimize(objective, n_trials=2)
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    assert values[0] == pytest.approx(run_rate(900.0, 50_000.0, 5))
    assert values[1] == pytest.approx(1000.0)
    # the cached trial's full run waited for two whole epochs, with a deadline; the
    # uncached one did not
    full_cached, full_plain = calls[1], calls[3]
    assert full_cached["min_epochs"] == 2 and full_cached["timeout"] > 0
    assert "min_epochs" not in full_plain


def test_the_best_is_confirmed_by_a_second_measurement() -> None:
    import optuna

    from placer.tuners.study import CONFIRM_ATTR, best_trial, pick_confirmed, trial_score

    # a lucky first run (b) loses to a steady one (a) once both are measured again
    again = {"a": 95.0, "b": 40.0, "c": 80.0, "d": 1000.0}
    seen: list[str] = []

    def remeasure(config: dict[str, str]) -> float:
        seen.append(config["k"])
        return again[config["k"]]

    cands = [({"k": "a"}, 90.0), ({"k": "b"}, 120.0), ({"k": "c"}, 85.0), ({"k": "d"}, 10.0)]
    config, value, values = pick_confirmed(cands, remeasure)
    assert config == {"k": "a"} and value == pytest.approx(92.5)
    assert seen == ["b", "a", "c"] and values == [40.0, 95.0, 80.0]  # d (10.0) not re-run
    assert pick_confirmed([], remeasure) == (None, None, [])

    study = optuna.create_study(direction="maximize")
    for v in (90.0, 120.0, 85.0):
        t = study.ask()
        study.tell(t, v)
    assert best_trial(study).number == 1  # unconfirmed: the single best value
    study.set_user_attr(CONFIRM_ATTR, {"0": [95.0], "1": [40.0], "2": [80.0]})
    best = best_trial(study)
    assert best.number == 0 and trial_score(study, best) == pytest.approx(92.5)
