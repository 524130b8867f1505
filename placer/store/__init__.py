"""The store: one SQL database (SQLite by default, PostgreSQL for many hosts).

``Store`` wraps an engine, turns connection failures into one-line :class:`StoreError`\\ s,
and hands out sessions whose transaction commits on success and rolls back on any error,
so a failing command never leaves half-written rows behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from placer.errors import MigrationError, StoreError, StoreUnreachableError, first_line
from placer.store import migrate
from placer.store.engine import create_store_engine, display_url, parse_url


def _first_line(exc: BaseException) -> str:
    """The driver's own message (``exc.orig``), first line; its type when it says nothing."""
    orig = getattr(exc, "orig", None) or exc
    return first_line(orig) or type(orig).__name__


class Store:
    """A placer store at ``url``; ``create=False`` refuses to create a missing SQLite file.

    A SQLite file's directory must exist unless it is the data directory or
    ``create_dirs`` is set (see :func:`placer.store.engine.check_sqlite_location`).
    """

    def __init__(self, url: str, *, create: bool = True, create_dirs: bool = False) -> None:
        self.url = url
        self.display_url = display_url(url)
        self.dialect = parse_url(url).get_backend_name()
        self.engine: Engine = create_store_engine(url, create=create, create_dirs=create_dirs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- connection --------------------------------------------------------------------
    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            message = _first_line(exc)
            if self.dialect == "sqlite":
                raise StoreError(f"store {self.display_url}: {message}") from None
            raise StoreUnreachableError(
                f"cannot reach store {self.display_url}: {message}"
            ) from None
        except DBAPIError as exc:
            raise StoreError(f"store {self.display_url}: {_first_line(exc)}") from None

    def ping(self) -> None:
        """Connect once; raise :class:`StoreUnreachableError` with the reason if that fails."""
        with self._translate_errors(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._translate_errors(), self._sessions.begin() as session:
            yield session

    # -- schema ------------------------------------------------------------------------
    def current_revision(self) -> str | None:
        with self._translate_errors():
            return migrate.current_revision(self.engine)

    @staticmethod
    def head_revision() -> str:
        return migrate.head_revision()

    def upgrade(self, revision: str = "head") -> None:
        with self._translate_errors():
            migrate.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        with self._translate_errors():
            migrate.downgrade(self.engine, revision)

    def check(self) -> None:
        with self._translate_errors():
            migrate.check(self.engine)

    def ensure_schema(self) -> None:
        """Bring the schema to head (commands that write data call this before writing)."""
        current = self.current_revision()
        head = self.head_revision()
        if current == head:
            return
        known = {rev.revision for rev in migrate.script_directory().walk_revisions()}
        if current is not None and current not in known:
            raise MigrationError(
                f"store {self.display_url} is at revision {current}, which this placer "
                f"does not know (newer placer?); refusing to touch it"
            )
        self.upgrade("head")

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


__all__ = ["Store"]
