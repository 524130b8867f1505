"""Fuzzing the daemon's socket protocol: hostile clients get an error, the daemon serves on.

A real daemon (its store, model, socket server and request handlers, in this process and
without its loop) gets hypothesis-made connections: JSON messages with every op and
field of :mod:`placer.daemon.protocol` holding values of any JSON type and size, raw
bytes, invalid UTF-8, frames cut short and lines over the size limit. Each line must get
one reply, ``{"ok": false, "error": ...}`` for anything wrong (never an internal error),
or the connection closes; every connection ends within the timeout; after each example a
fresh connection still gets ``ping`` answered. Bounded: a fixed number of examples, a
socket timeout on every read.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.daemon.config import DaemonConfig
from placer.daemon.protocol import MAX_MESSAGE, OPS, ProtocolError, decode
from placer.daemon.service import Daemon

#: Seconds a connection may take to answer everything it was sent.
TIMEOUT = 10.0
#: Fields the ops read (and a few they do not).
FIELDS = (
    "pid",
    "job",
    "kind",
    "command",
    "run_id",
    "space",
    "knobs",
    "name",
    "shape",
    "exit_code",
    "status",
    "samples_per_second",
    "stages",
    "batches",
    "extra",
)
PID_MAX = 1 << 22  # the kernel's pid_max ceiling


class LiveDaemon:
    """A started daemon with two jobs (an objects job and a pipeline job) to aim at."""

    def __init__(self, tmp: Path) -> None:
        self.sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
        cfg = DaemonConfig(
            socket=str(tmp / "run" / "daemon.sock"), metrics="", perf=False, migrate=False
        )
        logs: list[tuple[str, str, dict[str, Any]]] = []

        def log(level: str, event: str, **fields: Any) -> None:
            logs.append((level, event, fields))

        log.set_level = lambda _level: None  # type: ignore[attr-defined]
        self.logs = logs
        self.daemon = Daemon(cfg, f"sqlite:///{tmp / 'store.db'}", log=log)  # type: ignore[arg-type]
        self.daemon.start()
        self.path = cfg.socket_path()
        self.jobs: list[int] = []
        self.ensure_jobs()

    def ensure_jobs(self) -> None:
        """An objects job and a pipeline job on the sleepers (again, after a detach)."""
        jobs = []
        for p, kind in zip(self.sleepers, ("objects", "pipeline"), strict=True):
            msg = {
                "op": "attach",
                "pid": p.pid,
                "kind": kind,
                "space": {"workers": {"low": 0, "high": 4}},
                "knobs": {"workers": 0},
            }
            job = self.ask(msg)["job"]
            if job["kind"] != kind:  # a fuzzed attach took the sleeper with the other kind
                self.ask({"op": "detach", "job": job["id"]})
                job = self.ask(msg)["job"]
            jobs.append(job["id"])
        self.jobs = jobs

    def fill(self, frame: bytes) -> bytes:
        """Placeholders to the sleepers' pids and their jobs' ids."""
        for i, p in enumerate(self.sleepers):
            frame = frame.replace(f'"$PID{i}"'.encode(), str(p.pid).encode())
            frame = frame.replace(f'"$JOB{i}"'.encode(), str(self.jobs[i]).encode())
        return frame

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        replies = self.exchange([json.dumps(msg).encode() + b"\n"])
        assert len(replies) == 1 and replies[0]["ok"], replies
        return replies[0]

    def exchange(self, frames: list[bytes]) -> list[dict[str, Any]]:
        """Send the frames on one connection, close our side, read every reply line."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(str(self.path))
            try:
                s.sendall(b"".join(frames))
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon closed first (a frame over the limit)
            data = b""
            try:
                while chunk := s.recv(1 << 16):
                    data += chunk
            except ConnectionResetError:
                pass
        return [json.loads(line) for line in data.splitlines()]

    def close(self) -> None:
        self.daemon.stop()
        for p in self.sleepers:
            p.kill()
            p.wait()


@pytest.fixture(scope="module", name="live")
def live_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    d = LiveDaemon(tmp_path_factory.mktemp("fuzzd"))
    yield d
    d.close()


# --------------------------------------------------------------------------- strategies
def _safe_pid(value: Any) -> Any:
    """No fuzzed attach reaches a real process: in-range pids become negative."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= PID_MAX:
        return -value
    return value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=24,
)


JOB = st.sampled_from(["$JOB0", "$JOB1"])
STAGE = st.fixed_dictionaries(
    {"name": st.sampled_from(["read", "decode", "batch"])},
    optional={
        "wall_s": st.floats(0, 10),
        "cpu_s": st.floats(0, 10),
        "items_out": st.integers(0, 10**6),
        "parallelism": st.integers(1, 16),
    },
)
#: A well-formed message of each op (fields then mutated): the handlers' bodies run.
TEMPLATES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "ping": st.just({}),
    "status": st.just({}),
    "jobs": st.just({}),
    "job": st.fixed_dictionaries({"job": JOB}),
    "detach": st.fixed_dictionaries({"job": JOB}),
    "attach": st.fixed_dictionaries(
        {"pid": st.sampled_from(["$PID0", "$PID1"])},
        optional={
            "kind": st.sampled_from(["objects", "pipeline"]),
            "command": st.lists(st.text(max_size=8), max_size=3),
            "run_id": st.integers(-3, 3),
            "space": st.dictionaries(
                st.text(max_size=6),
                st.fixed_dictionaries({"low": st.integers(-2, 4), "high": st.integers(-2, 9)})
                | st.fixed_dictionaries({"choices": st.lists(json_values, max_size=4)}),
                max_size=3,
            ),
            "knobs": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
            "name": st.text(max_size=10),
            "shape": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        },
    ),
    "exit": st.fixed_dictionaries(
        {"job": JOB},
        optional={
            "exit_code": st.integers(-300, 300),
            "status": st.sampled_from([None, "exited", "crashed", "killed", "bogus"]),
            "run_id": st.integers(-3, 3),
        },
    ),
    "pipeline": st.fixed_dictionaries(
        {
            "job": JOB,
            "knobs": st.fixed_dictionaries({"workers": st.integers(-2, 6)})
            | st.dictionaries(st.text(max_size=6), json_values, max_size=3),
            "samples_per_second": st.floats(allow_nan=True, allow_infinity=True)
            | st.integers(-5, 10**6),
        },
        optional={"stages": st.lists(STAGE, max_size=3), "batches": st.integers(-5, 10**6)},
    ),
}


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed message with fields replaced, added or dropped; or any JSON object."""
    if draw(st.booleans()):
        op = draw(st.sampled_from(OPS))
        msg: dict[str, Any] = {"op": op, **draw(TEMPLATES[op])}
        fields = sorted(set(msg) - {"op"})
        for name in draw(
            st.lists(st.sampled_from(fields), max_size=2, unique=True) if fields else st.just([])
        ):
            if draw(st.booleans()):
                del msg[name]
            else:
                msg[name] = draw(json_values)
    else:
        msg = {"op": draw(st.sampled_from(OPS) | st.text(max_size=12) | json_values)}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        msg[name] = draw(JOB | json_values) if name == "job" else draw(json_values)
    if "pid" in msg:
        msg["pid"] = _safe_pid(msg["pid"])
    return msg


class Frame(bytes):
    """Bytes that print short (a failing example may hold a line of 768 KiB)."""

    def __repr__(self) -> str:
        return (
            f"Frame({bytes(self[:120])!r}... {len(self)} bytes)"
            if len(self) > 160
            else (f"Frame({bytes(self)!r})")
        )


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One line as a client could send it: valid JSON or not, cut, huge, not UTF-8."""
    how = draw(st.sampled_from(["json"] * 6 + ["bytes", "badutf8", "cut", "huge"]))
    line = json.dumps(draw(messages())).encode()
    if how == "bytes":
        line = draw(st.binary(max_size=200)).replace(b"\n", b" ")
    elif how == "badutf8":
        at = draw(st.integers(0, len(line)))
        line = (
            line[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80"]))
            + line[at:]
        )
    elif how == "cut":
        return Frame(line[: draw(st.integers(0, max(0, len(line) - 1)))])  # no newline: last
    elif how == "huge":
        pad = b"x" * draw(st.sampled_from([MAX_MESSAGE - 64, MAX_MESSAGE, 3 * MAX_MESSAGE]))
        line = b'{"op":"ping","pad":"' + pad + b'"}'
    return Frame(line + b"\n")


# --------------------------------------------------------------------------- properties
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sent=st.lists(frames(), min_size=1, max_size=3))
def test_every_message_gets_an_error_or_a_close_and_the_daemon_serves_on(
    live: LiveDaemon, sent: list[bytes]
) -> None:
    # a cut frame has no newline: it can only be the connection's last
    cut = [i for i, f in enumerate(sent) if not f.endswith(b"\n")]
    if cut:
        sent = sent[: cut[0] + 1]
    live.ensure_jobs()
    before = len(live.logs)
    replies = live.exchange([live.fill(f) for f in sent])
    assert len(replies) <= len(sent)
    for r in replies:
        assert isinstance(r, dict) and isinstance(r.get("ok"), bool), r
        if not r["ok"]:
            assert isinstance(r.get("error"), str) and r["error"], r
            assert "internal error" not in r["error"], r
    failed = [e for e in live.logs[before:] if e[1] == "request_failed"]
    assert not failed, failed
    assert live.ask({"op": "ping"})["pid"] > 0  # still serving


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_decode_reads_a_json_object_or_raises_one_error(data: bytes) -> None:
    try:
        doc = decode(data)
    except ProtocolError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(doc, dict)
