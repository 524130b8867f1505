"""From an analysis to configs: the first trial's knobs and what a config would cost.

Pure computation on :class:`placer.tuners.analysis.Analysis` (no I/O): the tuner seeds its study
with :func:`config_from_analysis` and skips configs whose :func:`core_demand` or
:func:`cache_bytes` cannot fit the budget; the daemon picks a job's first trial the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, PipelineDef
from placer.tuners.analysis import EPS_CPU, Analysis, gil_seconds_per_batch


def _knob_clip(knob: Any, value: Any) -> Any:
    if isinstance(knob, IntKnob):
        return int(min(max(int(value), knob.low), knob.high))
    if isinstance(knob, ChoiceKnob):
        if value in knob.choices:
            return value
        numeric = [
            c for c in knob.choices if isinstance(c, int | float) and not isinstance(c, bool)
        ]
        if numeric and isinstance(value, int | float) and not isinstance(value, bool):
            return min(numeric, key=lambda c: abs(c - value))
        return knob.choices[0]
    return value


def config_from_analysis(defn: PipelineDef, analysis: Analysis) -> Config:
    """Map the analysis onto ``defn``'s knobs (values clipped to the knobs' ranges).

    Per-stage engines get one parallelism per stage; DataLoader's one pool gets
    ``num_workers`` from Little's law over all worker-side stages (equal to the LP's core
    sum for CPU-bound stages, more for stages that wait on I/O) and ``prefetch_factor``
    from the prefetch depth spread over the workers.
    """
    config: Config = dict(defn.naive_config)
    knobs: Mapping[str, Any] = defn.knobs
    stage_by_knob = {s.parallelism_knob: s.name for s in defn.stages if s.parallelism_knob}
    for key, knob in knobs.items():
        if key.startswith("parallelism.") or key in stage_by_knob:
            name = stage_by_knob.get(key, key.removeprefix("parallelism."))
            try:
                value: Any = analysis.stage(name).parallelism
            except KeyError:
                continue
        elif key == "num_workers":
            value = analysis.workers
        elif key == "prefetch_factor":
            value = max(2, math.ceil(analysis.prefetch / max(analysis.workers, 1)))
        elif key == "prefetch":
            value = analysis.prefetch
        elif key == "cache":
            value = analysis.cache
        elif key == "persistent_workers":
            value = True
        elif key == "pin_memory":
            value = False  # tuners never see a GPU; pinning only costs on CPU-only hosts
        else:
            value = config.get(key)
            if value is None and isinstance(knob, ChoiceKnob):
                value = knob.choices[0]
            elif value is None and isinstance(knob, IntKnob):
                value = knob.low
        config[key] = _knob_clip(knob, value)
    return _fit_cores(defn, analysis, config)


def _fit_cores(defn: PipelineDef, analysis: Analysis, config: Config) -> Config:
    """Round the LP's fractional cores down where ceil() overshoots the CPU budget.

    Workers were rounded up to sustain the LP rate; if the result would use more cores
    than the budget, take one worker at a time from the stage with the most until it fits.
    """
    knobs = [k for k, v in defn.knobs.items() if isinstance(v, IntKnob)]
    par_keys = [k for k in knobs if k.startswith("parallelism.") or k == "num_workers"]
    budget = analysis.budget_cores + 1e-6
    while core_demand(defn, analysis, config) > budget:
        movable = [
            k
            for k in par_keys
            if int(config.get(k, 1)) > max(defn.knobs[k].low, 1)  # type: ignore[union-attr]
        ]
        if not movable:
            break
        key = max(movable, key=lambda k: int(config[k]))
        config[key] = int(config[key]) - 1
    return config


def predicted_rate(defn: PipelineDef, analysis: Analysis, config: Config, *, cached: bool) -> float:
    """Batches/s the config's workers could sustain if they got every core they ask for.

    The minimum over stages of workers × one worker's rate (DataLoader: the pool's workers
    over the summed per-batch time of all stages), the consumer's rate and the GIL's (one
    over the GIL-holding CPU per batch, when measured); with ``cached`` the stages up to
    the cache are skipped (steady state after the first epoch).
    """
    skip = set(_prefix(defn, config.get("cache"))) if cached else set()
    live = [s for s in analysis.stages if s.name not in skip]
    tail = (  # the consumer's rate, and the GIL's when measured
        1.0 / analysis.consumer_seconds_per_batch
        if analysis.consumer_seconds_per_batch > EPS_CPU
        else math.inf
    )
    held = gil_seconds_per_batch(live) + analysis.consumer_seconds_per_batch * (
        analysis.consumer_gil_share or 0.0
    )
    if held > EPS_CPU:  # threads of one interpreter: its GIL-holding CPU fits in one core
        tail = min(tail, 1.0 / held)
    if "num_workers" in config:
        wall = sum(s.wall_per_batch for s in live)
        pool = max(int(config.get("num_workers") or 0), 1) / wall if wall > 0 else math.inf
        return min(pool, tail)
    knob_of = {s.name: s.parallelism_knob or f"parallelism.{s.name}" for s in defn.stages}
    rate = math.inf
    for st in live:
        if st.worker_rate is None:
            continue
        par = (
            1
            if st.sequential
            else int(config.get(knob_of.get(st.name, ""), st.measured_parallelism))
        )
        rate = min(rate, max(par, 1) * st.worker_rate)
    return min(rate, tail)


def core_demand(defn: PipelineDef, analysis: Analysis, config: Config) -> float:
    """Cores the config would use: its predicted rate × CPU-seconds per batch, capped by
    the host's cores (threads beyond the cores time-share them, they cannot use more).

    The larger of the first epoch (every stage runs) and the cached steady state. Used to
    skip configs that cannot fit a CPU budget smaller than the host.
    """
    demand = 0.0
    skip = set(_prefix(defn, config.get("cache")))
    for cached in (False, True):
        rate = predicted_rate(defn, analysis, config, cached=cached)
        cpu = analysis.consumer_seconds_per_batch + sum(
            s.cpu_per_batch for s in analysis.stages if not (cached and s.name in skip)
        )
        demand = max(demand, rate * cpu if math.isfinite(rate) else math.inf)
    host = analysis.host_cores or math.inf
    return float(min(demand, host))


def _prefix(defn: PipelineDef, cache: Any) -> list[str]:
    names = [s.name for s in defn.stages]
    if cache not in names:
        return []
    return names[: names.index(cache) + 1]


def cache_bytes(analysis: Analysis, config: Config) -> int:
    """Memory the config's cache takes (the stage's materialized epoch output)."""
    name = config.get("cache")
    if not name:
        return 0
    try:
        return int(analysis.stage(name).materialized_bytes or 0)
    except KeyError:
        return 0
