"""Run the store's Alembic migrations from code (they ship inside the wheel)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect

from placer.errors import MigrationError

#: Our own version table: Optuna's RDB storage runs its own Alembic with the default one.
VERSION_TABLE = "placer_alembic_version"


def migrations_dir() -> Path:
    """Where the ``migrations`` package lives, in a checkout or an installed wheel."""
    return Path(str(resources.files("placer.migrations")))


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` pointing at our scripts, optionally bound to a connection."""
    from alembic.config import Config  # lazy: heavy

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> Any:
    from alembic.script import ScriptDirectory  # lazy: heavy

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None
    return str(head)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when our schema was never created."""
    from alembic.runtime.migration import MigrationContext  # lazy: heavy

    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def _resolve(revision: str) -> None:
    """Fail with one clear line before touching the database if ``revision`` is unknown."""
    from alembic.util import CommandError  # lazy: heavy

    if revision in ("head", "base", "heads"):
        return
    if revision.startswith(("+", "-")) or "@" in revision:
        return  # relative revisions are resolved by Alembic against the current one
    try:
        found = script_directory().get_revision(revision)
    except CommandError as exc:
        raise MigrationError(f"unknown schema revision {revision!r}: {exc}") from None
    if found is None:
        raise MigrationError(f"unknown schema revision {revision!r}")


@contextlib.contextmanager
def _migration_errors() -> Iterator[None]:
    from alembic.util import CommandError  # lazy: heavy

    try:
        yield
    except CommandError as exc:
        raise MigrationError(f"migration failed: {exc}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command  # lazy: heavy

    _resolve(revision)
    with _migration_errors(), engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command  # lazy: heavy

    _resolve(revision)
    with _migration_errors(), engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def check(engine: Engine) -> None:
    """Raise if the ORM models and the migrated schema differ (``alembic check``)."""
    from alembic import command  # lazy: heavy

    with _migration_errors(), engine.begin() as conn:
        command.check(alembic_config(conn))
