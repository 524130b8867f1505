"""``placer experiment --suite corpus``: its applications, inputs, held-out set and errors.

The default tests need neither network nor the third-party builds; the ones that run the
built programs are slow and skip when ``examples/thirdparty/bin`` is absent.
"""

from __future__ import annotations

import shutil
import subprocess
import types
from pathlib import Path

import pytest

from placer.contracts.examples import (
    HELDOUT_APPS,
    THIRDPARTY_PROGRAMS,
    examples_dir,
    thirdparty_bin_dir,
)
from placer.errors import ExternalToolError
from placer.experiments.workloads import THIRD_PARTY_GROUPS, Workload, corpus, corpus_data

ROOT = Path(__file__).resolve().parent.parent
TP_BIN = ROOT / "examples" / "thirdparty" / "bin"


def _corpus(tmp_path: Path) -> list[Workload]:
    return corpus(tmp_path / "bin", tmp_path / "tp", tmp_path / "data", tmp_path / "py")


def test_corpus_has_25_apps_at_least_half_third_party(tmp_path: Path) -> None:
    ws = _corpus(tmp_path)
    apps = [w.app for w in ws]
    assert len(set(apps)) == len(apps) >= 25
    third = [w for w in ws if w.group in THIRD_PARTY_GROUPS]
    assert 2 * len(third) >= len(ws)
    assert {w.group for w in ws} >= {"thirdparty", "pypi", "graph", "micro", "python"}
    assert HELDOUT_APPS <= set(apps)


def test_corpus_commands_point_into_their_folders(tmp_path: Path) -> None:
    for w in _corpus(tmp_path):
        paths = [Path(a) for a in w.command if a.startswith(str(tmp_path))]
        assert paths, w.app
        if w.group == "thirdparty":  # a built program, its inputs from the data folder
            tp, data = tmp_path / "tp", tmp_path / "data"
            assert any(p.parent == tp or p == tp for p in paths), w.app
            assert all(p in (tp, data) or p.parent in (tp, data) for p in paths), w.app
        elif w.group in ("pypi", "python"):
            assert paths[0].parent == tmp_path / "py" and paths[0].suffix == ".py", w.app
            assert (ROOT / "examples" / "python" / paths[0].name).is_file(), w.app
        else:
            assert paths[0].parent == tmp_path / "bin", w.app


def test_data_generation_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = corpus_data()
    for name in ("LOG_LINES", "JSON_EVENTS", "SQL_ORDERS", "NINJA_TARGETS"):
        monkeypatch.setattr(data, name, 300)  # same code path, small files
    a = data.generate(tmp_path / "a", seed=3)
    b = data.generate(tmp_path / "b", seed=3)
    c = data.generate(tmp_path / "c", seed=4)
    assert set(a) == {
        "access.log",
        "events.json",
        "shop.sql",
        "build.ninja",
        "tables.lua",
        "redis-kv.sh",
    }
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["access.log"].read_bytes() != c["access.log"].read_bytes()
    before = a["shop.sql"].stat().st_mtime_ns
    data.generate(tmp_path / "a", seed=3)  # unchanged content is not rewritten
    assert a["shop.sql"].stat().st_mtime_ns == before


def test_heldout_apps_are_not_in_the_default_models_training_set() -> None:
    pd = pytest.importorskip("pandas")
    from placer.placement.default_model import training_set
    from placer.placement.evaluation import Dataset

    apps = ["kvlog", "zstd", "bfs-kron18", "sqlite3", "redis-kv"]
    labels = [types.SimpleNamespace(app=a, run_id=i) for i, a in enumerate(apps)]
    table = pd.DataFrame({"run_id": [0, 1, 2, 2, 3, 4], "label_share": [0.1] * 6})
    data = Dataset(table, labels, {i: table[table.run_id == i] for i in range(5)})  # type: ignore[arg-type]
    kept, held = training_set(data)
    assert held == ["kvlog", "redis-kv", "zstd"]
    assert kept.apps() == ["bfs-kron18", "sqlite3"]
    assert set(kept.table["run_id"]) == {2, 3}


def test_missing_thirdparty_build_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import placer.contracts.examples as ex
    from placer.cli import main

    (tmp_path / "thirdparty" / "bin").mkdir(parents=True)
    (tmp_path / "thirdparty" / "bin" / "xz").write_text("")
    monkeypatch.setattr(ex, "examples_dir", lambda: tmp_path)
    with pytest.raises(ExternalToolError, match=r"make -C examples thirdparty"):
        thirdparty_bin_dir()
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "store"))
    code = main(["--store", f"sqlite:///{tmp_path}/s.db", "experiment", "--suite", "corpus"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "make -C examples thirdparty" in err[0]
    assert "Traceback" not in err[0]


def test_thirdparty_build_is_not_part_of_the_default_examples_target() -> None:
    mk = (ROOT / "examples" / "Makefile").read_text()
    all_line = next(line for line in mk.splitlines() if line.startswith("all:"))
    assert "thirdparty" not in all_line
    assert "thirdparty:" in mk
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"examples/thirdparty/bin/", "examples/thirdparty/src/"} <= set(ignored)


@pytest.mark.slow
def test_built_corpus_programs_run(tmp_path: Path) -> None:
    if not all((TP_BIN / p).is_file() for p in THIRDPARTY_PROGRAMS):
        pytest.skip("examples/thirdparty/bin is absent: run `make -C examples thirdparty`")
    from placer.experiments.workloads import suite

    assert examples_dir() == ROOT / "examples"
    ws = [w for w in suite("corpus") if w.group == "thirdparty"]
    for w in ws:
        proc = subprocess.run(w.command, capture_output=True, timeout=120)
        assert proc.returncode == 0, (w.app, proc.stderr[-300:])


@pytest.mark.slow
def test_dhat_pass_follows_children_of_a_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    if not (TP_BIN / "lua").is_file():
        pytest.skip("examples/thirdparty/bin is absent: run `make -C examples thirdparty`")
    from placer.experiments.deep import dhat_pass
    from placer.experiments.session import profile_pair
    from placer.store import Store

    pytest.importorskip("placer.collectors.shim")
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    script = tmp_path / "run.sh"
    lua = tmp_path / "t.lua"
    lua.write_text("local t = {} for i = 1, 200000 do t[i] = {i, tostring(i)} end print(#t)\n")
    script.write_text(f"#!/bin/sh\n{TP_BIN / 'lua'} {lua}\n")
    script.chmod(0o755)
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.upgrade()
    run_id, _ = profile_pair(store, [str(script)], "lua-in-sh", deep=False)
    got = dhat_pass(store, run_id, [str(script)])
    assert got["processes"] >= 2  # the shell and the lua it started
    assert got["sites_matched"] >= 1  # lua's own allocation sites, seen in the child


def test_labels_name_every_corpus_program_as_the_heldout_set_does(tmp_path: Path) -> None:
    """Leave-one-application-out and the held-out set group runs by program: the corpus's
    shell-wrapped and Python programs must be named as HELDOUT_APPS names them (they were
    "sh" and "sklearn_neighbors.py", so the held-out set leaked into training)."""
    from placer.placement.labels import command_program

    names = {w.app: command_program(w.command) for w in _corpus(tmp_path)}
    assert HELDOUT_APPS <= set(names.values())
    not_graph = [
        n
        for a, n in names.items()
        if a.split("-")[0] not in {"bfs", "pr", "cc", "sssp", "bc", "tc"}
    ]
    assert len(not_graph) == len(set(not_graph)), names
    assert "sh" not in names.values() and not any(n.endswith(".py") for n in names.values())
