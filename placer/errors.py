"""The one exception hierarchy of placer.

Every error a user can cause derives from :class:`PlacerError`. The CLI prints such an
error as one line on stderr and exits with :attr:`PlacerError.exit_code` (2). Anything
else is a bug: the CLI exits 1 and points to ``--debug``.
"""

from __future__ import annotations

from typing import Any


class PlacerError(Exception):
    """Root of every error placer raises on purpose; carries its context as attributes."""

    exit_code = 2

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        return self.message


class UsageError(PlacerError):
    """The command line itself is wrong (unknown option value, missing argument)."""


class ConfigError(PlacerError):
    """A setting (store URL, config file, environment variable) cannot be used."""


class StoreError(PlacerError):
    """The store cannot be reached, opened or written."""


class StoreUnreachableError(StoreError):
    """The database server does not answer or refuses the connection."""


class MigrationError(StoreError):
    """A schema revision is unknown or the schema is not at the expected revision."""


class NotFoundError(PlacerError):
    """A named entity (run, pipeline, plan, model) is not in the store."""


class InvalidInputError(PlacerError):
    """A file or value given by the user is malformed (plan, log, budget, tier spec)."""


class ExternalToolError(PlacerError):
    """An external program placer relies on (perf, valgrind, cc) is missing or failed."""


def first_line(text_or_exc: str | BaseException) -> str:
    """The first non-empty line of ``str(text_or_exc)``, stripped ("" when there is none).

    Errors from tools and libraries run over many lines; a one-line message keeps the
    first, which is where they say what went wrong.
    """
    for line in str(text_or_exc).splitlines():
        if line.strip():
            return line.strip()
    return ""


def said(exc: BaseException) -> str:
    """``Type: first line`` of an exception from a user's code (just ``Type`` if empty),
    so a one-line error says what the user's code raised."""
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
