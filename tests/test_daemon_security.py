"""The daemon against hostile targets and bad settings (issue 16, daemon items).

A target chooses its shim-log path, so a FIFO, a link, a device or another user's file
must fail its job, never stall the loop; command-line flags survive SIGHUP; a DRAM budget
that does not read is refused at start and on reload; every store outage is announced.
Daemon processes are bounded by the helpers of ``tests/test_daemon.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from placer.daemon.config import load_config
from placer.daemon.loop import Loop
from placer.daemon.tail import LogRefused, OffLoop, ShimTail
from placer.errors import ConfigError
from tests.test_daemon import (  # noqa: F401 - fixtures
    PY,
    DaemonProc,
    _log_header,
    daemon_factory_fixture,
    wait_for,
)


def _poll_bounded(tail: ShimTail, seconds: float = 10.0) -> BaseException | None:
    """``tail.poll()`` in a thread: what it raised; fails if it is still blocked."""
    out: list[BaseException | None] = []

    def run() -> None:
        try:
            tail.poll()
            out.append(None)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "reading the log blocked"
    return out[0]


# --------------------------------------------------------------------------- tail
def test_a_fifo_as_log_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    exc = _poll_bounded(ShimTail(fifo))
    assert isinstance(exc, LogRefused) and "FIFO" in str(exc)


def test_links_devices_and_foreign_files_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.log"
    real.write_bytes(_log_header())
    link = tmp_path / "link.log"
    link.symlink_to(real)
    assert ShimTail(real).poll().empty()  # the process's own regular file: read
    for tail, why in (
        (ShimTail(link), "symbolic link"),
        (ShimTail("/dev/zero"), "character device"),
        (ShimTail(tmp_path), "directory"),
        (ShimTail(real, owners=frozenset({os.geteuid() + 1})), "owned by uid"),
    ):
        exc = _poll_bounded(tail)
        assert isinstance(exc, LogRefused) and why in str(exc), (tail.path, exc)


def test_a_stuck_read_times_out_and_the_next_read_runs() -> None:
    io = OffLoop(timeout=0.2)
    release = threading.Event()
    with pytest.raises(LogRefused, match="did not finish"):
        io.call(release.wait, "stuck")
    io.timeout = 60.0  # the reads that finish must not race a busy host's scheduler
    assert io.call(lambda: 7, "next") == 7  # a fresh worker took over
    with pytest.raises(ZeroDivisionError):
        io.call(lambda: 1 // 0, "error")  # the read's own error reaches the caller
    release.set()
    assert io.abandoned == 1


@pytest.mark.slow
def test_a_fifo_log_fails_the_job_and_the_daemon_keeps_going(
    daemon_factory: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    """Issue 16 item 2: before, the loop blocked in open() for good, SIGTERM included."""
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    d = daemon_factory(perf=False).start()
    env = {**os.environ, "PLACER_SHIM_LOG": str(fifo)}
    target = subprocess.Popen(["sleep", "60"], env=env)
    d.children.append(target)  # type: ignore[attr-defined]
    job = d.request("attach", pid=target.pid)["job"]["id"]
    row = wait_for(lambda: (r := d.job_row(job))["status"] == "failed" and r)
    assert "FIFO" in row["state"]["exit"]["note"]
    ticks = d.status()["loop"]["ticks"]
    wait_for(lambda: d.status()["loop"]["ticks"] > ticks)  # the loop goes on
    assert any(e.get("event") == "job_log_refused" for e in d.log_lines())
    assert d.stop() == 0  # SIGTERM is obeyed
    d.start()
    assert d.request("jobs")["jobs"] == []  # a failed job is not adopted again
    assert d.job_row(job)["status"] == "failed"
    assert d.stop() == 0


# --------------------------------------------------------------------------- settings
def test_a_bad_dram_budget_is_refused_where_it_comes_from(tmp_path: Path) -> None:
    env = {"PLACER_DAEMON_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    for bad in ("xyz", "150%", "-1", ""):
        with pytest.raises(ConfigError, match="PLACER_DAEMON_DRAM_BUDGET: dram_budget"):
            load_config(environ={**env, "PLACER_DAEMON_DRAM_BUDGET": bad})
    (tmp_path / "bad.toml").write_text('dram_budget = "lots"\n')
    with pytest.raises(ConfigError, match="bad.toml: dram_budget = 'lots'"):
        load_config(tmp_path / "bad.toml", environ={})
    for good in ("25%", "8GiB", "0%", "65536"):
        assert load_config(environ={**env, "PLACER_DAEMON_DRAM_BUDGET": good}).dram_budget == good
    with pytest.raises(ConfigError, match="interval"):
        load_config(environ={**env, "PLACER_DAEMON_INTERVAL": "nan"})


def test_the_command_line_wins_over_environment_and_file(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text("interval = 2.0\nmigrate = true\nrank_every = 3.0\n")
    env = {"PLACER_DAEMON_INTERVAL": "1.5", "PLACER_DAEMON_RANK_EVERY": "4.0"}
    cfg = load_config(tmp_path / "d.toml", env, overrides={"interval": 0.5, "migrate": False})
    assert (cfg.interval, cfg.migrate, cfg.rank_every) == (0.5, False, 4.0)


def test_a_bad_dram_budget_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    env = {**d.env, "PLACER_DAEMON_DRAM_BUDGET": "xyz"}
    try:
        p = subprocess.run(
            [PY, "-m", "placer", "daemon"], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon started with dram_budget = xyz")
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "dram_budget" in lines[0] and "xyz" in lines[0]


@pytest.mark.slow
def test_sighup_keeps_flags_and_refuses_a_bad_reload(
    daemon_factory: Callable[..., DaemonProc],
) -> None:
    """Issue 16 items 3 and 15: a reload kept neither the flags nor the old config."""
    d = daemon_factory(perf=False)
    d.args = ["--interval", "0.5", "--no-migrate"]
    d.start()
    assert d.proc is not None
    cfg = d.status()["config"]
    assert (cfg["interval"], cfg["migrate"]) == (0.5, False)

    def reloads(event: str, n: int) -> list[dict[str, Any]]:
        got = [e for e in d.log_lines() if e.get("event") == event]
        return got if len(got) >= n else []

    # a budget that does not read: the old config stays, one error line
    d.write_config({"metrics": "127.0.0.1:0", "dram_budget": "xyz", "perf": False})
    d.proc.send_signal(signal.SIGHUP)
    failed = wait_for(lambda: reloads("reload_failed", 1))
    assert "dram_budget" in failed[0]["error"]
    assert d.status()["config"]["dram_budget"] == "50%"

    # a good file: its values apply, the flags still win
    d.write_config({"metrics": "127.0.0.1:0", "migrate_mb_per_s": 64.0, "perf": False})
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads("reloaded", 1))
    cfg = d.status()["config"]
    assert (cfg["interval"], cfg["migrate"], cfg["migrate_mb_per_s"]) == (0.5, False, 64.0)
    assert d.stop() == 0


# --------------------------------------------------------------------------- store outages
class _Writer:
    """A store writer whose flushes fail or succeed as the test says."""

    def __init__(self, results: list[bool]) -> None:
        self.results = results
        self.failures = 0
        self.last_error = "locked"
        self.dropped = 0
        self.written = 0

    def flush(self, deadline: float) -> bool:
        ok = self.results.pop(0)
        self.failures += not ok
        return ok

    def pending(self) -> int:
        return 0


def test_every_store_outage_is_announced_and_its_end_too() -> None:
    """Issue 16 item 16: the second outage logged ``store_back`` only."""
    logged: list[str] = []
    outages = [False, False, True, True, False, True, False, False, False, True]
    d = SimpleNamespace(
        job_list=list,
        sensor_env=SimpleNamespace(starts_left=0),
        writer=_Writer(outages),
        cfg=SimpleNamespace(interval=1.0),
        log=lambda _level, event, **_f: logged.append(event),
        telemetry=SimpleNamespace(add_tick=lambda *_a: None),
        metrics=None,
    )
    loop = Loop(d)  # type: ignore[arg-type]
    for _ in outages[:]:
        loop.tick()
    assert logged == ["store_unavailable", "store_back"] * 3
