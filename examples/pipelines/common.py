"""Shared helpers of the example pipelines: where data lives, dataset sizes, collate."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DATA_ENV = "PLACER_PIPELINE_DATA"
SIZE_ENV = "PLACER_PIPELINE_SIZE"
SIZES = ("tiny", "small")


def data_root() -> Path:
    """``$PLACER_PIPELINE_DATA`` or ``<placer data dir>/pipelines``."""
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override).expanduser()
    from placer.config import data_dir

    return data_dir() / "pipelines"


def size_name() -> str:
    """``$PLACER_PIPELINE_SIZE``: ``small`` (default, seconds-long measurements) or ``tiny``."""
    from placer.errors import ConfigError

    size = os.environ.get(SIZE_ENV, "small")
    if size not in SIZES:
        raise ConfigError(f"{SIZE_ENV}={size!r}: use one of {', '.join(SIZES)}")
    return size


def cached_dataset(name: str, params: dict[str, Any], make: Callable[[Path], None]) -> Path:
    """Generate a dataset once into ``<root>/<name>-<size>``; reuse it while params match.

    Writes into a temporary directory first and renames it, so an interrupted generation
    never leaves a half dataset that looks complete.
    """
    target = data_root() / f"{name}-{params['size']}"
    marker = target / "params.json"
    want = json.dumps(params, sort_keys=True)
    if marker.exists() and marker.read_text() == want:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    import shutil

    make(tmp)
    (tmp / "params.json").write_text(want)
    if marker.exists() and marker.read_text() == want:  # another process finished first
        shutil.rmtree(tmp)
        return target
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (marker.exists() and marker.read_text() == want):
            raise
    return target


def stack_collate(batch: list[np.ndarray]) -> np.ndarray:
    """Stack equally shaped arrays into one batch array."""
    return np.stack(batch)


def concat_collate(batch: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Concatenate chunk dicts along rows; ``num_samples`` says how many rows."""
    out: dict[str, Any] = {k: np.concatenate([b[k] for b in batch]) for k in batch[0]}
    out["num_samples"] = int(len(next(iter(out.values()))))
    return out
