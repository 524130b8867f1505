"""Talking to a running daemon: the CLI's control commands, job registration, pipelines.

Every call opens the daemon's Unix socket, sends one JSON line and reads one JSON line
back (:mod:`placer.daemon.protocol`). :class:`PipelineAgent` is what a training job uses:
it registers the job with its knob space, reports throughput and stage metrics, and gets
the knobs to apply at its next safe point (between epochs for a DataLoader).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from placer.daemon.config import SOCKET_ENV, default_socket
from placer.daemon.protocol import MAX_MESSAGE, ProtocolError, decode, encode
from placer.errors import NotFoundError, PlacerError

#: ``PLACER_DAEMON``: ``auto`` (register when a daemon answers, the default), ``off``.
REGISTER_ENV = "PLACER_DAEMON"


class DaemonUnavailable(PlacerError):
    """No daemon answers on the socket."""


class DaemonRefused(PlacerError):
    """The daemon answered with an error (its one-line reason is the message)."""


def socket_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(SOCKET_ENV)
    return Path(env).expanduser() if env else default_socket()


def request(
    op: str, path: str | os.PathLike[str] | None = None, timeout: float = 10.0, **fields: Any
) -> dict[str, Any]:
    """One request/reply; raises :class:`DaemonUnavailable` or :class:`DaemonRefused`."""
    where = socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(where))
        except FileNotFoundError:
            raise DaemonUnavailable(
                f"no daemon socket at {where} (start `placer daemon`)"
            ) from None
        except (ConnectionRefusedError, PermissionError, OSError) as exc:
            raise DaemonUnavailable(
                f"cannot reach the daemon at {where}: {exc.strerror or exc}"
            ) from None
        try:
            sock.sendall(encode({"op": op, **fields}))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_MESSAGE:
                    raise ProtocolError("reply over the size limit")
        except OSError as exc:
            raise DaemonUnavailable(
                f"the daemon at {where} did not answer: {exc.strerror or exc}"
            ) from None
    finally:
        sock.close()
    if not data:
        raise DaemonUnavailable(f"the daemon at {where} closed the connection")
    reply = decode(data)
    if not reply.get("ok"):
        err = str(reply.get("error") or "unknown error")
        if reply.get("kind") == "not_found":
            raise NotFoundError(err)
        raise DaemonRefused(err)
    return reply


def running(path: str | os.PathLike[str] | None = None) -> bool:
    try:
        request("ping", path, timeout=2.0)
    except PlacerError:
        return False
    return True


def maybe_register(
    pid: int,
    kind: str,
    command: list[str],
    *,
    log: str | None = None,
    run_id: int | None = None,
    say: Any = None,
) -> int | None:
    """Register ``pid`` as a job when a daemon runs and ``PLACER_DAEMON`` is not ``off``.

    Used by ``placer run`` and ``placer profile`` for the program they start; never fails
    the caller (no daemon, or a refusal, is reported through ``say`` and ignored).
    """
    if os.environ.get(REGISTER_ENV, "auto").lower() in ("off", "0", "no", "false"):
        return None
    fields: dict[str, Any] = {"pid": pid, "kind": kind, "command": command}
    if log:
        fields["log"] = log
    if run_id is not None:
        fields["run_id"] = run_id
    try:
        reply = request("attach", timeout=5.0, **fields)
    except DaemonUnavailable:
        return None
    except PlacerError as exc:
        if say:
            say(f"daemon did not take the job: {exc}")
        return None
    if say:
        say(f"daemon job {reply['job']['id']} watches pid {pid}")
    return int(reply["job"]["id"])


def register_self(command: list[str], say: Any = None) -> int | None:
    """``placer run``/``profile``: register this wrapper; the daemon finds the program.

    The program starts after this call, as a descendant of this process, with
    ``PLACER_SHIM_LOG`` in its environment: the daemon looks for it each tick and then
    follows its shim log. The shim's buffer is set to its minimum (64 KiB, unless the
    user chose one) so the live log lags the program less.
    """
    job = maybe_register(os.getpid(), "objects", command, say=say)
    if job is not None:
        os.environ.setdefault("PLACER_SHIM_BUFFER", "64K")
    return job


def close_job(
    job_id: int | None,
    exit_code: int | None,
    status: str,
    path: str | os.PathLike[str] | None = None,
    *,
    run_id: int | None = None,
) -> None:
    """Tell the daemon the job's program ended (it would notice by itself, a tick later).

    ``run_id``: the run ``placer profile``/``placer run`` stored for the program; the
    daemon links the job to it (also when it already closed the job by itself).
    """
    if job_id is None:
        return
    fields: dict[str, Any] = {"job": job_id, "exit_code": exit_code, "status": status}
    if run_id is not None:
        fields["run_id"] = run_id
    try:
        request("exit", path, timeout=5.0, **fields)
    except PlacerError:
        pass


class PipelineAgent:
    """A pipeline job's side of the daemon protocol.

    ``space``: ``{"num_workers": {"low": 0, "high": 4}, "cache": {"choices": [None, "decode"]}}``;
    ``knobs``: the config the job runs now. Call :meth:`report` at each safe point with the
    throughput measured since the last one; it returns the knobs to run next (apply them
    before the next epoch), or None when the daemon is away (keep the current knobs).
    Pass ``stages`` (dicts with the fields of ``placer.collectors.pipeline.api.StageStats``) and
    ``batches`` so the daemon's analysis can choose the first trial. ``shape`` (optional)
    describes the pipeline for that analysis: ``{"engine", "batch_size",
    "dataset_samples", "stages": [{"name", "kind", "sequential", "random",
    "parallelism_knob"}]}``; what it leaves out is inferred from the reports.
    """

    def __init__(
        self,
        name: str,
        space: dict[str, dict[str, Any]],
        knobs: dict[str, Any],
        *,
        path: str | os.PathLike[str] | None = None,
        shape: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.knobs = dict(knobs)
        extra: dict[str, Any] = {"shape": shape} if shape else {}
        reply = request(
            "attach",
            path,
            pid=os.getpid(),
            kind="pipeline",
            name=name,
            command=_own_command(),
            space=space,
            knobs=knobs,
            **extra,
        )
        self.job_id = int(reply["job"]["id"])

    def report(
        self,
        samples_per_second: float,
        stages: list[dict[str, Any]] | None = None,
        batches: int = 0,
    ) -> dict[str, Any] | None:
        try:
            reply = request(
                "pipeline",
                self.path,
                job=self.job_id,
                knobs=self.knobs,
                samples_per_second=float(samples_per_second),
                stages=stages or [],
                batches=int(batches),
            )
        except DaemonUnavailable:
            return None
        new = reply.get("knobs")
        return dict(new) if isinstance(new, dict) else None

    def applied(self, knobs: dict[str, Any]) -> None:
        """Say which knobs are in force now (after the safe point applied them)."""
        self.knobs = dict(knobs)

    def close(self) -> None:
        close_job(self.job_id, 0, "exited", self.path)


def _own_command() -> list[str]:
    try:
        data = Path("/proc/self/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p]
