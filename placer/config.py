"""Where placer keeps its state: the store URL and the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "PLACER_STORE"
DATA_DIR_ENV = "PLACER_DATA_DIR"


def data_dir() -> Path:
    """The user's placer data directory (XDG data home unless ``PLACER_DATA_DIR`` is set)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir  # lazy: heavy

    return Path(user_data_dir("placer", appauthor=False))


def default_store_url() -> str:
    """SQLite file in the data directory: the embedded store every fresh install uses."""
    return f"sqlite:///{data_dir() / 'placer.db'}"


def resolve_store_url(cli_value: str | None) -> str:
    """``--store`` wins over ``PLACER_STORE``, which wins over the embedded default."""
    if cli_value:
        return cli_value
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    return default_store_url()
