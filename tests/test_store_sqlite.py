"""The embedded SQLite store: settings, file location checks, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from placer.errors import StoreError
from placer.store import Store
from placer.store.models import Application


def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def test_missing_file_is_not_created_when_not_asked(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "placer.db"
    with pytest.raises(StoreError, match="does not exist"):
        Store(f"sqlite:///{path}", create=False)
    assert not path.parent.exists()


def test_read_only_directory_gives_one_clear_error(readonly_dir: Path) -> None:
    path = readonly_dir / "placer.db"
    with pytest.raises(StoreError, match="not writable"):
        Store(f"sqlite:///{path}")
    assert not path.exists()


def _writer(url: str, prefix: str, n: int) -> None:
    store = Store(url)
    for i in range(n):
        with store.session() as s:
            # Read then write in one transaction: the pattern that fails with
            # "database is locked" under deferred transactions.
            s.scalar(select(func.count()).select_from(Application))
            s.add(Application(name=f"{prefix}-{i}"))
    store.dispose()


def test_two_processes_write_at_once_without_database_locked(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.upgrade()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(sqlite_url, p, 150)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Store(sqlite_url) as store, store.session() as s:
        assert s.scalar(select(func.count()).select_from(Application)) == 300


def test_missing_directory_is_an_error_unless_asked(tmp_path: Path) -> None:
    """A typo in a URL must not start a new, empty store in a new directory."""
    path = tmp_path / "typo" / "placer.db"
    with pytest.raises(StoreError, match="does not exist.*placer db init"):
        Store(f"sqlite:///{path}")
    assert not path.parent.exists()
    with Store(f"sqlite:///{path}", create_dirs=True):
        pass
    assert path.parent.is_dir()


def test_the_data_directory_is_created_for_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    from placer.config import default_store_url

    with Store(default_store_url()):
        pass
    assert (tmp_path / "data").is_dir()
