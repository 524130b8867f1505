"""The CLI as a user meets it: db commands, doctor, global options, errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from placer import cli


def test_db_upgrade_then_current_reports_head(run_placer, store_url: str) -> None:  # type: ignore[no-untyped-def]
    up = run_placer("--store", store_url, "db", "upgrade", check=True)
    assert "revision:" in up.stdout
    cur = run_placer("db", "current", "--store", store_url, "--format", "json", check=True)
    doc = json.loads(cur.stdout)
    assert doc["at_head"] is True
    assert doc["current"] == doc["head"]
    assert "password" not in doc["store"]


def test_downgrade_to_base_and_back(run_placer, store_url: str) -> None:  # type: ignore[no-untyped-def]
    run_placer("--store", store_url, "db", "upgrade", check=True)
    down = run_placer(
        "--store", store_url, "--format", "json", "db", "downgrade", "base", check=True
    )
    assert json.loads(down.stdout)["current"] is None
    up = run_placer("--store", store_url, "--format", "json", "db", "upgrade", check=True)
    assert json.loads(up.stdout)["at_head"] is True


def test_placer_store_environment_variable_selects_the_store(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'env.db'}"
    run_placer("db", "upgrade", check=True, env={"PLACER_STORE": url})
    assert (tmp_path / "env.db").exists()


def test_default_store_lives_in_the_data_directory(run_placer, placer_env) -> None:  # type: ignore[no-untyped-def]
    run_placer("db", "upgrade", check=True)
    assert (Path(placer_env["PLACER_DATA_DIR"]) / "placer.db").exists()


def test_doctor_json_on_this_host(run_placer) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(run_placer("doctor", "--format", "json", check=True).stdout)
    summary = doc["summary"]
    # This project's hosts: one DRAM node, no hardware counters, perf software events.
    assert summary["dram_nodes"] >= 1
    assert summary["slow_tier_nodes"] == 0
    names = {f["name"] for f in doc["findings"]}
    assert {
        "memory tiers",
        "perf",
        "perf mem",
        "valgrind",
        "C compiler",
        "OpenMP runtime",
        "store",
        "schema revision",
        "perf_event_paranoid",
    } <= names
    if summary["perf"]:
        assert summary["perf_software_events"] is True
        assert isinstance(summary["hardware_counters"], bool)
    assert summary["schema_revision"] is None  # doctor never creates the store


def test_doctor_reports_schema_revision_after_upgrade(run_placer) -> None:  # type: ignore[no-untyped-def]
    run_placer("db", "upgrade", check=True)
    doc = json.loads(run_placer("doctor", "--format", "json", check=True).stdout)
    assert doc["summary"]["schema_revision"] == doc["summary"]["schema_head"]


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unreachable_postgresql_is_one_clear_line(run_placer) -> None:  # type: ignore[no-untyped-def]
    url = "postgresql://postgres:secret@127.0.0.1:1/nowhere"
    line = _one_line_error(run_placer("--store", url, "db", "upgrade"))
    assert "cannot reach store" in line
    assert "secret" not in line  # passwords never printed


def test_store_in_read_only_directory(run_placer, readonly_dir: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{readonly_dir / 'placer.db'}"
    line = _one_line_error(run_placer("--store", url, "db", "upgrade"))
    assert "not writable" in line
    assert not (readonly_dir / "placer.db").exists()


def test_unknown_revision_leaves_the_store_as_it_was(run_placer, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    run_placer("--store", sqlite_url, "db", "upgrade", check=True)
    line = _one_line_error(run_placer("--store", sqlite_url, "db", "downgrade", "cafe1234"))
    assert "unknown schema revision 'cafe1234'" in line
    cur = run_placer("--store", sqlite_url, "--format", "json", "db", "current", check=True)
    assert json.loads(cur.stdout)["at_head"] is True


def test_current_on_a_missing_store_does_not_create_it(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "missing.db"
    line = _one_line_error(run_placer("--store", f"sqlite:///{path}", "db", "current"))
    assert "does not exist" in line
    assert not path.exists()


def test_store_url_into_a_missing_directory_is_an_error(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A typo in --store or $PLACER_STORE is one line and exit 2, and creates nothing."""
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    line = _one_line_error(run_placer("--store", url, "runs"))
    assert "does not exist" in line and "placer db init" in line
    line = _one_line_error(run_placer("db", "upgrade", env={"PLACER_STORE": url}))
    assert "does not exist" in line
    assert not (tmp_path / "nonexistent").exists()
    # asked for: `placer db init` creates the directory and the store at head
    init = run_placer("--store", url, "--format", "json", "db", "init", check=True)
    assert json.loads(init.stdout)["at_head"] is True
    assert (tmp_path / "nonexistent" / "dir" / "x.db").is_file()
    assert "profiled runs" in run_placer("--store", url, "runs", check=True).stdout


def test_malformed_store_url(run_placer) -> None:  # type: ignore[no-untyped-def]
    line = _one_line_error(run_placer("--store", "not a url", "db", "current"))
    assert "invalid store URL" in line


def test_usage_errors_exit_2(run_placer) -> None:  # type: ignore[no-untyped-def]
    assert run_placer("no-such-command").returncode == 2
    assert run_placer("--format", "yaml", "doctor").returncode == 2


def test_unexpected_error_exits_1_and_points_to_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from placer import cli, doctor

    def broken(*a: object, **k: object) -> None:
        raise ZeroDivisionError("synthetic bug")

    monkeypatch.setattr(doctor, "run_doctor", broken)
    assert cli.main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "doctor"])


def test_version_and_help_do_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from placer.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'optuna', 'lightgbm', 'pandas', "
        "'numpy', 'torch', 'scipy', 'sklearn', 'rich') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    version = subprocess.run(
        [sys.executable, "-m", "placer", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("placer ")


def test_command_table_names_every_command_its_module_registers() -> None:
    """`placer --help` lists commands from a table; each module must register exactly those."""
    modules = {module for module, _help in cli.COMMANDS.values()}
    for module in modules:
        parser = cli.build_parser(next(n for n, (m, _) in cli.COMMANDS.items() if m == module))
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in sub._choices_actions}
        assert set(helps) == set(cli.COMMANDS), module  # every command listed
        for name, (owner, text) in cli.COMMANDS.items():
            assert helps[name] == text
            if owner == module:
                assert sub.choices[name]._actions[1:], f"{name}: no arguments registered"


def test_command_word_is_found_after_global_options() -> None:
    assert cli.command_name(["--store", "sqlite:///x.db", "--format", "json", "runs"]) == "runs"
    assert cli.command_name(["--debug", "objects", "3"]) == "objects"
    assert cli.command_name(["--help"]) is None


def test_unknown_command_is_one_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["nosuchcommand"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
