"""optuna-dashboard and placer agree on a study (finding 6 of issue 14).

The dashboard called the objective "Objective 0" and showed Optuna's best trial (the
single highest value), while placer had chosen another after re-measuring and recorded
that choice nowhere on the study.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import placer
from placer.reports import build
from placer.store import Store
from placer.tuners.study import BEST_ATTR, best_trial, optuna_storage

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_tuning_fixtures as fx  # noqa: E402


def test_study_names_its_objective_and_records_placers_best(
    sqlite_url: str, tmp_path: Path, run_placer
) -> None:  # type: ignore[no-untyped-def]
    import optuna

    out = tmp_path / "tuned.json"
    result = placer.tune(
        fx.tiny(),
        store=sqlite_url,
        trials=3,
        budget_cores=2,
        trial_seconds=0.3,
        study="dash",
        seed=1,
        output=out,
    )
    assert result.best_config is not None and result.best_trial is not None
    assert json.loads(out.read_text()) == result.best_config

    study = optuna.load_study(study_name="dash", storage=optuna_storage(sqlite_url))
    assert study.metric_names == ["samples/s"]
    chosen = study.user_attrs[BEST_ATTR]
    assert chosen["trial"] == result.best_trial == best_trial(study).number
    assert chosen["config"] == result.best_config
    assert chosen["samples_per_second"] == result.best_samples_per_second

    shown = run_placer("pipeline", "tiny", "--store", sqlite_url, "--format", "json", check=True)
    doc = json.loads(shown.stdout)
    assert doc["best_config"] == chosen["config"]
    assert doc["best_samples_per_second"] == chosen["samples_per_second"]
    assert [s["best_config"] for s in doc["studies"]] == [chosen["config"]]

    with Store(sqlite_url) as store:
        report = build(store, "pipeline", doc["id"])
    assert report["throughput"]["best_config"] == chosen["config"]
    assert report["throughput"]["best_samples_per_second"] == chosen["samples_per_second"]
