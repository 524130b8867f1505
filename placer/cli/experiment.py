"""``placer experiment``: produce placement labels (measured on a slow tier, else emulated)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from placer.cli.context import Context
from placer.collectors.profile.session import parse_size
from placer.contracts.streams import stdout_to_stderr
from placer.emulator.host import reference
from placer.errors import InvalidInputError
from placer.experiments.runner import ExperimentRequest, decide_mode
from placer.experiments.session import (
    pricing_host,
    run_experiment,
    run_suite,
)
from placer.experiments.strategies import parse_budgets
from placer.experiments.workloads import SUITES, suite
from placer.tiers import detect_nodes
from placer.tiers.specs import load_spec


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "experiment",
        parents=[common],
        description="Profile CMD (or take --run), then store labels: each object's penalty "
        "alone in the slow tier and, per DRAM budget, the runtime of candidate plans. "
        "Measured when this host has a slow NUMA node (or --slow-node), else emulated with "
        "--tier. --suite examples labels the whole example suite.",
    )
    p.add_argument("--app", metavar="NAME", help="application name (default: program name)")
    p.add_argument("--run", type=int, metavar="ID", help="label this stored run, no profiling")
    p.add_argument(
        "--suite",
        choices=list(SUITES),
        help="label a whole suite: examples (our graph kernels, microbenchmarks, embedding) "
        "or corpus (one workload per application, most third-party: build them with "
        "`make -C examples thirdparty`)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="with --suite: one small scale per graph (a smoke test)",
    )
    p.add_argument(
        "--chunk",
        metavar="SIZE",
        default="0",
        help="profile with objects larger than SIZE split into SIZE chunks (e.g. 8MiB), "
        "so labels and plans can keep part of a big array in DRAM; new profiles only "
        "(not --run). Default 0: no chunks",
    )
    p.add_argument(
        "--budgets",
        default="30,50,70",
        help="DRAM budgets in %% of the footprint (default 30,50,70)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="measured mode: runs per plan, median and spread stored (default 3)",
    )
    p.add_argument(
        "--tier",
        default="optane",
        metavar="optane|cxl|FILE",
        help="emulated mode: slow-tier spec (default optane)",
    )
    p.add_argument("--emulate", action="store_true", help="emulate even if a slow node exists")
    p.add_argument(
        "--slow-node",
        type=int,
        default=None,
        metavar="N",
        help="measured mode on NUMA node N (e.g. 0 to check the path on one node)",
    )
    p.add_argument("--sys-root", default="/", help="read NUMA topology under this root")
    p.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="emulated mode: size the program's thread pools (OMP_NUM_THREADS, BLAS) to N "
        "while it is profiled and timed (default 1: labels priced on one thread's CPU "
        "time, which other load does not change)",
    )
    p.add_argument(
        "--reference-dram",
        action="store_true",
        help="emulated mode: reference DRAM spec instead of this host's stored host model",
    )
    p.add_argument(
        "--host-model",
        type=int,
        metavar="ID",
        help="emulated mode: price on this stored host model (default: this host's newest; "
        "measured once if there is none, see `placer calibrate`)",
    )
    p.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the program to profile and label, and its arguments",
    )
    p.set_defaults(handler=_experiment)


def _render(doc: dict[str, Any]) -> None:
    rows = [
        [
            e.get("app", ""),
            e["run"],
            e["experiment"],
            e["mode"],
            e["tier"],
            f"{e['baseline_seconds']:.3f}",
            f"{e['all_slow_seconds']:.3f}" if "all_slow_seconds" in e else "",
            e["object_labels"],
            e["plan_labels"],
        ]
        for e in doc["experiments"]
    ]
    Context.table(
        f"labels ({doc['mode']}, {doc['runs_labeled']} run(s), {doc['elapsed_seconds']} s)",
        [
            "app",
            "run",
            "experiment",
            "mode",
            "tier",
            "base s",
            "all-slow s",
            "object labels",
            "plan labels",
        ],
        rows,
    )
    for f in doc.get("failed", []):
        print(f"failed: {f['app']}: {f['error']}")


def _experiment(args: argparse.Namespace, ctx: Context) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    given = sum(bool(x) for x in (cmd, args.run is not None, args.suite))
    if given != 1:
        raise InvalidInputError("give exactly one of: -- CMD, --run ID, --suite examples|corpus")
    # the suite's programs first: a missing build is one clear line before anything runs
    workloads = suite(args.suite, quick=args.quick) if args.suite else []
    if args.repeat < 1:
        raise InvalidInputError("--repeat must be >= 1")
    budgets = parse_budgets(args.budgets)
    chunk = parse_size(args.chunk, "--chunk")
    if chunk and args.run is not None:
        raise InvalidInputError(
            "--chunk applies to new profiles only: run "
            f"{args.run} is already profiled (profile again with --chunk, or drop --run)"
        )
    load_spec(args.tier)  # unknown tier: error before anything runs
    root = Path(args.sys_root)
    if not (root / "sys/devices/system/node").is_dir():
        raise InvalidInputError(f"no NUMA information under {root}/sys/devices/system/node")
    mode = decide_mode(detect_nodes(root), slow_node=args.slow_node, force_emulate=args.emulate)
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError("--threads must be >= 1")
    req = ExperimentRequest(
        tier=args.tier,
        budgets=budgets,
        repeat=args.repeat,
        seed=args.seed,
        chunk=chunk,
        threads=args.threads,
    )
    if args.reference_dram and args.host_model is not None:
        raise InvalidInputError("--reference-dram and --host-model exclude each other")
    t0 = time.monotonic()
    with ctx.open_store() as store:
        # emulated: priced on this host's stored host model (measured once, then reused);
        # --reference-dram uses the reference spec instead
        host = None
        if mode.kind == "emulated":
            host = reference() if args.reference_dram else pricing_host(store, args.host_model)
        if args.suite:
            doc = _suite(store, req, mode, host, workloads, live=ctx.live())
        else:
            app = args.app or (Path(cmd[0]).name if cmd else "")
            quiet = stdout_to_stderr() if ctx.format == "json" else contextlib.nullcontext()
            steps = "profile, DHAT pass, emulated labels" if host else "profile, measured plans"
            with quiet, ctx.status(f"labeling {app or f'run {args.run}'}: {steps}"):
                summary = run_experiment(
                    store, req, mode, host, app=app, command=cmd or None, run_id=args.run
                )
            summary["app"] = app or f"run {summary['run']}"
            doc = {
                "mode": mode.kind,
                "tier": summary["tier"],
                "runs_labeled": 1,
                "failed": [],
                "elapsed_seconds": round(time.monotonic() - t0, 1),
                "experiments": [summary],
            }
    doc["mode_reason"] = mode.reason
    doc["host"] = os.uname().nodename
    ctx.emit(doc, _render)
    return 1 if doc["failed"] else 0


def _suite(
    store: Any, req: Any, mode: Any, host: Any, workloads: list[Any], *, live: bool
) -> dict[str, Any]:
    from rich.console import Console  # lazy: heavy
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )  # lazy: heavy

    if not live:  # no terminal, or JSON wanted: the document says what failed
        return run_suite(store, req, mode, host, workloads)
    # the progress bar keeps its own handle on the terminal: programs' output is redirected
    console = Console(file=open(os.dup(sys.stderr.fileno()), "w", closefd=True))  # noqa: SIM115
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("labeling", total=len(workloads))

        def step(app: str, status: str) -> None:
            if status == "start":
                progress.update(task, description=f"labeling {app}")
            else:
                progress.advance(task)
                if status != "ok":
                    progress.console.print(f"[red]{app}: {status}")

        doc = run_suite(store, req, mode, host, workloads, on_step=step)
    console.file.close()
    return doc
