"""Hostile but fair input (issue 16): every case is one line and exit 2, or runs right.

Programs with odd names, special files as targets, huge numbers, deep JSON, missing NUMA
nodes, parallel writers, a placer killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from placer import cli
from placer.act.bind import check_plan_nodes
from placer.cli.profile import objects_document
from placer.collectors.profile import ingest, session
from placer.collectors.profile.runner import preload_exec
from placer.collectors.shim.log import read_log
from placer.daemon.config import load_config
from placer.errors import ConfigError, InvalidInputError
from placer.placement.planfile import parse_plan, read_plan
from placer.store import Store
from tests.shim_logs import small_shim_log


def _plan(**nodes: int) -> dict[str, object]:
    return {
        "format": "placer-plan",
        "version": 1,
        "build_id": "",
        "budget": {"bytes": 0, "fraction": 0.0, "footprint_bytes": 1},
        "nodes": {"dram": 0, "slow": 0, "default_tier": "dram", **nodes},
        "decisions": [],
    }


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stderr), argparse exits included."""
    capsys.readouterr()
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("placer: error: "), err
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PLACER_STORE", raising=False)
    return tmp_path / "data"


@pytest.fixture(scope="module")
def shim_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real shim log of three allocations (malloc, calloc, realloc)."""
    return small_shim_log(tmp_path_factory.mktemp("log"))


# ------------------------------------------------------------------ 1: program "x=y"
def test_program_path_with_equals_sign_runs_that_program(tmp_path: Path) -> None:
    """env(1) read `./x=y` as an assignment and ran `/bin/echo INJECTED` instead."""
    shutil.copy("/bin/false", tmp_path / "x=y")
    argv = preload_exec("", ["./x=y", "/bin/echo", "INJECTED"])
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert "INJECTED" not in r.stdout
    assert r.returncode == 1  # /bin/false ran


@pytest.mark.slow
def test_profile_of_x_equals_y_under_perf(run_placer: Any, shim_log: Path, tmp_path: Path) -> None:
    shutil.copy("/bin/false", tmp_path / "x=y")
    r = run_placer("profile", "--", "./x=y", "/bin/echo", "INJECTED", cwd=tmp_path)
    assert "INJECTED" not in r.stdout
    assert r.returncode == 1, r.stderr


# ------------------------------------------------------------- 4: report targets
def test_report_refuses_special_file_targets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "real.html").write_text("keep")
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "real.html")
    for target in (fifo, link):
        code, err = _main(capsys, "report", "1", "-o", str(target))
        assert code == 2
        assert "not a regular file" in _one_line(err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert link.is_symlink() and (tmp_path / "real.html").read_text() == "keep"


# ---------------------------------------------------------- 9: parallel writers
@pytest.mark.postgres
def test_parallel_profiles_on_a_fresh_postgres_store_lose_no_run(pg_url: str) -> None:
    """8 `placer profile` at once: get-or-create of host and application must not race."""
    Store(pg_url).upgrade()
    stores = [Store(pg_url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    ids: list[int] = []
    errors: list[BaseException] = []

    def profile(store: Store) -> None:
        barrier.wait()
        try:
            ids.append(
                ingest.begin_run(
                    store, app_name="same", command=["x"], binary_path="/x", build_id="", inputs={}
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=profile, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.dispose()
    assert not errors, errors
    assert len(set(ids)) == 8


# ------------------------------------------------------------------ 10: SIGKILL
def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.slow
def test_sigkill_to_placer_kills_the_program_and_abandons_the_run(
    run_placer: Any, placer_env: dict[str, str], shim_log: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    script = tmp_path / "prog"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n")
    script.chmod(0o755)
    work = tmp_path / "tmp"
    work.mkdir()
    env = dict(placer_env, TMPDIR=str(work))
    placer = subprocess.Popen(
        [sys.executable, "-m", "placer", "profile", "--", str(script)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline and placer.poll() is None
            time.sleep(0.05)
        program = int(pidfile.read_text())
        placer.send_signal(signal.SIGKILL)
        placer.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(program) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(program), "the program outlived placer"
    finally:
        placer.kill()
        placer.wait()
    assert list(work.glob("placer-profile-*"))  # left behind by the killed placer
    doc = json.loads(run_placer("runs", "--format", "json", check=True, env=env).stdout)
    (run,) = doc["runs"]
    assert run["status"] == "abandoned"
    assert "ended without finishing" in run["signals"]["error"]
    assert not list(work.glob("placer-profile-*"))


# ------------------------------------------------------------ 11: corrupted logs
def test_log_with_values_beyond_64_bits_is_one_clear_error(shim_log: Path, tmp_path: Path) -> None:
    """A size of 2**63 once ended as OverflowError (exit 1) while storing the run."""
    data = bytearray(shim_log.read_bytes())
    log = read_log(shim_log)
    size = log.allocs[0].size.to_bytes(8, "little")
    at = data.index(size)
    data[at : at + 8] = (2**63 + 5).to_bytes(8, "little")
    bad = tmp_path / "shim.1.log"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="impossible value"):
        read_log(bad)


def test_unreadable_log_fails_the_run_and_cleans_up(
    shim_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    def corrupt(workdir: Path) -> list[object]:
        for p in workdir.glob("shim.*.log"):
            p.write_bytes(b"GARBAGE!" + p.read_bytes()[8:])
        return [read_log(p) for p in sorted(workdir.glob("shim.*.log"))]

    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    monkeypatch.setattr(session, "_read_logs", corrupt)
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    store.upgrade()
    prog = shim_log.parent / "p"
    with pytest.raises(InvalidInputError, match="not a placer shim log") as err:
        session.run_profile(store, session.ProfileRequest([str(prog)], perf=False))
    assert "\n" not in str(err.value)
    doc = objects_document(store, 1)
    assert doc["objects"] == []
    assert doc["run"]["status"] == "failed"
    assert "not a placer shim log" in doc["run"]["signals"]["error"]
    assert list(work.iterdir()) == []  # raw files cleaned


# -------------------------------------------------------- 12: one line, exit 2
def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["runs", "--bogus"], ["nosuchcommand"], ["runs", "--limit", "x"], []):
        code, err = _main(capsys, *args)
        assert code == 2
        assert "usage:" not in _one_line(err)


def test_out_of_range_and_non_utf8_values_exit_2(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, err = _main(capsys, "runs", "--limit", "99999999999999999999999")
    assert code == 2 and "--limit" in _one_line(err)
    code, err = _main(capsys, "objects", str(2**70))
    assert code == 2 and "out of range" in _one_line(err)
    code, err = _main(capsys, "profile", "--name", "n\udcff", "--", "true")
    assert code == 2 and "UTF-8" in _one_line(err)
    code, err = _main(capsys, "profile", "--no-perf", "--", "./a\udcffb")
    assert code == 2 and "UTF-8" in _one_line(err)
    assert not data_dir.exists() or not list(data_dir.rglob("*.db-wal"))


def test_daemon_settings_are_checked_at_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "empty.toml").write_text("")
    none = str(tmp_path / "empty.toml")
    with pytest.raises(ConfigError, match="dram_budget"):
        load_config(environ={"PLACER_DAEMON_DRAM_BUDGET": "xyz", "PLACER_DAEMON_CONFIG": none})
    with pytest.raises(ConfigError, match="between 0% and 100%"):
        load_config(environ={"PLACER_DAEMON_DRAM_BUDGET": "150%", "PLACER_DAEMON_CONFIG": none})
    ok = {"PLACER_DAEMON_DRAM_BUDGET": "8GiB", "PLACER_DAEMON_CONFIG": none}
    assert load_config(environ=ok).dram_budget == "8GiB"
    code, err = _main(capsys, "daemon", "--metrics", "127.0.0.1:99999")
    assert code == 2 and "99999" in _one_line(err)


def test_hostile_plans_are_refused_before_the_program_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path
) -> None:
    marker = tmp_path / "ran"
    plans = {
        "deep": "[" * 100_000,
        "huge-node": json.dumps(_plan(slow=2**70)),
        "nan": json.dumps(_plan()).replace('"fraction": 0.0', '"fraction": NaN'),
    }
    for name, text in plans.items():
        (tmp_path / name).write_text(text)
        code, err = _main(capsys, "run", "--plan", str(tmp_path / name), "--", "touch", str(marker))
        assert code == 2, name
        _one_line(err)
        assert not marker.exists(), name


def test_plan_from_a_device_is_refused_unread() -> None:
    """`placer run --plan /dev/zero` grew to 4.8 GB."""
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_plan(Path("/dev/zero"))


# --------------------------------------------------------------- 13: chunks
def test_chunk_smaller_than_a_page_is_refused() -> None:

    with pytest.raises(InvalidInputError, match="smaller than a page"):
        session.run_profile(None, session.ProfileRequest(["true"], chunk=1, perf=False))


def test_chunk_count_is_capped(
    shim_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "MAX_CHUNK_OBJECTS", 100)
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    store.upgrade()
    run_id = ingest.begin_run(
        store, app_name="p", command=["p"], binary_path="/p", build_id="", inputs={}
    )
    with pytest.raises(InvalidInputError, match="use a larger --chunk"):
        ingest.ingest_profile(
            store,
            run_id,
            ingest.ProfileInputs(logs=[read_log(shim_log)], chunk_size=4096),
            ingest.RunOutcome("succeeded", 0, None, 0.1),
        )


# --------------------------------------------------------- 14: read commands
@pytest.mark.parametrize("command", [["runs"], ["objects", "1"], ["pipelines"]])
def test_read_commands_do_not_create_a_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "x.db"
    code, err = _main(capsys, "--store", f"sqlite:///{path}", *command)
    assert code == 2 and "does not exist" in _one_line(err)
    assert not path.exists()


def test_empty_store_url_is_an_error(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, err = _main(capsys, "--store", "", "runs")
    assert code == 2 and "--store is empty" in _one_line(err)
    assert not data_dir.exists()


# ------------------------------------------------------------- 15: NUMA nodes
def test_recommend_refuses_a_node_this_host_lacks(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, err = _main(capsys, "recommend", "1", "--dram-budget", "50%", "--dram-node", "999")
    assert code == 2 and "999" in _one_line(err)


def test_applying_a_plan_for_a_missing_node_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path
) -> None:
    with pytest.raises(InvalidInputError, match="does not have"):
        check_plan_nodes(parse_plan(json.dumps(_plan(slow=999))), "plan p")
    marker = tmp_path / "ran"
    (tmp_path / "p.json").write_text(json.dumps(_plan(slow=999)))
    code, err = _main(capsys, "run", "--plan", str(tmp_path / "p.json"), "--", "touch", str(marker))
    assert code == 2 and "999" in _one_line(err)
    assert not marker.exists()
