"""``placer report``: recommendation reports people read and their JSON twins.

:func:`build` reads one report from the store into a plain document
(:mod:`placer.reports.run`, :mod:`~placer.reports.pipeline`, :mod:`~placer.reports.fleet`);
:func:`placer.reports.render.render` turns it into self-contained HTML (inline CSS and SVG,
no network), Markdown or JSON; :func:`write` stores it atomically (temp file + rename, so a
failed report never leaves a file behind). The documents are described in docs/reports.md.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from placer.errors import InvalidInputError
from placer.reports.base import ReportBuilder
from placer.reports.fleet import FleetReport
from placer.reports.pipeline import PipelineReport
from placer.reports.run import RunReport

#: Every report kind and its builder: a kind about one subject (a run, a pipeline) takes
#: its id, the fleet report takes none.
BUILDERS: dict[str, Callable[..., ReportBuilder]] = {
    RunReport.kind: RunReport,
    PipelineReport.kind: PipelineReport,
    FleetReport.kind: FleetReport,
}
KINDS = tuple(BUILDERS)


def build(store: Any, kind: str, ident: int | None = None) -> dict[str, Any]:
    """The report document of ``kind`` (``run``/``pipeline`` need ``ident``)."""
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown report kind {kind!r}") from None
    report = builder(store) if ident is None else builder(store, int(ident))
    return report.build()


def check_target(path: Path) -> None:
    """Refuse a report target that exists and is not a regular file.

    The report is written by an atomic rename, which would silently replace a FIFO, a
    symlink (not what it points to) or a device (``/dev/full``) with a regular file.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidInputError(f"cannot write report {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InvalidInputError(f"cannot write report {path}: it is a directory")
    if not stat.S_ISREG(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else "a special file"
        raise InvalidInputError(
            f"cannot write report {path}: it is {kind}, not a regular file (give another path)"
        )


def write(text: str, path: Path) -> Path:
    """Write ``text`` to ``path`` atomically; one-line error if the place is not writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    check_target(path)
    if not parent.is_dir():
        raise InvalidInputError(f"cannot write report {path}: directory {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InvalidInputError(f"cannot write report {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write report {path}: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["KINDS", "build", "check_target", "write"]
