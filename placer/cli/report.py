"""``placer report``: a self-contained HTML report (or its Markdown/JSON twin) from the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from placer import reports
from placer.cli.context import Context
from placer.errors import UsageError
from placer.reports.render import render

_BY_SUFFIX = {".html": "html", ".htm": "html", ".json": "json", ".md": "md"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"ids start at 1: {text!r}")
    return value


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[common],
        conflict_handler="resolve",
        description=(
            "Write one report from the store: a profiled RUN (objects, heatmap, DRAM-budget "
            "curve, plan), a tuned --pipeline ID (stages, bottleneck, tuning history) or the "
            "--fleet (daemon jobs, plans, studies). HTML is one self-contained file."
        ),
    )
    p.add_argument("run", metavar="RUN", nargs="?", type=_positive_int, help="run id")
    p.add_argument("--pipeline", metavar="ID", type=_positive_int, help="pipeline id")
    p.add_argument("--fleet", action="store_true", help="the fleet report")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        help="write here (written only if the report succeeds); default: stdout",
    )
    # Replaces the common --format (table|json): reports have their own formats.
    p.add_argument(
        "--format",
        choices=["html", "json", "md"],
        default=argparse.SUPPRESS,
        help="html (default; or from the -o suffix .html/.json/.md), json (the twin "
        "document), md (Markdown for pull requests and chat)",
    )
    p.set_defaults(handler=_report)


def _format(args: argparse.Namespace) -> str:
    fmt = getattr(args, "format", None)
    if fmt in ("html", "json", "md"):  # also the global ``--format json`` before the command
        return str(fmt)
    if args.output is not None:
        return _BY_SUFFIX.get(args.output.suffix.lower(), "html")
    return "html"


def _report(args: argparse.Namespace, ctx: Context) -> int:
    chosen = [x for x in (args.run is not None, args.pipeline is not None, args.fleet) if x]
    if len(chosen) != 1:
        raise UsageError("name exactly one of RUN, --pipeline ID or --fleet")
    fmt = _format(args)
    if args.output is not None:
        parent = args.output.parent
        if not parent.is_dir():
            raise UsageError(
                f"cannot write report {args.output}: directory {parent} does not exist"
            )
        reports.check_target(args.output)
    if fmt == "html" and args.output is None and sys.stdout.isatty():
        raise UsageError("an HTML report goes to a file: add -o report.html")

    kind, ident = (
        ("run", args.run)
        if args.run is not None
        else ("pipeline", args.pipeline)
        if args.pipeline is not None
        else ("fleet", None)
    )
    store = ctx.open_store(create=False)
    try:
        doc = reports.build(store, kind, ident)
    finally:
        store.dispose()
    text = render(doc, fmt)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    path = reports.write(text, args.output)
    print(path)
    return 0
