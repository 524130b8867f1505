"""The store: migrations round trip, schema matches the models, Optuna shares the database."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select

from placer.errors import MigrationError
from placer.store import Store
from placer.store.migrate import VERSION_TABLE
from placer.store.models import Application, Base, Run


def _placer_tables(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {t for t in inspect(conn).get_table_names() if t.startswith("placer_")}


def test_upgrade_reaches_head_and_matches_models(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.current_revision() is None
        store.upgrade()
        assert store.current_revision() == store.head_revision()
        model_tables = set(Base.metadata.tables)
        assert model_tables <= _placer_tables(store) | {VERSION_TABLE}
        store.check()  # alembic check: no difference between models and migrated schema


def test_round_trip_upgrade_downgrade_upgrade(store_url: str) -> None:
    with Store(store_url) as store:
        store.upgrade()
        with store.session() as s:
            s.add(Application(name="kept-before-downgrade"))
        store.downgrade("base")
        assert store.current_revision() is None
        assert _placer_tables(store) <= {VERSION_TABLE}
        store.upgrade()
        assert store.current_revision() == store.head_revision()
        store.check()
        with store.session() as s:
            s.add(Application(name="after-round-trip"))
        with store.session() as s:
            names = s.scalars(select(Application.name)).all()
        assert names == ["after-round-trip"]


def test_optuna_shares_the_database(store_url: str) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with Store(store_url) as store:
        store.upgrade()
        study = optuna.create_study(study_name="shared", storage=store_url)
        study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
        # Our migrations and Optuna's live side by side: upgrade again, check again.
        store.upgrade()
        assert store.current_revision() == store.head_revision()
        store.check()
        loaded = optuna.load_study(study_name="shared", storage=store_url)
        assert len(loaded.trials) == 3
        with store.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        assert "alembic_version" in tables  # Optuna's own version table
        assert VERSION_TABLE in tables


def test_session_rolls_back_on_error(store_url: str) -> None:
    with Store(store_url) as store:
        store.upgrade()
        with pytest.raises(RuntimeError), store.session() as s:
            s.add(Application(name="half"))
            s.flush()
            raise RuntimeError("boom")
        with store.session() as s:
            assert s.scalars(select(Application)).all() == []


def test_foreign_keys_are_enforced(store_url: str) -> None:
    from placer.errors import StoreError

    with Store(store_url) as store:
        store.upgrade()
        with pytest.raises(StoreError), store.session() as s:
            s.add(Run(application_id=9999, kind="profile"))


def test_unknown_revision_is_refused_before_touching_anything(store_url: str) -> None:
    with Store(store_url) as store:
        store.upgrade()
        head = store.current_revision()
        with pytest.raises(MigrationError, match="unknown schema revision"):
            store.downgrade("deadbeef")
        with pytest.raises(MigrationError, match="unknown schema revision"):
            store.upgrade("nope")
        assert store.current_revision() == head


def test_ensure_schema_refuses_a_revision_from_the_future(sqlite_url: str) -> None:
    from sqlalchemy import text

    with Store(sqlite_url) as store:
        store.upgrade()
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'zzzz9999'"))
        with pytest.raises(MigrationError, match="does not know"):
            store.ensure_schema()
