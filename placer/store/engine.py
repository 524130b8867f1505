"""Engines for the store: any SQLAlchemy URL, with the SQLite settings an embedded store needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from placer.config import data_dir
from placer.errors import ConfigError, StoreError

SQLITE_BUSY_TIMEOUT_MS = 60_000


def parse_url(url: str) -> URL:
    """Parse a store URL; ``postgresql://`` means psycopg 3 (the only driver we ship)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {url!r}: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | URL) -> str:
    """The URL as it may be shown to people: with any password masked."""
    parsed = parse_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def sqlite_path(parsed: URL) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory or other backends."""
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _is_data_dir(path: Path) -> bool:
    return os.path.abspath(path) == os.path.abspath(data_dir())


def check_sqlite_location(path: Path, create: bool, create_dirs: bool = False) -> None:
    """Refuse early, with one clear line, where SQLite would fail obscurely or half-way.

    A new file may go in an existing directory; a missing directory is made only for the
    data directory (the default store) or when asked (``create_dirs``, ``placer db init``):
    elsewhere it is most likely a typo in the URL, which must not start a new history.
    """
    if path.exists():
        if path.is_dir():
            raise StoreError(f"store path {path} is a directory, not a SQLite file")
        if not os.access(path, os.R_OK):
            raise StoreError(f"store file {path} is not readable")
        return
    if not create:
        if not path.parent.exists():
            raise StoreError(
                f"store directory {path.parent} does not exist (a typo in the store URL?); "
                "run `placer db init` to create the store there"
            )
        raise StoreError(f"store file {path} does not exist; run `placer db upgrade` to create it")
    parent = path.parent
    if not parent.exists():
        if not (create_dirs or _is_data_dir(parent)):
            raise StoreError(
                f"store directory {parent} does not exist (a typo in the store URL?); "
                "create it, or run `placer db init` to create the store there"
            )
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create store file {path}: directory {parent} is not writable")


def queue_sqlite_writers(engine: Engine, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """Make SQLite writers on ``engine`` queue on the busy timeout instead of failing.

    SQLite cannot wait for a lock when a deferred read transaction later wants to write
    (it fails at once with "database is locked"); ``BEGIN IMMEDIATE`` takes the write lock
    at the start, so concurrent writers queue on the busy timeout instead. Used for the
    store's engines and for the engine of Optuna's storage on the same file; connections
    opened before the call do not get it (dispose the engine's pool).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _install_sqlite_settings(engine: Engine) -> None:
    """Writers that queue (:func:`queue_sqlite_writers`), WAL and foreign keys."""
    queue_sqlite_writers(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


def limit_lock_waits(engine: Engine, seconds: float) -> None:
    """Calls on ``engine`` wait at most ``seconds`` for a lock (SQLite) or a statement.

    The daemon sets this so a locked or slow store delays one tick, not the loop: its
    writes stay queued and are retried (:mod:`placer.daemon.ingest`).
    """
    ms = int(seconds * 1000)
    dialect = engine.dialect.name
    if dialect == "sqlite":

        @event.listens_for(engine, "connect")
        def _timeout(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout = {ms}")
            cur.close()
    elif dialect == "postgresql":

        @event.listens_for(engine, "connect")
        def _pg_timeout(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cur:
                cur.execute(f"SET statement_timeout = {ms}")
                cur.execute(f"SET lock_timeout = {ms}")
            dbapi_connection.commit()


def create_store_engine(
    url: str, *, create: bool = True, create_dirs: bool = False, **kwargs: Any
) -> Engine:
    """An engine for ``url``; for SQLite, checks the file location first (see above)."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        check_sqlite_location(path, create=create, create_dirs=create_dirs)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    elif parsed.drivername.startswith("postgresql"):
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 5)
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"store URL {display_url(parsed)} needs the Python module {exc.name!r}; "
            f"install the matching extra, e.g. `pip install 'placer[postgres]'`"
        ) from None
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {display_url(parsed)}: {exc}") from None
    if parsed.drivername.startswith("sqlite"):
        _install_sqlite_settings(engine)
    return engine
