"""The daemon's socket: a 0600 Unix socket, one thread per connection, JSON-line requests.

:class:`SocketServer` binds, serves and removes the socket. :class:`Requests` answers the
requests of :data:`placer.daemon.protocol.OPS`: it checks every field by type
(:func:`placer.daemon.protocol.field`), applies the permission rule to the peer's uid
(``SO_PEERCRED``), and calls the daemon to act. Replies are ``{"ok": true, ...}`` or
``{"ok": false, "error": ..., "kind": ...}``; an unexpected error is logged and answered,
and the connection keeps serving.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from io import BufferedIOBase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.daemon import procs
from placer.daemon.client import running
from placer.daemon.decide import parse_knob_space
from placer.daemon.job import Job
from placer.daemon.protocol import MAX_MESSAGE, OPS, ProtocolError, decode, encode
from placer.daemon.protocol import field as pfield
from placer.errors import InvalidInputError, NotFoundError, PlacerError

if TYPE_CHECKING:
    from placer.daemon.service import Daemon

THREAD_NAME = "placer-daemon-socket"
#: What a program's end may be reported as (``exit``); crashed/signaled/killed close it as crashed.
EXIT_STATUSES = (
    None,
    "exited",
    "crashed",
    "killed",
    "signaled",
    "succeeded",
    "failed",
    "interrupted",
)

Handler = Callable[[dict[str, Any], int, int], dict[str, Any]]
#: Serves one connection: the socket, its reading and its writing file.
Connection = Callable[[socket.socket, BufferedIOBase, BufferedIOBase], None]


class SocketServer:
    """The Unix socket at ``path`` (mode 0600), served on a thread of its own."""

    def __init__(self, path: Path, handle: Connection) -> None:
        self.path = path
        self.handle = handle
        self.server: socketserver.BaseServer | None = None

    def bind(self) -> None:
        """Create the socket (refused when a live daemon already listens on it)."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_symlink():
            if running(path):
                raise InvalidInputError(f"a daemon already listens on {path}")
            path.unlink()  # a stale socket of a daemon that died
        handle = self.handle

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                handle(self.request, self.rfile, self.wfile)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True
            block_on_close = False

        old = os.umask(0o177)
        try:
            self.server = Server(str(path), Handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    def serve_in_thread(self) -> None:
        server = self.server
        assert server is not None
        threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.2), name=THREAD_NAME, daemon=True
        ).start()

    @staticmethod
    def running() -> bool:
        return any(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate())

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        if self.server is not None:
            if self.running():
                self.server.shutdown()
            self.server.server_close()
            self.server = None
        try:
            self.path.unlink()
        except OSError:
            pass


class Requests:
    """The daemon's answers to socket requests (``op_NAME`` for each op of the protocol)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.handlers: dict[str, Handler] = {op: getattr(self, f"op_{op}") for op in OPS}

    def handle(self, conn: socket.socket, rfile: BufferedIOBase, wfile: BufferedIOBase) -> None:
        """Serve one connection: a request per line until the peer closes it."""
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer_pid, peer_uid, _gid = struct.unpack("3i", creds)
        except OSError:
            return
        while True:
            line = rfile.readline(MAX_MESSAGE + 1)
            if not line:
                return
            # a line over the limit: answer once and close (its rest is no message)
            over = len(line) > MAX_MESSAGE and not line.endswith(b"\n")
            try:
                if over:
                    raise ProtocolError(f"message over the {MAX_MESSAGE}-byte limit")
                req = decode(line.rstrip(b"\n"))
                op = pfield(req, "op", str)
                handler = self.handlers.get(op)
                if handler is None:
                    raise ProtocolError(f"unknown op {op!r}")
                reply = {"ok": True, **handler(req, peer_uid, peer_pid)}
            except NotFoundError as exc:
                reply = {"ok": False, "error": str(exc), "kind": "not_found"}
            except PlacerError as exc:
                reply = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
            except Exception as exc:  # noqa: BLE001 - reply, log, keep serving
                self.d.log("error", "request_failed", error=f"{type(exc).__name__}: {exc}")
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
            try:
                wfile.write(encode(reply))
                wfile.flush()
            except (OSError, ProtocolError):
                return
            if over:
                return

    def _job_for(self, req: dict[str, Any], uid: int) -> Job:
        """The attached job the request names, if the requester owns it (or is root)."""
        jid = pfield(req, "job", int)
        job = self.d.get_job(jid)
        if job is None:
            raise NotFoundError(f"job {jid} is not attached to the daemon")
        if uid != 0 and uid != job.owner_uid:
            raise procs.PermissionRefused(f"refused: job {jid} belongs to uid {job.owner_uid}")
        return job

    def op_ping(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        return {"pid": os.getpid()}

    def op_status(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        return {"status": self.d.status_document()}

    def op_jobs(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        return {"jobs": [j.summary() for j in sorted(self.d.job_list(), key=lambda j: j.id)]}

    def op_job(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        jid = pfield(req, "job", int)
        job = self.d.get_job(jid)
        if job is None:
            raise NotFoundError(f"job {jid} is not attached to the daemon")
        with job.lock:
            return {"job": self.d.job_document(job)}

    def op_attach(self, req: dict[str, Any], uid: int, peer_pid: int) -> dict[str, Any]:
        pid = pfield(req, "pid", int)
        kind = pfield(req, "kind", str, required=False, default="objects")
        if kind not in ("objects", "pipeline"):
            raise InvalidInputError(f"job kind must be objects or pipeline, not {kind!r}")
        command = pfield(req, "command", list, required=False, default=None)
        run_id = pfield(req, "run_id", int, required=False)
        info = procs.check_attach(pid, uid, os.geteuid())
        pipeline: dict[str, Any] | None = None
        if kind == "pipeline":
            pipeline = {"space": parse_knob_space(pfield(req, "space", dict))}
            pipeline["knobs"] = pfield(req, "knobs", dict, required=False, default={})
        for j in self.d.job_list():
            if j.pid == pid and j.start_time == info.start_time:
                return {"job": j.summary(), "existing": True}
        cmd = [str(c) for c in command] if command else procs.cmdline(pid)
        wrapper = (
            kind == "objects"
            and pid == peer_pid
            and command is not None
            and procs.environ_value(pid, "PLACER_SHIM_LOG") is None
        )
        if pipeline is not None:
            pipeline["name"] = pfield(req, "name", str, required=False, default="")
            shape = pfield(req, "shape", dict, required=False)
            if shape is not None:
                pipeline["shape"] = json_limited(shape)
        job = self.d.attach(info, kind, cmd, run_id, wrapper=wrapper, pipeline=pipeline)
        self.d.log(
            "info",
            "job_attached",
            job=job.id,
            pid=pid,
            kind=kind,
            by_uid=uid,
            command=cmd[:8],
            wrapper=wrapper,
        )
        return {"job": job.summary()}

    def op_detach(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        job = self._job_for(req, uid)
        with job.lock:
            self.d.close(job, None, "detached")
        return {"job": job.summary()}

    def op_exit(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        jid = pfield(req, "job", int)
        code = pfield(req, "exit_code", int, required=False)
        status = pfield(req, "status", str, required=False)
        run_id = pfield(req, "run_id", int, required=False)
        if status not in EXIT_STATUSES:
            raise InvalidInputError(f"unknown exit status {status!r}")
        if self.d.get_job(jid) is None and run_id is not None:
            # the daemon saw the program end first (it stores its run afterwards): link only
            return {"job": self.d.link_run(jid, run_id, uid)}
        job = self._job_for(req, uid)
        if run_id is not None:
            self.d.link_run(jid, run_id, uid)
            job.state.run_id = run_id
        with job.lock:
            crashed = status in ("crashed", "signaled", "killed")
            self.d.close(job, code, "crashed" if crashed else None)
        return {"job": job.summary()}

    def op_pipeline(self, req: dict[str, Any], uid: int, pid: int) -> dict[str, Any]:
        job = self._job_for(req, uid)
        if job.kind != "pipeline":
            raise InvalidInputError(f"job {job.id} is not a pipeline job")
        knobs = pfield(req, "knobs", dict)
        sps = pfield(req, "samples_per_second", (int, float))
        stages = pfield(req, "stages", list, required=False, default=[])
        batches = pfield(req, "batches", int, required=False, default=0)
        if sps < 0 or sps != sps or sps == float("inf"):
            raise InvalidInputError("samples_per_second must be a finite number >= 0")
        return self.d.pipelines.report(job, knobs, sps, stages, batches)


def json_limited(doc: dict[str, Any]) -> dict[str, Any]:
    """A declared pipeline shape, kept only when it is small plain JSON."""
    text = json.dumps(doc, default=str)
    if len(text) > 16384:
        raise InvalidInputError("pipeline shape over 16 KiB")
    out: dict[str, Any] = json.loads(text)
    return out
