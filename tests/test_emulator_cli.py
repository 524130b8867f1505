"""``placer emulate`` on stored profiles: placements, JSON document, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.cli import main
from tests.emulator_fixtures import SITES, build_store


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return url, build_store(url)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(["--format", "json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def test_all_slow_object_and_plan(
    toy: tuple[str, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, ids = toy
    base = ["--store", url, "emulate", str(ids["native"]), "--reference-dram"]
    code, doc, _ = run_json(capsys, *base, "--all-slow")
    assert code == 0
    assert doc["base_seconds"] == 2.0 and doc["deep_run"] == ids["deep"]
    assert doc["placement"]["slow_objects"] == 3
    pens = {o["object"]: o["penalty_seconds"] for o in doc["objects"]}
    assert doc["runtime_seconds"] == pytest.approx(2.0 + sum(pens.values()))
    assert doc["objects"][0]["penalty_seconds"] == max(pens.values())  # worst first

    code, one, _ = run_json(capsys, *base, "--object", SITES["table"][0])
    assert code == 0 and one["placement"]["slow_objects"] == 1
    assert one["runtime_seconds"] == pytest.approx(2.0 + pens[ids["objects"]["table"]])

    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "format": "placer-plan",
                "version": 1,
                "build_id": "b1d0",
                "decisions": [
                    {"site": SITES["stream"][0], "tier": "slow"},
                    {"site": SITES["table"][0], "tier": "dram"},
                ],
            }
        )
    )
    code, byplan, _ = run_json(capsys, *base, "--plan", str(plan))
    assert code == 0 and byplan["placement"]["slow_objects"] == 1
    assert byplan["runtime_seconds"] == pytest.approx(2.0 + pens[ids["objects"]["stream"]])

    # CXL's smaller latency/bandwidth ratios give a faster all-slow run than Optane's
    code, cxl, _ = run_json(capsys, *base, "--all-slow", "--tier", "cxl")
    assert code == 0 and cxl["runtime_seconds"] < doc["runtime_seconds"]


def test_bad_input_is_one_line_exit_2(
    toy: tuple[str, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, ids = toy
    base = ["--store", url, "emulate", str(ids["native"]), "--reference-dram"]
    assert main([*base, "--all-slow", "--tier", "hbm3"]) == 2
    assert "unknown tier 'hbm3'" in capsys.readouterr().err

    plan = tmp_path / "other.json"
    plan.write_text(
        json.dumps(
            {
                "format": "placer-plan",
                "version": 1,
                "build_id": "ffee",
                "decisions": [{"site": SITES["table"][0], "tier": "slow"}],
            }
        )
    )
    assert main([*base, "--plan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert "another binary" in err and err.count("\n") == 1

    assert main([*base, "--object", "ffffffffff"]) == 2
    assert "not a site of run" in capsys.readouterr().err

    # the deep run alone has no native baseline... but it finds its native companion
    code, doc, _ = run_json(
        capsys, "--store", url, "emulate", str(ids["deep"]), "--reference-dram", "--all-slow"
    )
    assert code == 0 and doc["run"] == ids["native"]


def test_run_without_deep_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = build_store(url, with_deep=False)
    assert main(["--store", url, "emulate", str(ids["native"]), "--all-slow"]) == 2
    err = capsys.readouterr().err
    assert "no deep-mode data" in err and "--deep" in err
    assert main(["--store", url, "emulate", "999", "--all-slow"]) == 2
    assert "not in the store" in capsys.readouterr().err


def test_base_time_is_the_programs_own_not_perfs(
    toy: tuple[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run profiled under `perf record` pays perf's start-up and write-out in its wall
    time (about 1 s here); the emulated baseline is the program's time the shim saw."""
    from placer.store import Store
    from placer.store.models import Run

    url, ids = toy
    with Store(url).session() as s:
        run = s.get(Run, ids["native"])
        run.signals = {**(run.signals or {}), "shim": {"program_seconds": 0.5}}
    code, doc, _ = run_json(
        capsys, "--store", url, "emulate", str(ids["native"]), "--reference-dram", "--all-slow"
    )
    assert code == 0 and doc["base_seconds"] == 0.5  # not the 2.0 s wall time
