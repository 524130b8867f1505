"""What every area of the repository shares: the race-free insert.

One implementation of "insert unless a row with this unique key exists", so parallel
writers (profilers, daemons, tuners on one PostgreSQL store) never lose a transaction to
a unique-key collision, and a batch re-sent after a crash inserts nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def insert_ignore(
    session: Session, table: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """INSERT ``rows`` in one statement; a row whose unique ``keys`` exist already is skipped.

    PostgreSQL and SQLite: ``INSERT ... ON CONFLICT DO NOTHING``; MySQL: ``INSERT IGNORE``;
    any other backend: row by row, read first (not race-free there).
    """
    if not rows:
        return
    values = [dict(r) for r in rows]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(table).on_conflict_do_nothing(index_elements=list(keys)), values)
    elif dialect == "sqlite":
        session.execute(
            sqlite_insert(table).on_conflict_do_nothing(index_elements=list(keys)), values
        )
    elif dialect == "mysql":
        session.execute(insert(table).prefix_with("IGNORE"), values)
    else:
        for row in values:
            where = [getattr(table, k) == row[k] for k in keys]
            if session.scalar(select(table).where(*where)) is None:
                session.add(table(**row))
                session.flush()
