"""placer from Python: tune and profile as the CLI does, read a plan.

Thin wrappers over what ``placer tune``, ``placer profile`` and ``placer run --plan`` call,
with the store found the way the CLI finds it (``store=`` wins over ``PLACER_STORE``,
which wins over the SQLite file in the data directory). ``import placer`` re-exports
these names (and the pipeline builders of :mod:`placer.collectors.pipeline.apply`) lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.collectors.profile.session import ProfileRequest, run_profile
from placer.config import resolve_store_url
from placer.contracts.pipeline import PipelineDef
from placer.contracts.units import parse_size
from placer.placement import planfile
from placer.store import Store
from placer.tuners.tuning import TuneResult
from placer.tuners.tuning import tune as run_tune

__all__ = ["ProfileResult", "profile", "read_plan", "tune"]


def tune(
    pipeline: str | PipelineDef,
    *,
    store: str | None = None,
    output: str | os.PathLike[str] | None = None,
    trials: int = 12,
    budget_cores: float | None = None,
    budget_memory: int | str | None = None,
    workers: int = 1,
    study: str | None = None,
    trial_seconds: float = 3.0,
    epochs: int = 10,
    seed: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Profile, analyze and tune ``pipeline`` as ``placer tune`` does; with ``output``,
    write the best config there (the file :func:`placer.build_dataloader` applies).

    ``pipeline`` is what ``placer tune`` accepts (an example name or
    ``package.module:function``) or a :class:`~placer.contracts.pipeline.PipelineDef`
    built in this process (then ``workers`` must be 1: worker processes rebuild it by
    name). ``budget_memory`` is bytes or a size such as ``"4GiB"``.
    """
    memory = (
        parse_size(budget_memory, "budget_memory")
        if isinstance(budget_memory, str)
        else budget_memory
    )
    defn = pipeline if isinstance(pipeline, PipelineDef) else None
    result = run_tune(
        defn.name if defn is not None else str(pipeline),
        resolve_store_url(store),
        budget_cores=budget_cores,
        budget_memory_bytes=memory,
        n_trials=trials,
        workers=workers,
        study_name=study,
        trial_seconds=trial_seconds,
        epochs=epochs,
        seed=seed,
        on_progress=on_progress,
        defn=defn,
    )
    if output is not None and result.best_config is not None:
        result.write_config(output)
    return result


@dataclass(frozen=True)
class ProfileResult:
    """One profiled run: its id in the store (``placer objects RUN``) and how it ended."""

    run_id: int
    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)


def profile(
    command: Sequence[str],
    *,
    store: str | None = None,
    name: str | None = None,
    deep: bool = False,
    chunk: int | str = 0,
    sample_period_ms: int | None = None,
    perf: bool = True,
) -> ProfileResult:
    """Run ``command`` under the allocation shim and store its profile, as
    ``placer profile -- COMMAND`` does; returns the run id to recommend a plan from."""
    request = ProfileRequest(
        command=[str(c) for c in command],
        name=name,
        deep=deep,
        chunk=parse_size(chunk, "chunk") if isinstance(chunk, str) else chunk,
        sample_period_ms=sample_period_ms,
        perf=perf,
    )
    with Store(resolve_store_url(store)) as opened:
        opened.ensure_schema()
        run_id, code, summary = run_profile(opened, request)
    return ProfileResult(run_id=run_id, exit_code=code, summary=summary)


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A placement plan file (``placer recommend -o``), validated; ``InvalidInputError``
    with one line if it cannot be read or is not a plan."""
    return planfile.read_plan(Path(path))
