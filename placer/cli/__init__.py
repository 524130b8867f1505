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
from typing import Any, NoReturn

from placer import __version__
from placer.cli.context import Context, wrapped_stdout
from placer.errors import PlacerError, UsageError

#: Every command: the module that implements it and its one-line help, in the order
#: ``placer --help`` lists them. ``placer --help`` reads this table alone; a command's module
#: (and the store, numpy, ... that it imports) is loaded only when that command runs, so the
#: CLI starts fast. A module's ``register(sub, common)`` adds its commands' arguments; their
#: help comes from here (one source).
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("placer.cli.db", "manage the store's schema"),
    "doctor": ("placer.cli.doctor", "what this host offers placer"),
    "profile": (
        "placer.cli.profile",
        "run a program with the allocation shim and store its objects",
    ),
    "runs": ("placer.cli.profile", "list profiled runs"),
    "objects": ("placer.cli.profile", "objects of one run, hottest first"),
    "tiers": ("placer.cli.tiers", "memory tiers of this host (NUMA nodes)"),
    "calibrate": (
        "placer.cli.calibrate",
        "measure this host's caches and DRAM once and store the host model",
    ),
    "emulate": (
        "placer.cli.emulate",
        "estimate a run's runtime with some objects in a slow tier (emulator)",
    ),
    "experiment": (
        "placer.cli.experiment",
        "label a program's objects and plans under DRAM budgets (measured or emulated)",
    ),
    "tune": (
        "placer.cli.tune",
        "profile an input pipeline, find its bottleneck, tune it with Optuna",
    ),
    "pipelines": ("placer.cli.tune", "list profiled pipelines"),
    "pipeline": ("placer.cli.tune", "show one pipeline: stages, rates, bottleneck, best config"),
    "train": (
        "placer.cli.placement",
        "train the placement model (ranker + penalty) on labeled runs",
    ),
    "evaluate": (
        "placer.cli.placement",
        "leave-one-application-out: model plans vs baselines vs oracle",
    ),
    "recommend": (
        "placer.cli.placement",
        "rank a run's objects and plan them under a DRAM budget",
    ),
    "run": ("placer.cli.placement", "run a program with a plan applied by the shim (mbind)"),
    "plan": (
        "placer.cli.plan",
        "export a plan for programs placer does not start (systemd, containers, numactl)",
    ),
    "report": ("placer.cli.report", "write a recommendation report (HTML, Markdown or JSON)"),
    "daemon": (
        "placer.cli.daemon",
        "run the placer daemon in the foreground (or: daemon status)",
    ),
    "jobs": ("placer.cli.daemon", "jobs the daemon watches"),
    "job": ("placer.cli.daemon", "one daemon job: its current decisions and why"),
    "attach": (
        "placer.cli.daemon",
        "attach the daemon to a running process (yours, or any as root)",
    ),
    "detach": ("placer.cli.daemon", "stop watching a job"),
}

#: Options before the command that take a value (``placer --store URL runs``).
_VALUED_OPTIONS = ("--store", "--format")


#: The largest integer a store column holds (SQL BIGINT); larger option values are refused.
INT_MAX = 2**63 - 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr and exit 2, as other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"placer: error: {message} (see `{self.prog} --help`)\n")


def check_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse option values that parse but that no store column or path API can hold.

    Integers beyond 64 bits and text that is not UTF-8 (a non-UTF-8 byte in ``argv``
    arrives as a lone surrogate) would otherwise fail deep inside a command, after it
    may have started work.
    """
    names = _option_names(parser)
    for key, value in vars(args).items():
        flag = names.get(key, key)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
            raise UsageError(f"{flag} {value} is out of range (at most {INT_MAX})")
        if isinstance(value, str) and not _is_utf8(value):
            raise UsageError(f"{flag} {ascii(value)} is not valid UTF-8")


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """How the user wrote each destination: its first option string, or its metavar."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names.update(_option_names(sub))
        elif action.dest not in names:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest
            names[action.dest] = action.option_strings[0] if action.option_strings else metavar
    return names


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Commands:
    """The subparsers action as a command module sees it: help filled in from COMMANDS."""

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("help", COMMANDS[name][1])
        parser: argparse.ArgumentParser = self._sub.add_parser(name, **kwargs)
        return parser


def command_name(argv: Sequence[str]) -> str | None:
    """The command word in argv (the first argument that is not a global option)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _common_options(defaults: bool) -> _Parser:
    """Options accepted both before and after the command name."""
    parent = _Parser(add_help=False)
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, that command's module registers its full arguments."""
    parser = _Parser(
        prog="placer",
        description="ML-driven data placement for tiered memory and ML input-pipeline tuning.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"placer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    registered: set[str] = set()
    if command in COMMANDS:
        # A fresh parent per module: parsers share the parent's action objects, so one
        # module overriding an option (conflict_handler="resolve") must not strip it from
        # every other command.
        module = importlib.import_module(COMMANDS[command][0])
        module.register(_Commands(sub), _common_options(defaults=False))
        registered = set(sub.choices)
    for name, (_module, help_text) in COMMANDS.items():
        if name not in registered:
            sub.add_parser(name, help=help_text, parents=[_common_options(defaults=False)])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(command_name(argv))
    args = parser.parse_args(argv)
    try:
        check_values(parser, args)
        ctx = Context.from_args(args)
    except PlacerError as exc:
        print(f"placer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        with wrapped_stdout(ctx):
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
