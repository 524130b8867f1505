"""Run the profiled program: stream its output through, forward signals, report how it ended.

The program runs in its own process group so that a signal sent to placer (``kill -INT``,
or the terminal's Ctrl-C when placer is in the foreground) reaches the program and every
wrapper around it (perf, valgrind) exactly once. When stdin is a terminal that placer owns,
the program's group becomes the terminal's foreground group for the run, as a shell would
do, so interactive programs keep their terminal. stdout and stderr are inherited: nothing
the program prints goes through placer.

This is placer's one launcher: profiling runs and plan runs (``placer run --plan``,
measured labels, :mod:`placer.act.bind`) start their program here; a caller that must look
at the program while it runs (numa_maps sampling) passes ``watch``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from placer.errors import InvalidInputError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
CRASH_SIGNALS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGABRT,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGSYS,
    signal.SIGTRAP,
}


@dataclass(frozen=True)
class ProgramResult:
    """How the program ended: ``status`` is succeeded | failed | killed | interrupted."""

    status: str
    exit_code: int  # what placer exits with: the program's code, or 128 + signal
    signal: int | None
    wall_seconds: float
    started_ns: int
    ended_ns: int
    forwarded: tuple[int, ...] = ()

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"


def classify(returncode: int, forwarded: Sequence[int]) -> tuple[str, int, int | None]:
    """(status, exit code for placer, signal) from a Popen returncode and what we forwarded."""
    sig = -returncode if returncode < 0 else None
    code = 128 + sig if sig is not None else returncode
    if signal.SIGINT in forwarded or sig == signal.SIGINT:
        return "interrupted", code, sig
    if sig is None:
        return ("succeeded" if returncode == 0 else "failed"), code, None
    if sig in CRASH_SIGNALS:
        return "failed", code, sig
    return "killed", code, sig


@contextlib.contextmanager
def _foreground(pgid: int) -> Iterator[None]:
    """Give the terminal to process group ``pgid`` while it runs, if we own the terminal."""
    fd = None
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            fd = 0
    except OSError:
        fd = None
    if fd is None:
        yield
        return
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, pgid)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, os.getpgrp())
        signal.signal(signal.SIGTTOU, old)


def run_program(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None = None,
    quiet: bool = False,
    *,
    watch: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> ProgramResult:
    """Run ``argv`` to completion with signals forwarded to its process group.

    ``quiet`` sends the program's stdin/stdout/stderr to /dev/null (deep mode's second pass,
    measured labels). ``watch(proc)`` runs once the program started, while it holds the
    terminal, and returns when it has seen enough (at the latest when the program ended);
    the program is then waited for.
    """
    forwarded: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        if child:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child[0].pid, signum)

    # handlers first: a signal arriving while the program starts is kept and delivered
    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        started_ns = time.monotonic_ns()
        t0 = time.monotonic()
        try:
            io = subprocess.DEVNULL if quiet else None
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                process_group=0,
                stdin=io,
                stdout=io,
                stderr=io,
            )
        except FileNotFoundError:
            raise InvalidInputError(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise InvalidInputError(f"permission denied: {argv[0]}") from None
        except OSError as exc:
            raise InvalidInputError(f"cannot run {argv[0]}: {exc.strerror}") from None
        child.append(proc)
        for signum in list(forwarded):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)
        with contextlib.nullcontext() if quiet else _foreground(proc.pid):
            if watch is not None:
                watch(proc)
            returncode = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    ended_ns = time.monotonic_ns()
    status, code, sig = classify(returncode, forwarded)
    return ProgramResult(
        status=status,
        exit_code=code,
        signal=sig,
        wall_seconds=time.monotonic() - t0,
        started_ns=started_ns,
        ended_ns=ended_ns,
        forwarded=tuple(forwarded),
    )
