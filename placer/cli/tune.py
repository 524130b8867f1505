"""``placer tune``, ``placer pipelines``, ``placer pipeline``: Plumber-style pipeline tuning."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from placer.cli.context import Context
from placer.collectors.pipeline.registry import example_names
from placer.errors import InvalidInputError, NotFoundError
from placer.store.repository.pipelines import (
    find_pipeline,
    pipelines_with_study_counts,
    runs_of_pipeline,
    studies_of_pipeline,
)
from placer.tuners.records import pipeline_document
from placer.tuners.tuning import tune

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_size(text: str, what: str = "size") -> int:
    """``4GiB``, ``512MiB``, ``1.5G`` (binary), ``2GB`` (decimal), ``1000000`` → bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise InvalidInputError(
            f"invalid {what} {text!r}: use a number with an optional unit, e.g. 4GiB, 512MiB, "
            f"2GB, 1000000"
        )
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise InvalidInputError(f"invalid {what} {text!r}: must be positive")
    return int(value)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _pipelines_epilog() -> str:
    """The example pipelines ``tune`` accepts, a few per line, names never broken."""
    names = example_names()
    if not names:
        return "example pipelines: none here (they ship with placer's source tree)"
    lines = textwrap.wrap("  ".join(names), 76, break_on_hyphens=False, break_long_words=False)
    return "example pipelines:\n" + "\n".join(f"  {line}" for line in lines)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    tune = sub.add_parser(
        "tune",
        help="profile an input pipeline, find its bottleneck, tune it with Optuna",
        parents=[common],
        description=textwrap.fill(
            "Profile PIPELINE with its naive config, explain the bottleneck and the "
            "throughput the budget allows (Plumber-style analysis), then run an Optuna "
            "study whose first trial is the analysis's config. The study lives in the "
            "store (optuna-dashboard <store-url> opens it).",
            78,
        ),
        epilog=_pipelines_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument(
        "pipeline",
        metavar="PIPELINE",
        help="an example pipeline (listed below) or your own package.module:function "
        "returning a PipelineDef or your loader as it is: a torch DataLoader, (dataset, "
        "DataLoader kwargs), a tf.data.Dataset or a torchdata.nodes node",
    )
    tune.add_argument(
        "--budget-cores",
        type=_positive_float,
        metavar="N",
        help="cores the pipeline may use (default: the host's)",
    )
    tune.add_argument(
        "--budget-mem",
        metavar="SIZE",
        help="memory the pipeline may use, e.g. 4GiB (default: its own use plus half the "
        "host's available memory)",
    )
    tune.add_argument("--trials", type=int, default=12, metavar="N", help="trials (12)")
    tune.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes running trials of the one study (1)",
    )
    tune.add_argument("--study", metavar="NAME", help="study name (default: pipeline-date-pid)")
    tune.add_argument(
        "--join",
        action="store_true",
        help="add trials to the existing study --study (another process or host)",
    )
    tune.add_argument(
        "--trial-seconds",
        type=_positive_float,
        default=3.0,
        metavar="S",
        help="measuring time of one trial (3)",
    )
    tune.add_argument(
        "--epochs",
        type=int,
        default=10,
        metavar="N",
        help="epochs of the training run a cache's first epoch is amortized over; the "
        "objective is the mean samples/s over that run (10)",
    )
    tune.add_argument(
        "--trial-timeout",
        type=_positive_float,
        metavar="S",
        help="hard limit of one measurement, build included; a stage that hangs fails "
        "its trial after it (default: 3 x trial seconds + 10, more for cached configs)",
    )
    tune.add_argument("--seed", type=int, help="sampler seed (reproducible searches)")
    tune.add_argument(
        "-o", "--output", metavar="FILE", help="write the best config as JSON (the job loads it)"
    )
    tune.set_defaults(handler=_tune)

    pipelines = sub.add_parser("pipelines", help="list profiled pipelines", parents=[common])
    pipelines.set_defaults(handler=_pipelines)

    pipeline = sub.add_parser(
        "pipeline",
        help="show one pipeline: stages, rates, bottleneck, best config",
        parents=[common],
    )
    pipeline.add_argument("id", metavar="ID", help="pipeline id (or name)")
    pipeline.set_defaults(handler=_pipeline)


# --------------------------------------------------------------------------- tune


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _tune(args: argparse.Namespace, ctx: Context) -> int:
    memory = parse_size(args.budget_mem, "--budget-mem") if args.budget_mem else None
    if args.output:
        out = Path(args.output)
        if out.is_dir() or not out.resolve().parent.is_dir():
            raise InvalidInputError(
                f"cannot write {args.output}: not a file in an existing directory"
            )
    quiet = ctx.format == "json"
    progress: Any = None
    task: Any = None

    def on_analysis(a: Any) -> None:
        nonlocal progress, task
        if not quiet:
            print(f"pipeline {a.pipeline}: analysis of the naive config")
            for line in a.explanation:
                print(f"  {line}")
            sys.stdout.flush()
        if not ctx.live():
            return
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        progress.start()
        task = progress.add_task("trials", total=args.trials)

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=min(done, total))

    try:
        result = tune(
            args.pipeline,
            ctx.store_url,
            budget_cores=args.budget_cores,
            budget_memory_bytes=memory,
            n_trials=args.trials,
            workers=args.workers,
            study_name=args.study,
            join=args.join,
            trial_seconds=args.trial_seconds,
            epochs=args.epochs,
            trial_timeout=args.trial_timeout,
            seed=args.seed,
            on_analysis=on_analysis,
            on_progress=on_progress,
        )
    finally:
        if progress is not None:
            progress.stop()
    doc = result.document()
    if args.output and result.best_config is not None:
        result.write_config(args.output)
        doc["output"] = str(args.output)

    def render(d: dict[str, Any]) -> None:
        counts: dict[str, int] = {}
        for t in d["trials"]:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        print(
            f"study {d['study']}: {len(d['trials'])} trials ("
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f"), status {d['status']}"
        )
        if d["best_config"] is None:
            print(
                "no trial finished within the budget; see `placer pipeline "
                f"{d['pipeline_id']}` and the study's failed trials"
            )
            return
        print(f"best config (trial {d['best_trial']}):")
        for k, v in sorted(d["best_config"].items()):
            print(f"  {k} = {json.dumps(v)}")
        ub = d["upper_bound_samples_per_second"]
        share = (
            f", {100 * d['best_samples_per_second'] / ub:.0f}% of the analysis bound"
            if ub and math.isfinite(ub)
            else ""
        )
        print(
            f"measured {_fmt(d['best_samples_per_second'])} samples/s vs naive "
            f"{_fmt(d['naive_samples_per_second'])} samples/s "
            f"({_fmt(d['speedup_vs_naive'])}x){share}"
        )
        if d.get("output"):
            print(f"wrote {d['output']}")

    ctx.emit(doc, render)
    return 0 if result.best_config is not None else 1


# --------------------------------------------------------------------------- pipelines


def _pipelines(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=False) as store, store.session() as s:
        docs = []
        for p, n_studies in pipelines_with_study_counts(s):
            a = p.analysis or {}
            docs.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "engine": p.engine,
                    "builder": p.builder,
                    "bottleneck": a.get("bottleneck"),
                    "upper_bound_samples_per_second": a.get("upper_bound_samples_per_second"),
                    "best_samples_per_second": p.best_throughput,
                    "studies": n_studies,
                }
            )
    doc = {"pipelines": docs}

    def render(d: dict[str, Any]) -> None:
        ctx.table(
            "pipelines",
            ["id", "name", "engine", "bottleneck", "bound samples/s", "best samples/s", "studies"],
            [
                [
                    p["id"],
                    p["name"],
                    p["engine"],
                    p["bottleneck"],
                    _fmt(p["upper_bound_samples_per_second"]),
                    _fmt(p["best_samples_per_second"]),
                    p["studies"],
                ]
                for p in d["pipelines"]
            ],
        )

    ctx.emit(doc, render)
    return 0


def _pipeline(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=False) as store, store.session() as s:
        row = find_pipeline(s, str(args.id))
        if row is None:
            raise NotFoundError(f"no pipeline {args.id!r} in the store (see `placer pipelines`)")
        doc = pipeline_document(row, studies_of_pipeline(s, row.id), runs_of_pipeline(s, row.id))

    def render(d: dict[str, Any]) -> None:
        print(f"pipeline {d['id']}: {d['name']} ({d['engine']}, {d['builder']})")
        for line in d["explanation"]:
            print(f"  {line}")
        ctx.table(
            "stages",
            [
                "#",
                "stage",
                "kind",
                "visit ratio",
                "samples/s per core",
                "samples/s per worker",
                "cores",
                "workers",
            ],
            [
                [
                    st["position"],
                    st["name"]
                    + (" (seq)" if st["sequential"] else "")
                    + (" (random)" if st["random"] else ""),
                    st["kind"],
                    None if st["visit_ratio"] is None else f"{st['visit_ratio']:.3g}",
                    _fmt(st["samples_per_core_second"]),
                    _fmt(st["samples_per_worker_second"]),
                    None if st["cores"] is None else f"{st['cores']:.2f}",
                    st["parallelism"],
                ]
                for st in d["stages"]
            ],
        )
        print(
            f"bottleneck: {d['bottleneck']}; upper bound "
            f"{_fmt(d['upper_bound_samples_per_second'])} samples/s; cache {d['cache']}; "
            f"prefetch {d['prefetch']}"
        )
        if d["best_config"]:
            print(
                f"best config ({_fmt(d['best_samples_per_second'])} samples/s measured): "
                + json.dumps(d["best_config"], sort_keys=True)
            )
        for st in d["studies"]:
            print(
                f"study {st['name']}: {st['status']}, {st['trials']} trials, best "
                f"{_fmt(st['best_samples_per_second'])} vs naive "
                f"{_fmt(st['naive_samples_per_second'])} samples/s"
            )

    ctx.emit(doc, render)
    return 0
