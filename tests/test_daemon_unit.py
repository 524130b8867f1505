"""The systemd unit: shipped in the package, printed with this installation's command,
accepted by ``systemd-analyze verify``; the daemon's socket goes to its RuntimeDirectory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from placer.daemon.unit import UNIT_FILE, placer_command, unit_text


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit cannot be verified here")
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def test_the_unit_is_package_data(tmp_path: Path) -> None:
    from importlib.resources import files

    assert files("placer.daemon").joinpath(UNIT_FILE).is_file()
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"placer.daemon" = ["*.service"]' in pyproject  # so the wheel carries it


def test_printed_unit_runs_this_installation(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = run_placer("daemon", "unit", check=True).stdout
    (exec_start,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.path.isabs(program) and os.access(program, os.X_OK), exec_start
    assert exec_start.endswith(" daemon")
    assert "file:" not in text  # systemd wants an absolute URL in Documentation=
    assert "RuntimeDirectory=placer" in text


def test_a_placer_script_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "venv" / "bin" / "placer"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "daemon", "unit"])
    assert placer_command() == [str(script)]
    monkeypatch.setattr(sys, "argv", ["/somewhere/placer/__main__.py"])
    assert placer_command() == [sys.executable, "-m", "placer"]


def test_printed_unit_passes_systemd_analyze_verify(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    unit = tmp_path / UNIT_FILE
    unit.write_text(run_placer("daemon", "unit", check=True).stdout)
    result = _verify(unit)
    assert result.returncode == 0 and UNIT_FILE not in result.stderr, result.stderr


def test_a_command_with_spaces_and_percent_is_quoted_for_systemd(tmp_path: Path) -> None:
    script = tmp_path / "my venv 100%" / "placer"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    unit = tmp_path / UNIT_FILE
    unit.write_text(unit_text([str(script)]))
    assert "100%%" in unit.read_text()
    result = _verify(unit)
    assert result.returncode == 0 and UNIT_FILE not in result.stderr, result.stderr


def test_the_daemon_listens_in_its_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd sets $RUNTIME_DIRECTORY for RuntimeDirectory=; the socket goes there."""
    from placer.daemon.client import socket_path
    from placer.daemon.config import DaemonConfig
    from placer.daemon.service import Daemon, json_log

    runtime = tmp_path / "run" / "placer"
    runtime.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    monkeypatch.delenv("PLACER_DAEMON_SOCKET", raising=False)
    cfg = DaemonConfig(metrics="")
    with open(tmp_path / "log", "w") as log:
        d = Daemon(cfg, f"sqlite:///{tmp_path / 's.db'}", None, json_log("info", log))
        d.start()
        try:
            assert (runtime / "daemon.sock").is_socket()
        finally:
            d.stop()
    # a client started by some other unit does not look in that unit's directory
    assert socket_path() != runtime / "daemon.sock"
