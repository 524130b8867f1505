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
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> None:
    """In a child before exec: be SIGKILLed when placer dies, even by SIGKILL.

    Without it a killed placer leaves the program (and perf) running as orphans. The
    parent may already be gone by the time this runs: then the child exits at once.
    """
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(137)


#: Run under a wrapper (perf): die with the wrapper, set LD_PRELOAD, exec the program
#: exactly as given (env(1) would read a program path holding "=" as an assignment).
PRELOAD_EXEC = (
    "import ctypes,os,signal,sys\n"
    "p=os.getppid()\n"
    "ctypes.CDLL(None).prctl(1,signal.SIGKILL,0,0,0)\n"
    "os.getppid()==p or os._exit(137)\n"
    "os.environ['LD_PRELOAD']=sys.argv[1]\n"
    "try:\n"
    " os.execvp(sys.argv[2],sys.argv[2:])\n"
    "except OSError as e:\n"
    " sys.stderr.write(f'placer: cannot run {sys.argv[2]}: {e.strerror}\\n')\n"
    " os._exit(127)\n"
)


def preload_exec(preload: str, program: Sequence[str]) -> list[str]:
    """A command that runs ``program`` with ``LD_PRELOAD=preload``, dying with its parent."""
    return [sys.executable, "-I", "-S", "-c", PRELOAD_EXEC, preload, *program]


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None when it is gone.

    With the pid it names one process even after the pid is reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_record() -> dict[str, int | None]:
    """This placer process, as a run records who owns it (``signals.placer``)."""
    return {"pid": os.getpid(), "start": process_start(os.getpid())}


def owner_alive(owner: Mapping[str, object]) -> bool:
    """Whether the placer process of an :func:`owner_record` still runs on this host."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True  # not ours to judge
    start = process_start(pid)
    if start is None:
        return False
    recorded = owner.get("start")
    return not isinstance(recorded, int) or recorded == start


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
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
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
