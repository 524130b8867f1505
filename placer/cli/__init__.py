"""The ``placer`` command line.

Each command lives in its own module under ``placer.cli`` with a ``register(subparsers)``
function; modules import heavy libraries inside their handlers so ``placer --help``
stays fast. Errors derived from :class:`placer.errors.PlacerError` print one line and exit
2; anything else exits 1 and points to ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from placer import __version__
from placer.cli.context import Context
from placer.errors import PlacerError

#: Command modules, in the order ``placer --help`` lists them.
COMMAND_MODULES = [
    "placer.cli.db",
    "placer.cli.doctor",
    "placer.cli.profile",
    "placer.cli.tiers",
    "placer.cli.emulate",
    "placer.cli.experiment",
    "placer.cli.tune",
    "placer.cli.placement",
    "placer.cli.report",
    "placer.cli.daemon",
]


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted both before and after the command name."""
    parent = argparse.ArgumentParser(add_help=False)
    default = None if defaults else argparse.SUPPRESS
    parent.add_argument(
        "--store",
        metavar="URL",
        default=default,
        help="store URL (default: $PLACER_STORE, else a SQLite file in the data directory)",
    )
    parent.add_argument(
        "--format",
        choices=["table", "json"],
        default="table" if defaults else argparse.SUPPRESS,
        help="output format (json: stable documents described in docs/cli.md)",
    )
    parent.add_argument(
        "--debug",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="show tracebacks for errors",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="placer",
        description="ML-driven data placement for tiered memory and ML input-pipeline tuning.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"placer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        # A fresh parent per module: parsers share the parent's action objects, so one
        # module overriding an option (conflict_handler="resolve") must not strip it from
        # every other command.
        importlib.import_module(name).register(sub, _common_options(defaults=False))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context.from_args(args)
    try:
        result = args.handler(args, ctx)
        return int(result or 0)
    except PlacerError as exc:
        if ctx.debug:
            raise
        print(f"placer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("placer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defense
        if ctx.debug:
            raise
        print(
            f"placer: internal error: {type(exc).__name__}: {exc} "
            f"(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
