"""The daemon demo's pipeline half: a real example pipeline job tuned by a real daemon.

``examples/pipelines/train_job.py`` runs the ``remote-torchdata`` example (shards over
loopback HTTP with 25 ms per request) from its naive config, reports each epoch to a
``placer daemon`` started here, and applies the knobs it gets back between epochs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_daemon import (  # noqa: F401 - fixtures
    PY,
    REPO,
    DaemonProc,
    daemon_factory_fixture,
    wait_for,
)

pytestmark = pytest.mark.slow


def train_job(env: dict[str, str], *args: str, timeout: float = 50) -> dict[str, Any]:
    r = subprocess.run(
        [PY, "-m", "examples.pipelines.train_job", "--json", *args],
        env=env,
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    return {"doc": json.loads(lines[-1]), "text": "\n".join(lines[:-1])}


def test_train_job_knobs_change_and_throughput_rises(
    daemon_factory: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    d = daemon_factory(tune_trials=4).start()
    env = {**d.env, "PLACER_PIPELINE_DATA": str(tmp_path / "pipelines")}
    out = train_job(
        env,
        "--pipeline",
        "remote-torchdata",
        "--epochs",
        "6",
        "--steps-per-epoch",
        "8",
        "--tune",
        "parallelism.fetch,prefetch",
    )
    epochs = out["doc"]["epochs"]
    assert "daemon job" in out["text"] and len(epochs) == 6
    assert all(e["daemon"] for e in epochs)  # every epoch's report got an answer
    # it starts naive: one fetch at a time, no prefetch
    assert epochs[0]["knobs"] == {"parallelism.fetch": 1, "prefetch": 0}
    # the daemon's knobs were applied at the next epoch boundary
    for before, after in zip(epochs, epochs[1:], strict=False):
        assert after["knobs"] == before["next_knobs"]
    assert len({json.dumps(e["knobs"], sort_keys=True) for e in epochs}) >= 3
    first = epochs[0]["samples_per_second"]
    best = max(e["samples_per_second"] for e in epochs)
    assert best > 2 * first, epochs  # 25 ms per request: parallel fetches hide it

    rows = d.cli("--format", "json", "jobs", "--history", check=True)
    (job,) = [j for j in json.loads(rows.stdout)["jobs"] if j["kind"] == "pipeline"]
    row = wait_for(lambda: d.job_row(job["id"])["status"] == "exited" and d.job_row(job["id"]))
    st = row["state"]
    assert st["first_samples_per_second"] == pytest.approx(first)
    assert st["best"]["samples_per_second"] == pytest.approx(best)
    assert st["best"]["knobs"]["parallelism.fetch"] > 1
    assert st["settled"] and st["trials"] == 4
    # the job reported full stage stats: the analysis chose the first trial (parallel fetch)
    assert st["first_trial"]["source"] == "analysis", st["first_trial"]
    assert st["first_trial"]["knobs"]["parallelism.fetch"] > 1
    assert epochs[1]["knobs"] == st["first_trial"]["knobs"]
    changed = {c["knob"] for c in st["knob_changes"]}
    assert "parallelism.fetch" in changed
    # one report window per epoch (the others are the process's /proc windows)
    windows = [w for w in d.events(job["id"], "window") if "samples_per_second" in w]
    assert [w["samples_per_second"] for w in windows] == pytest.approx(
        [e["samples_per_second"] for e in epochs]
    )
    stages = {s["name"]: s for s in windows[0]["stages"]}
    assert stages["fetch"]["elements_out"] >= 16 and stages["fetch"]["parallelism"] == 1
    assert d.stop() == 0


def test_train_job_without_a_daemon_keeps_its_config(tmp_path: Path) -> None:
    import os

    env = {
        **os.environ,
        "PLACER_DATA_DIR": str(tmp_path / "data"),
        "PLACER_DAEMON_SOCKET": str(tmp_path / "nobody.sock"),
        "PLACER_PIPELINE_SIZE": "tiny",
    }
    out = train_job(env, "--pipeline", "remote-python", "--epochs", "2")
    assert out["text"].count("no daemon tunes this job") == 1
    epochs = out["doc"]["epochs"]
    assert [e["daemon"] for e in epochs] == [False, False]
    assert epochs[0]["knobs"] == epochs[1]["knobs"] == epochs[1]["next_knobs"]
