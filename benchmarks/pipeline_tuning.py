"""Pipeline tuning benchmark: placer's tuner against the alternatives, side by side.

For every pipeline, in one run on this host:

- **naive**: the pipeline's naive config (no workers, no prefetch, no cache);
- **workers=cores**: the common heuristic (every parallel knob / ``num_workers`` = cores,
  the knobs' defaults otherwise, no cache);
- **analysis**: the operational analysis's config alone (placer's first trial);
- **placer**: analysis + Optuna (``placer.tuners.tuning.tune`` on a SQLite store), with at most
  a tenth of the grid's trials, once per seed (``--seeds``, default 3: the table shows the
  median of the seeds' final numbers, and placer/Optuna alone per seed);
- **optuna alone**: TPE with the same trial budget, no analysis seed, same seeds;
- **random**: random search with the same trial budget, same seeds;
- **grid**: every config of a grid over the same knobs (see :func:`grid_values` for the
  values: the full power-of-two grid would take days here) that fits the budget; with
  ``--max-grid N`` a larger grid is replaced by a seeded random sample of N configs (the
  table says "random N of M"), and the trial budget is a tenth of the sample;
- **tf.data AUTOTUNE** where a ``<name>-tfdata-autotune`` twin exists.

Every search (placer, optuna alone, random, grid) names its best the same way: its three
best trials are re-measured once and the best mean of two measurements wins
(:func:`placer.tuners.study.pick_confirmed` / ``confirm_best``; 3 extra measurements each, not
trials). Each method's chosen config is measured again at the end (``--final-runs`` runs
of ``--final-seconds``, probes off, median) so all are compared under the same conditions:
distinct configs are measured round robin (A, B, ..., A, B, ...) so load bursts hit all
alike, and methods that chose the identical config share one set of runs. Every measured
value (final runs, grid) above the analysis's upper bound is listed as a bound violation.

Every number is the tuner's objective (:func:`placer.tuners.tuning.measure_config`): samples/s
delivered to a consumer that materializes each batch (copies every array once), and, for
a config with a cache, the mean over a run of ``--epochs`` epochs from the measured first
epoch (which fills the cache) and the measured cached epochs. The grid, the searches and
the final runs all use it, so a cache is credited only with what it delivers over a run.

``--time-budget S`` schedules no new work after S seconds (what runs finishes): a row
that stopped early lists what it misses ("grid 12 of 48", "optuna alone seed 2", "final
runs 1 of 3"), pipelines never started are listed under the table. ``--list-grids``
profiles and prints each grid's size and the row's estimated time
(:func:`estimate_seconds`, from the per-measurement costs) without measuring.

    python benchmarks/pipeline_tuning.py                       # the example pipelines
    python benchmarks/pipeline_tuning.py synthetic-cpu synthetic-remote --trial-seconds 1
    python benchmarks/pipeline_tuning.py images-dataloader mypkg.loaders:pipeline \
        --max-grid 100 --time-budget 450 --seeds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, PipelineDef  # noqa: E402
from placer.errors import PlacerError, first_line  # noqa: E402
from placer.tuners.analysis import Analysis, analyze, default_memory_budget  # noqa: E402
from placer.tuners.configs import core_demand  # noqa: E402
from placer.tuners.resolve import load_pipeline, resolve_measure  # noqa: E402
from placer.tuners.study import best_trial, pick_confirmed, trial_score  # noqa: E402
from placer.tuners.tuning import (  # noqa: E402
    Budget,
    Objective,
    TrialFailed,
    confirm_best,
    measure_config,
    tune,
)

DEFAULT_PIPELINES = [
    "remote-torchdata",
    "tabular-torchdata",
    "text-torchdata",
    "images-torchdata",
    "tabular-tfdata",
    "images-tfdata",
]


def knob_values(knob: Any) -> list[Any]:
    """Grid values of a knob: integer ends and powers of two between, or every choice."""
    if isinstance(knob, ChoiceKnob):
        return list(knob.choices)
    values = {knob.low, knob.high}
    p = 1
    while p < knob.high:
        if p > knob.low:
            values.add(p)
        p *= 2
    return sorted(values)


def grid_values(defn: PipelineDef, analysis: Analysis) -> dict[str, list[Any]]:
    """The benchmark's grid: every knob, at the values that can matter on this host.

    The full power-of-two grid has up to 23,000 configs per pipeline here (days of
    measuring; a run of all six pipelines must fit in well under an hour on a shared
    2-core host), so: a stage's parallelism is searched only if the stage takes at least 10%
    of the profiled per-batch time (else kept at 1), at 1 and the powers of two up to the
    CPU budget for CPU-bound stages, at {1, 2 × cores, the knob's top} for stages that
    wait; prefetch at {its low end, 2}; DataLoader's ``num_workers`` at all powers of two;
    every choice knob (cache position, flags) fully.
    """
    total = sum(s.wall_per_batch for s in analysis.stages) or 1.0
    by_knob = {(s.parallelism_knob or f"parallelism.{s.name}"): s.name for s in defn.stages}
    out: dict[str, list[Any]] = {}
    for key, knob in defn.knobs.items():
        if isinstance(knob, ChoiceKnob):
            out[key] = list(knob.choices)
        elif key in by_knob:
            st = analysis.stage(by_knob[key])
            if st.wall_per_batch / total < 0.10:
                out[key] = [max(knob.low, min(1, knob.high))]
                continue
            waits = bool(st.worker_rate and st.core_rate and st.worker_rate < 0.5 * st.core_rate)
            # CPU-bound: 1 and powers of two up to the cores (more only time-share them);
            # stages that wait: 1, twice the cores and the knob's top.
            cores = int(max(analysis.budget_cores, 2))
            tops = (1, 2 * cores, knob.high) if waits else _pow2_upto(cores)
            vals = {v for v in tops if knob.low <= v <= knob.high}
            out[key] = sorted(vals) or [knob.low]
        elif key == "prefetch" or key == "prefetch_factor":
            out[key] = sorted({v for v in (knob.low, 2) if knob.low <= v <= knob.high})
        else:
            out[key] = knob_values(knob)
    return out


def _pow2_upto(limit: float) -> tuple[int, ...]:
    out, p = [], 1
    while p <= limit:
        out.append(p)
        p *= 2
    return tuple(out)


def grid(defn: PipelineDef, analysis: Analysis) -> list[Config]:
    values = grid_values(defn, analysis)
    keys = list(values)
    combos = itertools.product(*(values[k] for k in keys))
    return [{**defn.naive_config, **dict(zip(keys, c, strict=True))} for c in combos]


def heuristic(defn: PipelineDef, cores: int) -> Config:
    """workers = cores everywhere it can be set; no cache; knobs' defaults otherwise."""
    config = dict(defn.naive_config)
    for key, knob in defn.knobs.items():
        if isinstance(knob, IntKnob) and (key.startswith("parallelism.") or key == "num_workers"):
            config[key] = min(max(cores, knob.low), knob.high)
        elif key == "prefetch" and isinstance(knob, IntKnob):
            config[key] = min(max(2, knob.low), knob.high)
        elif key == "prefetch_factor" and isinstance(knob, IntKnob):
            config[key] = min(max(2, knob.low), knob.high)
        elif key == "cache":
            config[key] = None
    return config


def search(
    defn: PipelineDef,
    analysis: Analysis,
    budget: Budget,
    measure: Any,
    *,
    sampler: Any,
    n_trials: int,
    trial_seconds: float,
) -> tuple[Config | None, float | None]:
    """An in-memory Optuna study with ``sampler`` and no analysis seed."""
    import optuna

    from placer.tuners.study import make_pruner

    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=make_pruner())
    objective = Objective(
        defn=defn,
        analysis=analysis,
        budget=budget,
        measure=measure,
        trial_seconds=trial_seconds,
        epochs=analysis.epochs,
    )
    study.optimize(objective, n_trials=n_trials, catch=(TrialFailed,))
    # the same confirmation of the best few trials as placer's
    confirm_best(
        study, defn, measure, seconds=trial_seconds, epochs=analysis.epochs, analysis=analysis
    )
    best = best_trial(study)
    if best is None:
        return None, None
    return dict(best.user_attrs["config"]), trial_score(study, best)


def config_key(defn: PipelineDef, config: Config) -> str:
    """One key per distinct (pipeline, config): identical configs are measured once."""
    return json.dumps([defn.name, config], sort_keys=True, default=str)


def measure_finals(
    entries: dict[str, tuple[PipelineDef, Config | None]],
    measure: Any,
    runs: int,
    seconds: float,
    analysis: Analysis,
    *,
    deadline: Deadline | None = None,
) -> tuple[dict[str, float | None], dict[str, dict[str, Any]], dict[str, list[float]]]:
    """Measure every method's chosen config fairly under host noise.

    Distinct configs (:func:`config_key`) are measured once per round, round robin
    (A run 1, B run 1, ..., A run 2, ...), so a burst of load hits every method about
    alike; each method gets the median of its config's ``runs`` values (None if a run
    failed). Methods that chose the identical config share its numbers: one config has one
    true throughput. No round starts once ``deadline`` has passed. Returns (median per
    method, first-epoch/steady detail of cached configs per method, every value per
    method).
    """
    keys: dict[str, str] = {}
    unique: dict[str, tuple[PipelineDef, Config]] = {}
    for method, (defn, config) in entries.items():
        if config is None:
            continue
        key = config_key(defn, config)
        keys[method] = key
        unique.setdefault(key, (defn, config))
    values: dict[str, list[float]] = {k: [] for k in unique}
    first: dict[str, list[float]] = {k: [] for k in unique}
    steady: dict[str, list[float]] = {k: [] for k in unique}
    failed: set[str] = set()
    for _ in range(runs):
        if deadline is not None and deadline.passed():
            break
        for key, (defn, config) in unique.items():
            if key in failed:
                continue
            m, value = measure_config(
                measure,
                defn,
                config,
                seconds=seconds,
                epochs=analysis.epochs,
                analysis=analysis,
                max_batches=1_000_000,
                probes=False,
                whole_epochs=True,
            )
            if m.error or m.batches <= 0:
                failed.add(key)
                continue
            values[key].append(value)
            if m.first_epoch_samples_per_second:
                first[key].append(m.first_epoch_samples_per_second)
            if m.steady_samples_per_second:
                steady[key].append(m.steady_samples_per_second)
    final: dict[str, float | None] = {}
    details: dict[str, dict[str, Any]] = {}
    runs_of: dict[str, list[float]] = {}
    for method in entries:
        mkey = keys.get(method)
        if mkey is None or mkey in failed or not values[mkey]:
            final[method] = None
            continue
        final[method] = statistics.median(values[mkey])
        runs_of[method] = list(values[mkey])
        chosen = unique[mkey][1]
        if chosen.get("cache") is not None:
            details[method] = {
                "cache": chosen.get("cache"),
                "first_epoch": statistics.median(first[mkey]) if first[mkey] else None,
                "steady": statistics.median(steady[mkey]) if steady[mkey] else None,
            }
    return final, details, runs_of


def bound_violations(
    upper: float | None, measured: dict[str, list[float]], slack: float = 0.0
) -> list[dict[str, Any]]:
    """Every measured value above the analysis's upper bound (which must never happen)."""
    if upper is None or not math.isfinite(upper):
        return []
    out = []
    for method, vals in measured.items():
        for v in vals:
            if v > upper * (1 + slack):
                out.append({"method": method, "samples_per_second": v, "upper_bound": upper})
    return out


class Deadline:
    """``--time-budget``: no new work is scheduled once it has passed (work under way
    finishes); None never passes."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def sample_grid(configs: list[Config], max_grid: int | None, seed: int) -> list[Config]:
    """At most ``max_grid`` configs: the whole grid, or a seeded random sample of it."""
    if max_grid is None or len(configs) <= max_grid:
        return list(configs)
    return random.Random(seed).sample(configs, max_grid)


def estimate_seconds(
    grid_configs: int,
    trials: int,
    seeds: int,
    *,
    trial_seconds: float,
    final_seconds: float,
    final_runs: int,
    overhead: float = 0.5,
    searches: int = 3,
) -> float:
    """Seconds one pipeline's row should take, from the per-measurement costs.

    Each measurement costs its window plus ``overhead`` (fork, build, first batch); a
    tuner trial is two measurements (the pruning step is 35% of a trial). Per seed, each
    of the ``searches`` (placer, Optuna alone, random) runs ``trials`` trials and
    re-measures up to four; placer also profiles. The grid measures each config once and
    re-measures three; the final runs measure up to 4 + ``searches`` × ``seeds`` distinct
    configs ``final_runs`` times. A cached config's window lasts two epochs, so a
    pipeline whose epoch is longer than ``trial_seconds`` takes longer than this.
    """
    trial = 1.35 * trial_seconds + 2 * overhead
    one = trial_seconds + overhead
    per_seed = searches * (trials * trial + 4 * one) + (max(trial_seconds, 2.0) + overhead)
    grid_cost = (grid_configs + 3) * one
    finals = (4 + searches * seeds) * final_runs * (final_seconds + overhead)
    return (max(trial_seconds, 2.0) + overhead) + seeds * per_seed + grid_cost + finals


def _median(values: list[float | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return statistics.median(seen) if seen else None


def bench_one(
    name: str, args: argparse.Namespace, store_dir: Path, deadline: Deadline | None = None
) -> dict[str, Any]:
    import optuna

    deadline = deadline or Deadline(None)
    measure = resolve_measure()
    defn = load_pipeline(name)
    cores = os.cpu_count() or 1
    budget_cores = float(args.budget_cores or cores)
    # The grid depends on the profile: profile once (the tuner profiles again, as a user's
    # `placer tune` would), size the grid, then give the tuner a tenth of its trials.
    profile = measure(
        defn,
        dict(defn.naive_config),
        max_batches=1_000_000,
        max_seconds=max(args.trial_seconds, 2.0),
    )
    if profile.error:
        raise RuntimeError(f"profiling failed: {profile.error}")
    baseline = int(profile.peak_rss_bytes or 0)
    budget_mem = args.budget_mem or default_memory_budget(
        int(profile.host.free_memory_bytes), baseline
    )
    pre = analyze(
        defn,
        profile,
        budget_cores=budget_cores,
        budget_memory_bytes=budget_mem,
        baseline_memory_bytes=baseline,
        epochs=args.epochs,
    )
    full_grid = grid(defn, pre)
    configs = sample_grid(full_grid, args.max_grid, args.seed)
    # at most a tenth of the grid measured (the goal), at least the analysis trial itself
    n_trials = max(1, len(configs) // 10) if args.trials is None else args.trials
    seeds = list(range(args.seed, args.seed + args.seeds))
    estimate = estimate_seconds(
        len(configs),
        n_trials,
        len(seeds),
        trial_seconds=args.trial_seconds,
        final_seconds=args.final_seconds,
        final_runs=args.final_runs,
        searches=2 if args.no_random else 3,
    )
    sampled = f", a random sample of {len(configs)}" if len(configs) < len(full_grid) else ""
    print(
        f"{name}: grid of {len(full_grid)} configs{sampled}, {n_trials} tuner trials x "
        f"{len(seeds)} seed(s), about {estimate:.0f} s "
        f"{json.dumps(grid_values(defn, pre), default=str)}",
        file=sys.stderr,
        flush=True,
    )
    if args.list_grids:
        return {}
    incomplete: list[str] = []
    store_url = f"sqlite:///{store_dir / 'bench.db'}"
    results: dict[int, Any] = {}
    tune_seconds: list[float] = []
    for seed in seeds:
        if deadline.passed():
            incomplete.append(f"placer seed {seed}")
            continue
        t0 = time.perf_counter()
        results[seed] = tune(
            name,
            store_url,
            budget_cores=budget_cores,
            budget_memory_bytes=budget_mem,
            n_trials=n_trials,
            trial_seconds=args.trial_seconds,
            study_name=f"bench-{name}-{os.getpid()}-{seed}",
            seed=seed,
            epochs=args.epochs,
            defn=defn,
        )
        tune_seconds.append(time.perf_counter() - t0)
    first = results[seeds[0]] if seeds[0] in results else None
    analysis = first.analysis if first is not None else pre
    budget = Budget(budget_cores, analysis.budget_memory_bytes)

    # the grid (or its sample), within the same budget
    fits = [c for c in configs if core_demand(defn, analysis, c) <= budget_cores + 1e-6]
    grid_values_seen: list[tuple[Config, float]] = []
    t0 = time.perf_counter()

    def measure_once(config: Config) -> tuple[Any, float]:
        """One grid trial: the tuner's objective, probes off."""
        return measure_config(
            measure,
            defn,
            config,
            seconds=args.trial_seconds,
            epochs=analysis.epochs,
            analysis=analysis,
            max_batches=1_000_000,
            probes=False,
        )

    measured_grid = 0
    for config in fits:
        if deadline.passed():
            break
        measured_grid += 1
        m, value = measure_once(config)
        if not m.error:
            grid_values_seen.append((config, value))
    if measured_grid < len(fits):
        incomplete.append(f"grid {measured_grid} of {len(fits)}")

    def remeasure(config: Config) -> float:
        return measure_once(config)[1]

    # the same confirmation of the best few as placer's
    grid_config, _grid_value, _again = pick_confirmed(grid_values_seen, remeasure)
    grid_seconds = time.perf_counter() - t0

    searched: dict[str, dict[int, Config | None]] = {"optuna alone": {}}
    if not args.no_random:
        searched["random"] = {}
    search_seconds: list[float] = []
    for seed in seeds:
        for method in searched:
            if deadline.passed():
                incomplete.append(f"{method} seed {seed}")
                continue
            sampler = (
                optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, n_trials // 3))
                if method == "optuna alone"
                else optuna.samplers.RandomSampler(seed=seed)
            )
            t0 = time.perf_counter()
            searched[method][seed], _ = search(
                defn,
                analysis,
                budget,
                measure,
                n_trials=n_trials,
                trial_seconds=args.trial_seconds,
                sampler=sampler,
            )
            search_seconds.append(time.perf_counter() - t0)

    chosen: dict[str, Config | None] = {
        "naive": dict(defn.naive_config),
        "workers=cores": heuristic(defn, cores),
        "analysis": first.analysis_config if first is not None else None,
        "grid": grid_config,
    }
    for seed, result in results.items():
        chosen[f"placer#{seed}"] = result.best_config
    for method, by_seed in searched.items():
        for seed, config in by_seed.items():
            chosen[f"{method}#{seed}"] = config
    autotune_name = f"{name}-autotune" if name.endswith("-tfdata") else None
    entries: dict[str, tuple[PipelineDef, Config | None]] = {
        method: (defn, config) for method, config in chosen.items()
    }
    if autotune_name is not None:
        try:
            tf_defn = load_pipeline(autotune_name)
            entries["tf.data AUTOTUNE"] = (tf_defn, dict(tf_defn.naive_config))
        except Exception as exc:  # noqa: BLE001 - reported, the rest of the row stands
            print(f"{autotune_name}: {exc}", file=sys.stderr)
    t0 = time.perf_counter()
    final, details, final_runs = measure_finals(
        entries, measure, args.final_runs, args.final_seconds, analysis, deadline=deadline
    )
    finals_seconds = time.perf_counter() - t0
    rounds = min((len(v) for v in final_runs.values()), default=0)
    if rounds < args.final_runs:
        incomplete.append(f"final runs {rounds} of {args.final_runs}")
    if autotune_name is not None:
        final.setdefault("tf.data AUTOTUNE", None)
    # each search's number: the median over its seeds of its chosen config's final median
    per_seed: dict[str, dict[int, float | None]] = {}
    for method in ("placer", "optuna alone", "random"):
        per_seed[method] = {seed: final.get(f"{method}#{seed}") for seed in seeds}
        final[method] = _median(list(per_seed[method].values()))
        if f"{method}#{seeds[0]}" in details:
            details[method] = details[f"{method}#{seeds[0]}"]
    shared: dict[str, list[str]] = {}
    for method, (d, method_config) in entries.items():
        if method_config is not None:
            shared.setdefault(config_key(d, method_config), []).append(method)

    def ratio(a: str, b: str) -> float | None:
        x, y = final.get(a), final.get(b)
        return None if x is None or not y else x / y

    upper = analysis.upper_bound_samples_per_second
    placer = final.get("placer")
    bound = upper if math.isfinite(upper) else None
    # every measured number: the final runs, and the grid's (one short run each)
    measured = dict(final_runs)
    measured["grid (all configs)"] = [v for _c, v in grid_values_seen]
    violations = bound_violations(bound, measured)
    analysis_cache = analysis.cache if first is not None else None
    grid_cache = grid_config.get("cache") if grid_config is not None else None
    return {
        "pipeline": name,
        "engine": defn.engine,
        "grid_configs": len(full_grid),
        "grid_sampled": len(configs) if len(configs) < len(full_grid) else None,
        "grid_values": grid_values(defn, pre),
        "grid_fitting_budget": len(fits),
        "grid_measured": len(grid_values_seen),
        "trials": n_trials,
        "seeds": seeds,
        "budget_memory_bytes": analysis.budget_memory_bytes,
        "samples_per_second": final,
        "per_seed": per_seed,
        "final_runs": final_runs,
        "same_config": [m for m in shared.values() if len(m) > 1],
        "cached_epochs": {k: v for k, v in details.items() if v},
        "configs": chosen,
        "cache_decision": {
            "analysis": analysis_cache,
            "grid": grid_cache,
            "agree": grid_config is not None and analysis_cache == grid_cache,
            "reason": analysis.cache_reason,
        },
        "upper_bound": bound,
        "upper_bound_without_gil": analysis.upper_bound_without_gil,
        "gil_bound": analysis.gil_bound_samples_per_second,
        "gil_shares": {
            **{s.name: s.gil_share for s in analysis.stages if s.gil_share is not None},
            **(
                {"consumer": analysis.consumer_gil_share}
                if analysis.consumer_gil_share is not None
                else {}
            ),
        },
        "lp_bottleneck": analysis.lp_bottleneck,
        "bound_violations": violations,
        "upper_bound_steady": analysis.upper_bound_steady
        if math.isfinite(analysis.upper_bound_steady)
        else None,
        "cache": analysis.cache,
        "bottleneck": analysis.bottleneck,
        "explanation": analysis.explanation,
        "placer_vs_grid": ratio("placer", "grid"),
        "placer_vs_upper_bound": (placer / upper) if placer and math.isfinite(upper) else None,
        "placer_vs_naive": ratio("placer", "naive"),
        "placer_vs_autotune": ratio("placer", "tf.data AUTOTUNE"),
        "placer_vs_optuna_alone": ratio("placer", "optuna alone"),
        "placer_vs_random": ratio("placer", "random"),
        "placer_vs_heuristic": ratio("placer", "workers=cores"),
        "incomplete": incomplete,
        "estimate_seconds": estimate,
        "tune_seconds": tune_seconds,
        "search_seconds": search_seconds,
        "grid_seconds": grid_seconds,
        "grid_seconds_per_config": grid_seconds / max(measured_grid + 3, 1),
        "finals_seconds": finals_seconds,
    }


METHODS = [
    "naive",
    "workers=cores",
    "analysis",
    "placer",
    "optuna alone",
    "random",
    "grid",
    "tf.data AUTOTUNE",
]


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.0f}%"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _cache_cell(r: dict[str, Any]) -> str:
    d = r.get("cached_epochs", {}).get("placer")
    if not d:
        return "none"
    return f"{d['cache']} (1st epoch {_fmt(d['first_epoch'])}, then {_fmt(d['steady'])})"


def _violations_cell(r: dict[str, Any]) -> str:
    v = r.get("bound_violations") or []
    if not v:
        return "none"
    worst = max(v, key=lambda x: x["samples_per_second"])
    return (
        f"{len(v)} (max {_fmt(worst['samples_per_second'])} by {worst['method']}, "
        f"{100 * worst['samples_per_second'] / worst['upper_bound']:.0f}% of bound)"
    )


def _trials_cell(r: dict[str, Any]) -> str:
    seeds = len(r.get("seeds") or [0])
    grid_n = f"{r['grid_fitting_budget']}"
    if r.get("grid_sampled"):
        grid_n = f"random {r['grid_fitting_budget']} of {r['grid_configs']}"
    return f"{r['trials']} x {seeds} seeds ({grid_n})" if seeds > 1 else f"{r['trials']} ({grid_n})"


def _seeds_cell(r: dict[str, Any]) -> str:
    """placer / Optuna alone per seed: which won each seed."""
    per = r.get("per_seed") or {}
    out = []
    for seed in r.get("seeds") or []:
        p, o = per.get("placer", {}).get(seed), per.get("optuna alone", {}).get(seed)
        out.append(_fmt(p / o if p and o else None, True))
    return " ".join(out) or "-"


def _cache_call_cell(r: dict[str, Any]) -> str:
    c = r.get("cache_decision") or {}
    if not c:
        return "-"
    agree = "agree" if c.get("agree") else "differ"
    return f"{c.get('analysis') or 'none'} / {c.get('grid') or 'none'} ({agree})"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = (
        ["pipeline", "trials (grid)"]
        + METHODS
        + [
            "upper bound",
            "placer/grid",
            "placer/optuna",
            "placer/optuna per seed",
            "placer/bound",
            "placer/naive",
            "placer cache",
            "cache: analysis / grid",
            "bound violations",
            "incomplete",
        ]
    )
    seeds = meta.get("seeds", 1)
    lines = [
        f"Measured {meta['date']} on {meta['host']} ({meta['cores']} cores, "
        f"{meta['memory_gib']:.0f} GiB, {meta['platform']}); budget {meta['budget_cores']} cores; "
        f"trials of {meta['trial_seconds']} s, objective = mean samples/s over "
        f"{meta['epochs']} epochs with a consumer copying each batch, "
        f"final: median of {meta['final_runs']} runs of {meta['final_seconds']} s (two "
        "whole epochs at least) per distinct config, measured round robin, methods that "
        "chose the same config share its numbers; placer, optuna alone and random: median "
        f"over {seeds} seed(s) of their chosen configs' finals; "
        + (
            f"grids over {meta['max_grid']} configs replaced by a random sample of "
            f"{meta['max_grid']}; "
            if meta.get("max_grid")
            else ""
        )
        + (
            f"time budget {meta['time_budget']} s (rows marked incomplete stopped early); "
            if meta.get("time_budget")
            else ""
        )
        + f"samples/s. Load average (1/5/15 min) at start {meta['load_average_at_start']}, "
        f"at end {meta.get('load_average_at_end')}: the host was shared with other jobs.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        sps = r["samples_per_second"]
        cells = [r["pipeline"], _trials_cell(r)]
        cells += [_fmt(sps.get(m)) for m in METHODS]
        cells += [
            _fmt(r["upper_bound"]),
            _fmt(r["placer_vs_grid"], True),
            _fmt(r["placer_vs_optuna_alone"], True),
            _seeds_cell(r),
            _fmt(r["placer_vs_upper_bound"], True),
            _fmt(r["placer_vs_naive"]) + "x",
            _cache_cell(r),
            _cache_call_cell(r),
            _violations_cell(r),
            "; ".join(r.get("incomplete") or []) or "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if meta.get("not_started"):
        lines += ["", f"Not started (time budget): {', '.join(meta['not_started'])}."]
    if meta.get("seconds") is not None:
        lines += ["", f"Whole run: {meta['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "pipelines", nargs="*", default=None, help="example names or package.module:function"
    )
    parser.add_argument("--trial-seconds", type=_positive_float, default=1.5)
    parser.add_argument("--final-seconds", type=_positive_float, default=3.0)
    parser.add_argument(
        "--final-runs", type=_positive_int, default=3, help="round-robin runs per config (median)"
    )
    parser.add_argument(
        "--trials", type=_positive_int, default=None, help="default: grid size / 10"
    )
    parser.add_argument("--budget-cores", type=_positive_float, default=None)
    parser.add_argument(
        "--budget-mem",
        type=_positive_int,
        default=None,
        help="bytes (default: the pipeline's own use plus half the available memory)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=3,
        help="seeds per search (placer, Optuna alone, random): the table shows the median",
    )
    parser.add_argument(
        "--max-grid",
        type=_positive_int,
        default=None,
        metavar="N",
        help="compare against a random sample of N configs where the grid is larger",
    )
    parser.add_argument(
        "--time-budget",
        type=_positive_float,
        default=None,
        metavar="S",
        help="schedule no new work after S seconds; unfinished rows say what is missing",
    )
    parser.add_argument(
        "--no-random", action="store_true", help="skip the random search (saves a third)"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=10, help="training run a cache is amortized over"
    )
    parser.add_argument(
        "--list-grids",
        action="store_true",
        help="profile, print grid sizes and time estimates, measure nothing",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.pipelines or DEFAULT_PIPELINES
    for name in names:  # a bad name fails here, before anything is measured
        try:
            load_pipeline(name)
        except PlacerError as exc:
            print(f"pipeline_tuning: {first_line(exc)}", file=sys.stderr)
            return 2
    deadline = Deadline(args.time_budget)

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3,
        "platform": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "budget_cores": args.budget_cores or os.cpu_count(),
        "trial_seconds": args.trial_seconds,
        "final_seconds": args.final_seconds,
        "final_runs": args.final_runs,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "max_grid": args.max_grid,
        "time_budget": args.time_budget,
        "load_average_at_start": os.getloadavg(),
        "not_started": [],
    }
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="placer-bench-") as tmp:
        for name in names:
            if deadline.passed():
                meta["not_started"].append(name)
                continue
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                row = bench_one(name, args, Path(tmp), deadline)
                if not row:
                    continue
                rows.append(row)
            except Exception as exc:  # noqa: BLE001 - one broken pipeline spoils no others
                print(f"{name}: skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            meta["load_average_at_end"] = os.getloadavg()
            meta["seconds"] = time.perf_counter() - started
            write_results(out, stamp, rows, meta)
    meta["seconds"] = time.perf_counter() - started
    if rows or meta["not_started"]:
        write_results(out, stamp, rows, meta)
    print(markdown(rows, meta))
    return 0


def write_results(out: Path, stamp: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    doc = {"meta": meta, "rows": rows}
    (out / f"pipeline_tuning-{stamp}.json").write_text(
        json.dumps(doc, indent=2, default=str) + "\n"
    )
    (out / f"pipeline_tuning-{stamp}.md").write_text(markdown(rows, meta))


if __name__ == "__main__":
    raise SystemExit(main())
