"""Pipeline tuning benchmark: placer's tuner against the alternatives, side by side.

For every pipeline, in one run on this host:

- **naive**: the pipeline's naive config (no workers, no prefetch, no cache);
- **workers=cores**: the common heuristic (every parallel knob / ``num_workers`` = cores,
  the knobs' defaults otherwise, no cache);
- **analysis**: the operational analysis's config alone (placer's first trial);
- **placer**: analysis + Optuna (``placer.tuners.tuning.tune`` on a SQLite store), with at most
  a tenth of the grid's trials;
- **optuna alone**: TPE with the same trial budget, no analysis seed;
- **random**: random search with the same trial budget;
- **grid**: every config of a grid over the same knobs (see :func:`grid_values` for the
  values: the full power-of-two grid would take days here) that fits the budget;
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

    python benchmarks/pipeline_tuning.py                       # the example pipelines
    python benchmarks/pipeline_tuning.py synthetic-cpu synthetic-remote --trial-seconds 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, PipelineDef  # noqa: E402
from placer.tuners.analysis import Analysis  # noqa: E402
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
) -> tuple[dict[str, float | None], dict[str, dict[str, Any]], dict[str, list[float]]]:
    """Measure every method's chosen config fairly under host noise.

    Distinct configs (:func:`config_key`) are measured once per round, round robin
    (A run 1, B run 1, ..., A run 2, ...), so a burst of load hits every method about
    alike; each method gets the median of its config's ``runs`` values (None if a run
    failed). Methods that chose the identical config share its numbers: one config has one
    true throughput. Returns (median per method, first-epoch/steady detail of cached
    configs per method, every value per method).
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


def bench_one(name: str, args: argparse.Namespace, store_dir: Path) -> dict[str, Any]:
    import optuna

    measure = resolve_measure()
    defn = load_pipeline(name)
    cores = os.cpu_count() or 1
    budget_cores = float(args.budget_cores or cores)
    # The grid depends on the profile: profile once (the tuner profiles again, as a user's
    # `placer tune` would), size the grid, then give the tuner a tenth of its trials.
    from placer.tuners.analysis import analyze

    profile = measure(
        defn,
        dict(defn.naive_config),
        max_batches=1_000_000,
        max_seconds=max(args.trial_seconds, 2.0),
    )
    if profile.error:
        raise RuntimeError(f"profiling failed: {profile.error}")
    pre = analyze(
        defn,
        profile,
        budget_cores=budget_cores,
        budget_memory_bytes=args.budget_mem or profile.host.free_memory_bytes // 2,
        epochs=args.epochs,
    )
    configs = grid(defn, pre)
    # at most a tenth of the grid (the goal), at least the analysis trial itself
    n_trials = max(1, len(configs) // 10) if args.trials is None else args.trials
    print(
        f"{name}: grid of {len(configs)} configs, {n_trials} tuner trials "
        f"{json.dumps(grid_values(defn, pre), default=str)}",
        file=sys.stderr,
        flush=True,
    )
    if args.list_grids:
        return {}
    t0 = time.perf_counter()
    result = tune(
        name,
        f"sqlite:///{store_dir / 'bench.db'}",
        budget_cores=budget_cores,
        budget_memory_bytes=args.budget_mem,
        n_trials=n_trials,
        trial_seconds=args.trial_seconds,
        study_name=f"bench-{name}-{os.getpid()}",
        seed=args.seed,
        epochs=args.epochs,
    )
    tune_seconds = time.perf_counter() - t0
    analysis = result.analysis
    budget = Budget(budget_cores, analysis.budget_memory_bytes)

    # the grid, within the same budget
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

    for config in fits:
        m, value = measure_once(config)
        if not m.error:
            grid_values_seen.append((config, value))

    def remeasure(config: Config) -> float:
        return measure_once(config)[1]

    # the same confirmation of the best few as placer's
    grid_config, _grid_value, _again = pick_confirmed(grid_values_seen, remeasure)
    grid_seconds = time.perf_counter() - t0

    optuna_cfg, _ = search(
        defn,
        analysis,
        budget,
        measure,
        n_trials=n_trials,
        trial_seconds=args.trial_seconds,
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=max(2, n_trials // 3)),
    )
    random_cfg, _ = search(
        defn,
        analysis,
        budget,
        measure,
        n_trials=n_trials,
        trial_seconds=args.trial_seconds,
        sampler=optuna.samplers.RandomSampler(seed=args.seed),
    )

    chosen: dict[str, Config | None] = {
        "naive": dict(defn.naive_config),
        "workers=cores": heuristic(defn, cores),
        "analysis": result.analysis_config,
        "placer": result.best_config,
        "optuna alone": optuna_cfg,
        "random": random_cfg,
        "grid": grid_config,
    }
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
    final, details, final_runs = measure_finals(
        entries, measure, args.final_runs, args.final_seconds, analysis
    )
    if autotune_name is not None:
        final.setdefault("tf.data AUTOTUNE", None)
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
    return {
        "pipeline": name,
        "engine": defn.engine,
        "grid_configs": len(configs),
        "grid_values": grid_values(defn, pre),
        "grid_fitting_budget": len(fits),
        "trials": n_trials,
        "samples_per_second": final,
        "final_runs": final_runs,
        "same_config": [m for m in shared.values() if len(m) > 1],
        "cached_epochs": {k: v for k, v in details.items() if v},
        "configs": chosen,
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
        "tune_seconds": tune_seconds,
        "grid_seconds": grid_seconds,
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


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = (
        ["pipeline", "trials (grid)"]
        + METHODS
        + [
            "upper bound",
            "placer/grid",
            "placer/bound",
            "placer/naive",
            "placer cache",
            "bound violations",
        ]
    )
    lines = [
        f"Measured {meta['date']} on {meta['host']} ({meta['cores']} cores, "
        f"{meta['memory_gib']:.0f} GiB, {meta['platform']}); budget {meta['budget_cores']} cores; "
        f"trials of {meta['trial_seconds']} s, objective = mean samples/s over "
        f"{meta['epochs']} epochs with a consumer copying each batch, "
        f"final: median of {meta['final_runs']} runs of {meta['final_seconds']} s (two "
        "whole epochs at least) per distinct config, measured round robin, methods that "
        "chose the same config share its numbers; "
        f"samples/s. Load average (1/5/15 min) at start {meta['load_average_at_start']}, "
        f"at end {meta.get('load_average_at_end')}: the host was shared with other jobs.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        sps = r["samples_per_second"]
        cells = [r["pipeline"], f"{r['trials']} ({r['grid_fitting_budget']})"]
        cells += [_fmt(sps.get(m)) for m in METHODS]
        cells += [
            _fmt(r["upper_bound"]),
            _fmt(r["placer_vs_grid"], True),
            _fmt(r["placer_vs_upper_bound"], True),
            _fmt(r["placer_vs_naive"]) + "x",
            _cache_cell(r),
            _violations_cell(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipelines", nargs="*", default=None)
    parser.add_argument("--trial-seconds", type=float, default=1.5)
    parser.add_argument("--final-seconds", type=float, default=3.0)
    parser.add_argument(
        "--final-runs", type=int, default=3, help="round-robin runs per config (median)"
    )
    parser.add_argument("--trials", type=int, default=None, help="default: grid size / 10")
    parser.add_argument("--budget-cores", type=float, default=None)
    parser.add_argument("--budget-mem", type=int, default=None, help="bytes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs", type=int, default=10, help="training run a cache is amortized over"
    )
    parser.add_argument(
        "--list-grids", action="store_true", help="profile, print grid sizes, measure nothing"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    names = args.pipelines or DEFAULT_PIPELINES

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
        "load_average_at_start": os.getloadavg(),
    }
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    with tempfile.TemporaryDirectory(prefix="placer-bench-") as tmp:
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                row = bench_one(name, args, Path(tmp))
                if not row:
                    continue
                rows.append(row)
            except Exception as exc:  # noqa: BLE001 - one broken pipeline spoils no others
                print(f"{name}: skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            meta["load_average_at_end"] = os.getloadavg()
            doc = {"meta": meta, "rows": rows}
            (out / f"pipeline_tuning-{stamp}.json").write_text(
                json.dumps(doc, indent=2, default=str) + "\n"
            )
            (out / f"pipeline_tuning-{stamp}.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
