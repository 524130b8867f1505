"""``placer plan export``: a plan as an environment for systemd, containers and schedulers.

A thin layer over :func:`placer.act.export.export_plan`; formats in docs/placement.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from placer.act.bind import plan_chunk_bytes
from placer.act.export import FORMATS, export_plan
from placer.cli.context import Context
from placer.errors import InvalidInputError, UsageError
from placer.placement.planfile import read_plan, split_sites


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("plan")
    actions = p.add_subparsers(dest="plan_command", metavar="ACTION")
    actions.required = True
    e = actions.add_parser(
        "export",
        parents=[common],
        conflict_handler="resolve",
        help="write what binds PLAN in a program placer does not start",
        description=(
            "Write the variables `placer run --plan` sets (LD_PRELOAD of the shim, the "
            "plan's bindings) for a program started by systemd, a container or a scheduler, "
            "or the closest whole-process numactl command. Writes the shim's plan lines "
            "beside PLAN (PLAN.shim) unless --shim-plan says where."
        ),
    )
    e.add_argument("plan", type=Path, metavar="PLAN", help="plan file (placer recommend -o)")
    # Replaces the common --format (table|json): an export has its own formats.
    e.add_argument(
        "--format",
        choices=FORMATS,
        default=argparse.SUPPRESS,
        help="env (default: an EnvironmentFile / --env-file), systemd (a [Service] drop-in), "
        "json (the same variables as an object), numactl (closest whole-process policy)",
    )
    e.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    e.add_argument(
        "--shim-plan",
        type=Path,
        metavar="FILE",
        help="where to write the shim's plan lines (default: PLAN with suffix .shim)",
    )
    e.add_argument(
        "--log",
        metavar="PATTERN",
        help="the shim's log of each process, %%p its pid (default: PLAN.shim.%%p.log beside "
        "PLAN); the directory must be writable by the program",
    )
    e.add_argument("--force", action="store_true", help="export a plan computed on another host")
    e.set_defaults(handler=_export)


def _export(args: argparse.Namespace, ctx: Context) -> int:
    fmt = getattr(args, "format", "env")
    if fmt == "table":  # no --format given: the global default
        fmt = "env"
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: one of {', '.join(FORMATS)}")
    doc = read_plan(args.plan)
    chunk_bytes = None
    if fmt != "numactl" and split_sites(doc):
        store = ctx.open_store(create=False)
        try:
            chunk_bytes = plan_chunk_bytes(store, doc)
        finally:
            store.dispose()
    text = export_plan(
        doc,
        args.plan,
        fmt,
        chunk_bytes=chunk_bytes,
        force=args.force,
        shim_plan=args.shim_plan,
        log=args.log,
    )
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {args.output}: {exc.strerror}") from None
    print(args.output)
    return 0
