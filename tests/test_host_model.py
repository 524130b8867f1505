"""The host model: measured once (best of samples), stored per host, refused elsewhere."""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from placer.collectors.hostmodel import chase_sizes, measure_host_model, thread_counts
from placer.contracts.host import HostIdentity, HostModel, Point, effective_cache_bytes
from placer.errors import InvalidInputError, NotFoundError
from placer.store import Store
from placer.store.repository.hosts import (
    check_host_model,
    current_host_model,
    require_host_model,
    save_host_model,
)

MiB = 1 << 20
VM = HostIdentity("vm", "Intel(R) Xeon(R) Processor", 2, 24 << 30, 480 * MiB)


def curve(llc: int, cache_ns: float = 10.0, dram_ns: float = 100.0) -> dict[int, float]:
    """A pointer-chase curve of a host whose cache really holds ``llc`` bytes."""
    return {s: cache_ns if s <= llc else dram_ns for s in (1 << k for k in range(20, 31))}


def test_effective_cache_is_read_off_the_curve_not_sysfs() -> None:
    # A step from 32 to 64 MiB: the crossing lies between them, in log2 space.
    assert 32 * MiB <= effective_cache_bytes(curve(32 * MiB)) <= 64 * MiB
    # The Intel VM of issue 12: sysfs says 480 MiB; loads cost 208 ns at 16 MiB and 312 ns
    # at 64 MiB, so its effective cache is far below 480 MiB.
    vm = {MiB: 6.0, 4 * MiB: 30.0, 16 * MiB: 208.0, 64 * MiB: 312.0, 512 * MiB: 330.0}
    assert effective_cache_bytes(vm) < 16 * MiB
    # Nothing ever leaves the cache: the largest size measured.
    assert effective_cache_bytes({MiB: 5.0, 2 * MiB: 5.0}) == 2 * MiB


def test_sweep_goes_past_twice_the_sysfs_cache_and_threads_up_to_the_cpus() -> None:
    sizes = chase_sizes(VM)
    assert sizes[0] == MiB and sizes[-1] >= 512 * MiB
    assert chase_sizes(HostIdentity("h", "c", 2, 1 << 30, 32 * MiB))[-1] == 256 * MiB
    assert thread_counts(16) == [1, 2, 4, 8, 16] and thread_counts(6) == [1, 2, 4, 6]


class FakeHost:
    """A deterministic 'host': latency by working set, bandwidth by threads, optional noise."""

    def __init__(self, noisy: Sequence[str] = ()) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.noisy = set(noisy)
        self.n: dict[tuple[str, tuple[str, ...]], int] = {}

    def __call__(self, name: str, args: Sequence[str]) -> dict[str, float]:
        self.calls.append((name, tuple(args)))
        key = (name, tuple(args))
        self.n[key] = self.n.get(key, 0) + 1
        jitter = 1.0 + (0.5 if name in self.noisy and self.n[key] % 2 else 0.0)
        size = int(args[args.index("-m") + 1].rstrip("M")) * MiB
        if name == "chase":
            return {"ns_per_access": (10.0 if size <= 32 * MiB else 100.0) * jitter}
        threads = int(args[args.index("-t") + 1])
        return {"gb_per_s": (5.0 if name == "seqread" else 3.0) * threads / jitter}


def test_a_quiet_host_settles_in_one_round() -> None:
    host = FakeHost()
    model = measure_host_model(host, VM, repeats=3, max_rounds=3)
    assert model.rounds == 1 and model.quiet and model.spread == 0
    assert model.dram_latency_ns == 100.0
    assert model.read_bandwidth_gbps == 10.0 and model.write_bandwidth_gbps == 6.0
    assert 32 * MiB <= model.effective_cache_bytes <= 64 * MiB
    assert any("sysfs reports a 480 MiB" in n for n in model.notes)


def test_a_busy_host_remeasures_only_what_did_not_settle_and_says_so() -> None:
    host = FakeHost(noisy=["seqwrite"])
    model = measure_host_model(host, VM, repeats=2, max_rounds=3)
    assert model.rounds == 3 and not model.quiet
    chase_calls = [c for c in host.calls if c[0] == "chase"]
    assert len(chase_calls) == 2 * len(chase_sizes(VM))  # round 1 only: chase settled
    assert model.write_gbps[1].best == 3.0  # best of the samples, not the noisy median
    assert any(n.startswith("host busy") for n in model.notes)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(InvalidInputError):
        measure_host_model(FakeHost(), VM, repeats=0)
    with pytest.raises(InvalidInputError):
        measure_host_model(FakeHost(), VM, spread_limit=1.5)


points = st.builds(
    Point,
    st.floats(0.1, 1e4, allow_nan=False),
    st.floats(0.1, 1e4, allow_nan=False),
    st.integers(1, 9),
)


@given(
    chase=st.dictionaries(st.integers(1, 1 << 32), points, min_size=1, max_size=6),
    bw=st.dictionaries(st.integers(1, 256), points, min_size=1, max_size=4),
)
def test_model_round_trips_through_json(chase: dict[int, Point], bw: dict[int, Point]) -> None:
    model = HostModel(VM, chase, bw, bw, 32 * MiB, 2, 0.1, notes=["n"])
    again = HostModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model and again.fingerprint() == model.fingerprint()


def test_store_keeps_models_per_host_and_refuses_another_hosts(store_url: str) -> None:
    store = Store(store_url)
    store.upgrade()
    model = measure_host_model(FakeHost(), VM)
    with store.session() as s:
        first = save_host_model(s, model).id
        assert save_host_model(s, model).id == first  # identical model: stored once
    twin = HostIdentity("vm", "AMD EPYC", 2, 24 << 30, 32 * MiB)  # same name, other machine
    with store.session() as s:
        row = require_host_model(s, VM)
        assert row.id == first and HostModel.from_dict(row.model) == model
        assert current_host_model(s, twin) is None
        with pytest.raises(InvalidInputError, match="another machine named vm"):
            require_host_model(s, twin)
        with pytest.raises(InvalidInputError, match="not on this host"):
            check_host_model(row, twin, "this label")
        with pytest.raises(NotFoundError, match="placer calibrate"):
            require_host_model(s, HostIdentity("other", "c", 1, 1, 1))
    store.dispose()


FAKE_BENCH = """#!/bin/sh
# chase/seqread/seqwrite stand-in: a fixed result line like examples/micro prints.
name=$(basename "$0"); size=256
while [ $# -gt 0 ]; do case "$1" in -m) size=${2%M}; shift;; esac; shift; done
case "$name" in
  chase) if [ "$size" -le 16 ]; then ns=12.5; else ns=95.0; fi
         echo "chase: bytes=1 accesses=1 threads=1 time_s=0.1 ns_per_access=$ns gb_per_s=0.1";;
  *) echo "$name: bytes=1 accesses=1 threads=1 time_s=0.1 ns_per_access=1 gb_per_s=7.5";;
esac
"""


def test_calibrate_command_stores_and_shows_the_model(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bins = tmp_path / "bins"
    bins.mkdir()
    for name in ("chase", "seqread", "seqwrite"):
        path = bins / name
        path.write_text(FAKE_BENCH)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    made = run_placer("--format", "json", "calibrate", "--bin-dir", str(bins), check=True)
    doc = json.loads(made.stdout)
    assert doc["dram_latency_ns"] == 95.0 and doc["read_gbps"] == 7.5 and doc["quiet"]
    assert 16 * MiB <= doc["effective_cache_bytes"] <= 32 * MiB
    shown = json.loads(run_placer("--format", "json", "calibrate", "--show", check=True).stdout)
    assert shown["host_model"] == doc["host_model"] and shown["fingerprint"] == doc["fingerprint"]
    table = run_placer("calibrate", "--show", check=True).stdout
    assert "effective cache" in table and "sysfs says" in table


def test_calibrate_without_microbenchmarks_is_one_line_and_stores_nothing(  # type: ignore[no-untyped-def]
    run_placer, tmp_path: Path
) -> None:
    empty = tmp_path / "nobins"
    empty.mkdir()
    r = run_placer("calibrate", "--bin-dir", str(empty))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "not built" in r.stderr and "C compiler" in r.stderr
    shown = run_placer("calibrate", "--show")
    assert shown.returncode == 2 and "no host model" in shown.stderr
    bad = run_placer("calibrate", "--repeats", "0")
    assert bad.returncode == 2 and "--repeats" in bad.stderr


# ------------------------------------------------------------- pricing on the stored model
@pytest.fixture
def toy_priced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict, int]:
    """A stored native + deep run, and this host's host model stored beside it."""
    from placer.contracts.host import this_host
    from tests.emulator_fixtures import build_store

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = build_store(url)
    store = Store(url)
    with store.session() as s:
        model_id = save_host_model(s, measure_host_model(FakeHost(), this_host())).id
    store.dispose()
    return url, ids, model_id


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    from placer.cli import main

    code = main(["--format", "json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def _label_rows(url: str) -> list[tuple[str, int | None, str, float | None, float, float]]:
    from sqlalchemy import select

    from placer.store.models import Label

    store = Store(url)
    with store.session() as s:
        rows = [
            (
                lab.kind,
                lab.object_id,
                lab.strategy,
                lab.budget_fraction,
                lab.runtime_seconds,
                lab.penalty_seconds,
            )
            for lab in s.scalars(select(Label).order_by(Label.id))
        ]
    store.dispose()
    return rows


def test_labels_are_a_pure_function_of_the_stored_profile_and_host_model(
    toy_priced: tuple[str, dict, int], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ids, model_id = toy_priced
    label = ["--store", url, "experiment", "--run", str(ids["native"]), "--emulate"]
    code, first, err = _json(capsys, *label)
    assert code == 0, err
    one = _label_rows(url)
    code, second, err = _json(capsys, *label)
    assert code == 0, err
    rows = _label_rows(url)
    again = rows[len(one) :]
    assert [r[2:] for r in again] == [r[2:] for r in one]  # identical numbers, recomputed
    assert (
        second["experiments"][0]["all_slow_seconds"] == first["experiments"][0]["all_slow_seconds"]
    )
    # `placer emulate` prices the same run on the same stored model the same way
    code, emu, err = _json(capsys, "--store", url, "emulate", str(ids["native"]), "--all-slow")
    assert code == 0, err
    assert emu["host_dram"]["host_model"] == model_id
    assert emu["runtime_seconds"] == pytest.approx(first["experiments"][0]["all_slow_seconds"])


def test_a_host_model_of_another_host_is_refused_and_nothing_is_stored(
    toy_priced: tuple[str, dict, int], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ids, _ = toy_priced
    store = Store(url)
    with store.session() as s:
        other = save_host_model(s, measure_host_model(FakeHost(), VM)).id  # host "vm", not us
    store.dispose()
    before = _label_rows(url)
    run = str(ids["native"])
    for argv in (
        ["emulate", run, "--all-slow", "--host-model", str(other)],
        ["experiment", "--run", run, "--emulate", "--host-model", str(other)],
    ):
        code, _, err = _json(capsys, "--store", url, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "not on this host" in err and "placer calibrate" in err
    assert _label_rows(url) == before
    code, _, err = _json(capsys, "--store", url, "emulate", run, "--all-slow", "--host-model", "99")
    assert code == 2 and "no host model 99" in err


def test_emulate_without_a_host_model_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.emulator_fixtures import build_store

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = build_store(url)
    code, _, err = _json(capsys, "--store", url, "emulate", str(ids["native"]), "--all-slow")
    assert code == 2 and "placer calibrate" in err


def test_recommend_prices_its_plan_as_emulate_does(
    toy_priced: tuple[str, dict, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One pricing path: recommend's emulated slowdown is `placer emulate --plan`'s."""
    url, ids, model_id = toy_priced
    run = str(ids["native"])
    plan = tmp_path / "plan.json"
    code, rec, err = _json(
        capsys, "--store", url, "recommend", run, "--dram-budget", "50%", "-o", str(plan)
    )
    assert code == 0, err
    assert rec["emulated"]["available"] and rec["emulated"]["host_model"] == model_id
    code, emu, err = _json(capsys, "--store", url, "emulate", run, "--plan", str(plan))
    assert code == 0, err
    assert rec["emulated"]["slowdown"] == pytest.approx(emu["slowdown"], rel=0.01)


def test_a_plan_computed_on_another_host_is_refused_and_nothing_is_stored(
    toy_priced: tuple[str, dict, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import func, select

    from placer.contracts.host import this_host
    from placer.store.models import Run

    url, ids, model_id = toy_priced
    run = str(ids["native"])
    plan = tmp_path / "plan.json"
    code, rec, err = _json(
        capsys, "--store", url, "recommend", run, "--dram-budget", "50%", "-o", str(plan)
    )
    assert code == 0, err
    doc = json.loads(plan.read_text())
    assert doc["host"]["fingerprint"] == this_host().fingerprint()
    assert doc["host"]["host_model"] == model_id
    code, _, err = _json(capsys, "--store", url, "emulate", run, "--plan", str(plan))
    assert code == 0, err  # this host's own plan prices here
    doc["host"].update(hostname="elsewhere", fingerprint="0123456789abcdef", host_model=7)
    plan.write_text(json.dumps(doc))
    store = Store(url)
    with store.session() as s:
        runs_before = s.scalar(select(func.count(Run.id)))
    store.dispose()
    for argv in (
        ["emulate", run, "--plan", str(plan)],
        ["run", "--plan", str(plan), "--", "true"],
    ):
        code, _, err = _json(capsys, "--store", url, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "host model 7 of elsewhere" in err and "not on this host" in err
    store = Store(url)
    with store.session() as s:
        assert s.scalar(select(func.count(Run.id))) == runs_before
    store.dispose()


def test_calibrate_without_a_c_compiler_is_one_line_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh checkout (no examples/bin) on a host without cc: say so, store nothing."""
    import placer.contracts.examples as examples

    fresh = tmp_path / "examples"
    fresh.mkdir()
    (fresh / "Makefile").write_text("all:\n\tcc -o bin/chase micro/chase.c\n")
    monkeypatch.setattr(examples, "examples_dir", lambda: fresh)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code, _, err = _json(capsys, "--store", url, "calibrate")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no C compiler" in err and "--bin-dir" in err
    code, _, err = _json(capsys, "--store", url, "calibrate", "--show")
    assert code == 2 and "no host model" in err
