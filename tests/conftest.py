"""Shared fixtures: a fresh store URL on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ENV = "PLACER_TEST_PG_URL"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPO = Path(__file__).resolve().parent.parent


def _pg_admin_url() -> str:
    return os.environ.get(PG_ENV, PG_DEFAULT)


def _pg_unavailable_reason() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'placer[postgres]')"
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(_pg_admin_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {_pg_admin_url()} ({PG_ENV}) is not reachable: {first}"
    return None


@pytest.fixture(scope="session")
def pg_available() -> str:
    reason = _pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return _pg_admin_url()


@pytest.fixture
def pg_url(pg_available: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(pg_available, isolation_level="AUTOCOMMIT")
    name = f"placer_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_available).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    (tmp_path / "store").mkdir(exist_ok=True)  # an explicit URL's directory must exist
    return f"sqlite:///{tmp_path / 'store' / 'placer.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded SQLite store and on PostgreSQL."""
    if request.param == "sqlite":
        (tmp_path / "store").mkdir(exist_ok=True)  # an explicit URL's directory must exist
        return f"sqlite:///{tmp_path / 'store' / 'placer.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def placer_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI with its data directory inside the test's tmp dir."""
    env = dict(os.environ)
    env["PLACER_DATA_DIR"] = str(tmp_path / "data")
    env.pop("PLACER_STORE", None)
    return env


@pytest.fixture
def run_placer(placer_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Run ``placer ARGS`` in a subprocess, as a user would; returns CompletedProcess."""

    def run(*args: str, check: bool = False, **kw: object) -> subprocess.CompletedProcess[str]:
        env = dict(placer_env)
        env.update(kw.pop("env", {}) or {})  # type: ignore[arg-type]
        result = subprocess.run(
            [sys.executable, "-m", "placer", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=kw.pop("timeout", 300),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"placer {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can create files in, root included (a read-only tmpfs if root)."""
    path = tmp_path / "readonly"
    path.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
            capture_output=True,
        )
        if mounted.returncode != 0:
            pytest.skip("running as root and cannot mount a read-only tmpfs")
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], capture_output=True)
    else:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
