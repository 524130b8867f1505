"""Alembic environment: always online, on the connection placer hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from placer.store.migrate import VERSION_TABLE
from placer.store.models import Base

config = context.config
target_metadata = Base.metadata


def _include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # The database may be shared (Optuna's tables live beside ours): look only at ours.
    if type_ == "table":
        return bool(name and name.startswith("placer_")) and name != VERSION_TABLE
    return True


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # plain `alembic` command line against sqlalchemy.url
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)
