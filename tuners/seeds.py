"""The first trials of a tuning study: the analysis's config, its lean variants, the naive
config with the analysis's cache, neighbours (:func:`seed_configs`), and how many random
start-up trials TPE gets after them (:func:`startup_trials`).

Kept apart from :mod:`placer.tuners.tuning` (the study's driver): these are pure
functions of the pipeline's knobs and the analysis.
"""

from __future__ import annotations

import math
from typing import Any

from placer.contracts.pipeline import Config, IntKnob, PipelineDef
from placer.tuners.analysis import Analysis


def neighbours(defn: PipelineDef, analysis: Analysis, config: Config, limit: int) -> list[Config]:
    """Configs next to the analysis's: the LP bottleneck ±1 worker, prefetch ×2, no cache."""
    out: list[Config] = []
    knobs = defn.knobs

    def add(c: Config) -> None:
        if c != config and c not in out and len(out) < limit:
            out.append(c)

    stage_knob = {s.name: s.parallelism_knob or f"parallelism.{s.name}" for s in defn.stages}
    busiest = sorted(
        (s for s in analysis.stages if stage_knob.get(s.name) in knobs),
        key=lambda s: -s.cores,
    )
    for st in busiest[:1]:
        key = stage_knob[st.name]
        knob = knobs[key]
        if isinstance(knob, IntKnob):
            for delta in (1, -1):
                value = int(config.get(key, 1)) + delta
                if knob.low <= value <= knob.high:
                    add({**config, key: value})
    pool = knobs.get("num_workers")
    if isinstance(pool, IntKnob):
        for delta in (1, -1):
            value = int(config.get("num_workers", 0)) + delta
            if pool.low <= value <= pool.high:
                add({**config, "num_workers": value})
    depth = knobs.get("prefetch")
    if isinstance(depth, IntKnob):
        value = min(max(int(config.get("prefetch", 1)) * 2, depth.low), depth.high)
        add({**config, "prefetch": value})
    if config.get("cache") is not None:
        add({**config, "cache": None})
    return out


def _lean(defn: PipelineDef, config: Config, *, inline: bool) -> Config:
    """``config`` with its prefetch depths at their knobs' low end and, with ``inline``,
    every parallelism knob at its low end too (torchdata.nodes runs a one-worker stage
    inline in its reader's thread; DataLoader's ``num_workers=0`` loads in the main
    process), the cache kept."""
    out = dict(config)
    pools = {s.parallelism_knob or f"parallelism.{s.name}" for s in defn.stages}
    for key, knob in defn.knobs.items():
        if not isinstance(knob, IntKnob):
            continue
        if key in ("prefetch", "prefetch_factor"):
            out[key] = knob.low
        elif inline and key == "num_workers":
            out[key] = knob.low
        elif inline and key in pools:
            out[key] = max(knob.low, 1)
    return out


def seed_configs(
    defn: PipelineDef,
    analysis: Analysis,
    config: Config,
    n_trials: int,
    neighbours_limit: int = 2,
) -> list[tuple[Config, str]]:
    """The configs enqueued before the sampler, each with its origin, best bet first.

    The analysis's config; the same with no prefetch (the 2-core grids' best torchdata
    configs had prefetch 0: where the stages hold the GIL a prefetch thread only adds
    hand-offs); the same inline (no pools: the analysis's threads can cost more than they
    give); the naive config with the analysis's cache; then the analysis's neighbours
    (up to ``neighbours_limit``, :func:`neighbours`). They take at most half of
    ``n_trials`` (rounded up; two of a budget of two or three), so the sampler explores
    the whole space with the rest; duplicates are dropped.
    """
    room = max(min(n_trials, 2), math.ceil(n_trials / 2))
    out: list[tuple[Config, str]] = []

    def add(c: Config, origin: str) -> None:
        if len(out) < room and all(_effective(c) != _effective(seen) for seen, _ in out):
            out.append((c, origin))

    add(config, "analysis")
    add(_lean(defn, config, inline=False), "no-prefetch")
    add(_lean(defn, config, inline=True), "inline")
    naive = dict(defn.naive_config)
    if config.get("cache") is not None:
        naive["cache"] = config["cache"]
    if all(_in_knob(defn.knobs.get(k), v) for k, v in naive.items() if k in defn.knobs):
        add(naive, "naive")
    for extra in neighbours(defn, analysis, config, neighbours_limit):
        add(extra, "neighbour")
    return out


def _effective(config: Config) -> Config:
    """``config`` less the knobs it leaves unused: without workers DataLoader has no
    prefetch_factor or persistent_workers, so two such configs run the same."""
    if config.get("num_workers") == 0:
        return {
            k: v for k, v in config.items() if k not in ("prefetch_factor", "persistent_workers")
        }
    return config


def startup_trials(n_trials: int, n_seeds: int) -> int:
    """TPE's random start-up trials, counted with the enqueued seeds (Optuna counts every
    finished trial): a third of what the seeds leave, at least one, so the sampler sees
    the whole space before it models around the seeds."""
    return n_seeds + max(1, (n_trials - n_seeds) // 3)


def _in_knob(knob: Any, value: Any) -> bool:
    """Whether ``value`` is in the knob's range (a naive config may sit outside it)."""
    if isinstance(knob, IntKnob):
        return isinstance(value, int) and knob.low <= value <= knob.high
    if knob is None:
        return True
    return value in getattr(knob, "choices", (value,))
