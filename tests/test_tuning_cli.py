"""`placer tune`, `placer pipelines`, `placer pipeline` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.cli.tune import parse_size
from placer.errors import InvalidInputError

TESTS = str(Path(__file__).resolve().parent)


def _one_line_error(res, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("placer: error:"), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_sizes() -> None:
    assert parse_size("4GiB") == 4 * 1024**3
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("1000") == 1000
    for bad in ("4XB", "", "-1GiB", "0", "GiB"):
        with pytest.raises(InvalidInputError):
            parse_size(bad)


def test_bad_size_is_refused_before_anything_runs(run_placer) -> None:  # type: ignore[no-untyped-def]
    res = run_placer("tune", "synthetic-cpu", "--budget-mem", "4XB")
    _one_line_error(res, "4XB")


def test_module_that_does_not_import(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broken_pipe_mod.py").write_text("import no_such_module_xyz\n")
    res = run_placer("tune", "broken_pipe_mod:build", env={"PYTHONPATH": str(tmp_path)})
    _one_line_error(res, "broken_pipe_mod")


def test_builder_that_raises(run_placer) -> None:  # type: ignore[no-untyped-def]
    res = run_placer("tune", "test_tuning_fixtures:raising_builder", env={"PYTHONPATH": TESTS})
    _one_line_error(res, "dataset path is not configured")


def test_unknown_pipeline_name(run_placer) -> None:  # type: ignore[no-untyped-def]
    res = run_placer("tune", "no-such-pipeline-name")
    _one_line_error(res, "no-such-pipeline-name")


@pytest.mark.slow
def test_pipelines_and_pipeline_documents(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "config.json"
    env = {"PYTHONPATH": TESTS}
    res = run_placer(
        "tune",
        "test_tuning_fixtures:tiny",
        "--trials",
        "2",
        "--trial-seconds",
        "0.3",
        "--budget-cores",
        "2",
        "--budget-mem",
        "8GiB",
        "-o",
        str(out),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "is the bottleneck at" in res.stdout
    assert "best config (trial " in res.stdout and "vs naive" in res.stdout
    config = json.loads(out.read_text())
    assert set(config) == {"parallelism.decode", "prefetch", "cache"}

    listing = json.loads(run_placer("pipelines", "--format", "json", check=True).stdout)
    [p] = listing["pipelines"]
    assert p["name"] == "tiny" and p["studies"] == 1 and p["best_samples_per_second"] > 0

    doc = json.loads(run_placer("pipeline", str(p["id"]), "--format", "json", check=True).stdout)
    assert [s["name"] for s in doc["stages"]] == ["read", "decode", "flip", "batch"]
    assert doc["bottleneck"] in {"read", "decode", "flip"}
    assert doc["upper_bound_samples_per_second"] > 0
    assert doc["best_config"] == config
    assert doc["studies"][0]["trials"] == 2
    assert doc["runs"] == {"profile": 1, "trial": doc["runs"]["trial"]}

    missing = run_placer("pipeline", "999")
    _one_line_error(missing, "999")


def test_budget_below_one_worker_is_one_line(run_placer) -> None:  # type: ignore[no-untyped-def]
    env = {"PYTHONPATH": TESTS}
    res = run_placer("tune", "test_tuning_fixtures:tiny", "--budget-cores", "0.5", env=env)
    _one_line_error(res, "--budget-cores 0.5 is below what one worker needs")
    res = run_placer(
        "tune", "test_tuning_fixtures:tiny", "--budget-cores", "2", "--budget-mem", "1KiB", env=env
    )
    _one_line_error(res, "--budget-mem 1024 bytes is below what one worker needs")
    listing = json.loads(run_placer("pipelines", "--format", "json", check=True).stdout)
    assert listing["pipelines"] == []  # nothing stored for a refused study


@pytest.mark.slow
def test_study_name_clash_is_one_line_and_keeps_the_trials(run_placer) -> None:  # type: ignore[no-untyped-def]
    env = {"PYTHONPATH": TESTS}
    args = ("tune", "test_tuning_fixtures:tiny", "--study", "same", "--trial-seconds", "0.3")
    first = run_placer(*args, "--trials", "2", "--budget-cores", "2", "--format", "json", env=env)
    assert first.returncode == 0, first.stderr
    best = json.loads(first.stdout)["best_samples_per_second"]
    res = run_placer(*args, "--trials", "2", env=env)
    _one_line_error(res, "study 'same' already exists", "--join")
    [p] = json.loads(run_placer("pipelines", "--format", "json", check=True).stdout)["pipelines"]
    assert p["studies"] == 1 and p["best_samples_per_second"] == best
    doc = json.loads(run_placer("pipeline", str(p["id"]), "--format", "json", check=True).stdout)
    assert doc["studies"][0]["trials"] == 2  # the finished trials are kept


@pytest.mark.slow
def test_hanging_stage_fails_its_trial_at_the_trial_timeout(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"PYTHONPATH": TESTS, "PLACER_TEST_BUILD_COUNTER": str(tmp_path / "builds")}
    res = run_placer(
        "tune",
        "test_tuning_fixtures:hangs_on_fourth_build",
        "--trials",
        "3",
        "--trial-seconds",
        "0.3",
        "--budget-cores",
        "2",
        "--trial-timeout",
        "3",
        "--format",
        "json",
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    states = [t["state"] for t in doc["trials"]]
    assert states[1] == "fail" and "timeout after 3.0s" in doc["trials"][1]["note"]
    assert states[0] == "complete" and doc["best_config"] is not None


def test_bad_epochs_and_trial_timeout_are_refused(run_placer) -> None:  # type: ignore[no-untyped-def]
    _one_line_error(run_placer("tune", "synthetic-cpu", "--epochs", "0"), "--epochs")
    res = run_placer("tune", "synthetic-cpu", "--trial-timeout", "0")
    assert res.returncode == 2 and "--trial-timeout" in res.stderr
