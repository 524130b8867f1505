"""What /proc says about a process, and who may attach to it.

A job is identified by (pid, start time): field 22 of ``/proc/PID/stat`` tells a process
from a later one that reused its PID, so a restarted daemon never adopts a stranger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from placer.errors import InvalidInputError, NotFoundError, PlacerError


class PermissionRefused(PlacerError):
    """The requester may not attach to that process (another user's, and not root)."""


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    start_time: int  # clock ticks since boot
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    comm: str
    minflt: int
    majflt: int
    cpu_ticks: int  # utime + stime


def _parse_stat(text: str) -> tuple[str, list[str]]:
    lpar, rpar = text.index("("), text.rindex(")")
    return text[lpar + 1 : rpar], text[rpar + 2 :].split()


def proc_info(pid: int, root: str = "/proc") -> ProcInfo | None:
    """Facts about ``pid``, or None when it does not exist (or is a zombie)."""
    base = Path(root) / str(pid)
    try:
        comm, rest = _parse_stat((base / "stat").read_text())
        status = (base / "status").read_text()
    except (OSError, ValueError):
        return None
    if rest[0] in ("Z", "X"):
        return None
    uids: tuple[int, ...] = ()
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uids = tuple(int(x) for x in line.split()[1:5])
    if len(uids) != 4:
        return None
    # fields after "(comm)": state is field 3, so field N is rest[N - 3]
    return ProcInfo(
        pid=pid,
        start_time=int(rest[19]),
        uids=uids,
        comm=comm,
        minflt=int(rest[7]),
        majflt=int(rest[9]),
        cpu_ticks=int(rest[11]) + int(rest[12]),
    )


def alive(pid: int, start_time: int, root: str = "/proc") -> bool:
    info = proc_info(pid, root)
    return info is not None and (start_time == 0 or info.start_time == start_time)


def may_attach(requester_uid: int, target: ProcInfo, daemon_uid: int | None = None) -> str | None:
    """None when ``requester_uid`` may attach to ``target``, else why not.

    Root may attach anything. Anyone else only processes whose real, effective and saved
    uids are all theirs (the rule ptrace and move_pages use). A daemon not running as root
    cannot act on a process of another user either, whoever asks.
    """
    for who, uid in (("you", requester_uid), ("the daemon", daemon_uid)):
        if uid is None or uid == 0:
            continue
        if any(u != uid for u in target.uids[:3]):
            return (
                f"process {target.pid} ({target.comm}) belongs to uid {target.uids[0]}; "
                f"{who} (uid {uid}) may only attach to its own processes"
            )
    return None


def check_attach(
    pid: int, requester_uid: int, daemon_uid: int | None = None, root: str = "/proc"
) -> ProcInfo:
    """The target's facts if attaching is allowed; a one-line error otherwise."""
    if pid <= 0:
        raise InvalidInputError(f"invalid pid {pid}")
    info = proc_info(pid, root)
    if info is None:
        raise NotFoundError(f"no process with pid {pid}")
    why = may_attach(requester_uid, info, daemon_uid)
    if why:
        raise PermissionRefused(f"refused: {why}")
    return info


def environ_value(pid: int, name: str, root: str = "/proc") -> str | None:
    """One variable of the process's initial environment (None if absent or unreadable)."""
    try:
        data = (Path(root) / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode("utf-8", "surrogateescape")
    return None


def cmdline(pid: int, root: str = "/proc") -> list[str]:
    try:
        data = (Path(root) / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p]


def resolve_log_pattern(pattern: str, pid: int) -> str:
    """A ``%p`` shim-log pattern as the job's own process sees it (relative: its cwd)."""
    if not os.path.isabs(pattern):
        try:
            pattern = os.path.join(os.readlink(f"/proc/{pid}/cwd"), pattern)
        except OSError:
            pass
    return pattern


def descendants(root: int, proc: str = "/proc") -> list[int]:
    """Every live descendant of ``root``, nearest first (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(rest[1]), []).append(int(entry.name))
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt = []
        for p in frontier:
            for c in children.get(p, []):
                out.append(c)
                nxt.append(c)
        frontier = nxt
    return out
