"""The systemd unit shipped with placer, with ExecStart pointing at this installation.

The file in the package says ``ExecStart=placer daemon`` (right for a system-wide install
in /usr/bin or /usr/local/bin); ``placer daemon unit`` prints it with the absolute command
of the placer that runs, since systemd does not search a virtual environment's PATH.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.resources import files
from pathlib import Path

UNIT_FILE = "placer-daemon.service"
_EXEC_START = re.compile(r"^ExecStart=placer(?= )", re.MULTILINE)


def placer_command() -> list[str]:
    """This installation's placer: the running ``placer`` script, else ``python -m placer``."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "placer" and argv0.is_file() and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    return [sys.executable, "-m", "placer"]


def _unit_word(word: str) -> str:
    """One ExecStart word as systemd reads it: % and $ escaped, quoted if it has spaces."""
    word = word.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\]", word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def unit_text(command: list[str] | None = None) -> str:
    """The shipped unit with ExecStart running ``command`` (default: :func:`placer_command`)."""
    text = files("placer.daemon").joinpath(UNIT_FILE).read_text()
    exec_start = "ExecStart=" + " ".join(_unit_word(w) for w in command or placer_command())
    text, n = _EXEC_START.subn(lambda _m: exec_start, text)
    if n != 1:
        raise AssertionError(f"{UNIT_FILE}: expected one 'ExecStart=placer ...' line, found {n}")
    return text
